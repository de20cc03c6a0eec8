"""Building, inspecting, breaking and removing a lab (the logic behind `dockyard lab`).

Layout of a lab named NAME on subnet S (default 10.213.0.0/24):

- bridge `dy-NAME-br` with S's first address, on the host;
- node `control` (S's 2nd address): ZooKeeper when asked, the master, the scheduler,
  and the router (`dockyard router`, an HAProxy following the apps; `--no-router` leaves it out);
- nodes `agent1..N` (S's 11th address on): one agent each.

Roles are started through `vagrant/provision/run-role.sh` with an environment
file written by `role-env.sh`, the same scripts a Vagrant node runs under systemd.

Secured as `dockyard up` is (docs/security.md): a bundle under the lab's folder
(`security/`), a certificate per node, authentication on every role and TLS on
every connection (the nodes talk over a network, not loopback). The host's CLI
and the router use the lab's `client.json`. `--insecure` serves the lab open instead.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from framework.local.agent import machine
from framework.security import client as client_settings
from framework.security.bundle import Bundle

from . import LabError, network, nodes
from .state import LabState, Node, Proc, lab_dir, load, prefix, remove

REPO = Path(__file__).resolve().parents[3]


def _provision_dir() -> Path:
    """The shared role scripts: in the checkout, or where install-dockyard.sh puts them."""
    for candidate in (os.environ.get("DOCKYARD_PROVISION"), REPO / "vagrant" / "provision",
                      "/usr/local/lib/dockyard"):
        if candidate and (Path(candidate) / "run-role.sh").exists():
            return Path(candidate)
    return REPO / "vagrant" / "provision"   # missing: _script names the path in its error


PROVISION = _provision_dir()
DEFAULT_SUBNET = "10.213.0.0/24"
# The router's HTTP port (virtual hosts) and its stats page; service ports are the scheduler's 10000-20000.
PORTS = {"zookeeper": 2181, "master": 5050, "agent": 5051, "scheduler": 8080, "router": 80,
         "router-stats": 9090}
CONTROL = "control"
FAULT_ENV = "DOCKYARD_LAB_FAULT"   # "crash-after:STEP", to test recovery from a crash


@dataclass(frozen=True)
class UpOptions:
    agents: int = 3
    zk: bool = False
    subnet: str = DEFAULT_SUBNET
    dockyard_cmd: str = f"{sys.executable} {REPO / 'dockyard.py'}"
    agent_resources: str = ""
    wait: bool = True
    timeout: float = 90.0
    keep_on_failure: bool = False         # leave a failed lab up for inspection
    extra: dict[str, str] | None = None   # role -> DOCKYARD_EXTRA_ARGS
    insecure: bool = False                # no authentication, no TLS
    router: bool = True                   # `dockyard router` on the control node


def _fault(step: str) -> None:
    """Injected crash: die by SIGKILL right after `step`, as an OOM kill would."""
    if os.environ.get(FAULT_ENV) == f"crash-after:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("dockyard lab needs root (network namespaces, bridges)")


def _names(name: str, index: int) -> tuple[str, str]:
    """(netns, host-side veth) of node number `index` in lab `name`."""
    return f"{prefix(name)}{'control' if index == 0 else f'agent{index}'}", \
        f"{prefix(name)}{index}"


def plan(name: str, root: Path | None, options: UpOptions) -> LabState:
    """The lab's nodes and addresses, before anything exists."""
    if not 1 <= options.agents <= 50:
        raise LabError(f"--agents must be 1..50, not {options.agents}")
    bridge_cidr = network.host_address(options.subnet, 1)
    state = LabState(name=name, dir=str(lab_dir(name, root)), subnet=options.subnet,
                     bridge=f"{prefix(name)}br", bridge_ip=network.bare(bridge_cidr),
                     zk=options.zk, ports=dict(PORTS))
    for index in range(options.agents + 1):
        netns, host_if = _names(name, index)
        node_name = CONTROL if index == 0 else f"agent{index}"
        if index == 0:
            roles = (["zookeeper"] if options.zk else []) + ["master", "scheduler"] \
                + (["router"] if options.router else [])
        else:
            roles = ["agent"]
        address = network.host_address(options.subnet, 2 if index == 0 else 10 + index)
        state.nodes[node_name] = Node(name=node_name, netns=netns, host_if=host_if,
                                      ip=network.bare(address), roles=roles)
    return state


def up(name: str, root: Path | None, options: UpOptions,
       say: Callable[[str], None] = lambda line: None) -> LabState:
    """Build the network, start every role, wait until each answers its health check."""
    _require_root()
    existing = load(name, root)
    if existing is not None:
        raise LabError(f"lab {name!r} exists ({existing.path}, phase {existing.phase}); "
                       "run `dockyard lab down` first")
    left = [item for items in leftovers(name).values() for item in items]
    if left:
        raise LabError(f"parts of lab {name!r} are left over ({', '.join(left)}); "
                       "run `dockyard lab down` first")
    state = plan(name, root, options)
    _check_subnet_free(options.subnet)
    if options.router and shutil.which("haproxy") is None:
        raise LabError("the router runs HAProxy, which is not installed (apt-get install haproxy); "
                       "or leave the router out: --no-router")
    state.save()
    try:
        if not options.insecure:
            _secure(state, say)
        _build_network(state, say)
        _start_roles(state, options, say)
    except BaseException as error:
        state.phase = "failed"
        state.save()
        if isinstance(error, LabError) and not options.keep_on_failure:
            say(f"lab up failed; removing what was built (logs kept in {state.dir})")
            down(name, root, keep_files=True)
        raise
    state.phase = "up"
    state.save()
    return state


def _check_subnet_free(subnet: str) -> None:
    """Two labs (or a lab and a real network) on one subnet would steal each other's routes."""
    wanted = ipaddress.ip_network(subnet)
    for route in json.loads(network.ip("-j", "-4", "route", "show") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(wanted):
            raise LabError(f"subnet {subnet} overlaps {dst} on {route.get('dev')}; "
                           "pick another with --subnet")


def security_dir(state: LabState) -> Path:
    return Path(state.dir) / "security"


def secured(state: LabState) -> bool:
    return (security_dir(state) / "credentials.json").exists()


def _secure(state: LabState, say: Callable[[str], None]) -> None:
    """The lab's bundle, a certificate per node, and the host CLI's client.json."""
    bundle = Bundle(security_dir(state)).ensure(
        agents=[node.name for node in state.nodes.values() if "agent" in node.roles])
    for node in state.nodes.values():
        bundle.certificate(node.name, [node.ip, node.name])
    control = state.control()
    client_settings.write(client_file(state), {
        "url": f"https://{control.ip}:{PORTS['scheduler']}", "master": f"https://{control.ip}:{PORTS['master']}",
        "principal": bundle.operator.principal, "secret": bundle.operator.secret, "ca": str(bundle.ca_cert)})
    say(f"security bundle in {bundle.directory}; the CLI uses {client_file(state)}")


def client_file(state: LabState) -> Path:
    return Path(state.dir) / "client.json"


def _build_network(state: LabState, say: Callable[[str], None]) -> None:
    state.intend(f"bridge:{state.bridge}")
    network.add_bridge(state.bridge, f"{state.bridge_ip}/{state.subnet.split('/')[1]}")
    _fault("bridge")
    hosts = {node.name: node.ip for node in state.nodes.values()}
    for node in state.nodes.values():
        state.intend(f"netns:{node.netns}")
        network.add_netns(node.netns)
        _script("hosts.sh", str(network.NETNS_ETC / node.netns / "hosts"),
                *(f"{name}={ip}" for name, ip in hosts.items()))
        _fault(f"netns:{node.name}")
        state.intend(f"link:{node.host_if}")
        network.plug(network.NodeLink(node.netns, node.host_if,
                                      f"{node.ip}/{state.subnet.split('/')[1]}"), state.bridge)
        _fault(f"plug:{node.name}")
        say(f"node {node.name}: {node.ip} (netns {node.netns})")


def _role_settings(state: LabState, node: Node, role: str, options: UpOptions) -> dict[str, str]:
    """DOCKYARD_* settings of one role; the command line itself is run-role.sh's job."""
    control = state.control()
    master = f"{control.ip}:{PORTS['master']}"
    settings = {
        "DOCKYARD_CMD": options.dockyard_cmd,
        "DOCKYARD_IP": node.ip,
        "DOCKYARD_HOSTNAME": node.name,
        "DOCKYARD_PORT": str(PORTS[role]),
        "DOCKYARD_WORK_DIR": str(Path(state.dir) / node.name / role),
        "DOCKYARD_MESOS": "embedded",
    }
    zk_hosts = f"{control.ip}:{PORTS['zookeeper']}"
    if role == "master" and state.zk:
        settings["DOCKYARD_ZK"] = f"zk://{zk_hosts}/mesos"
    if role in ("agent", "scheduler"):
        settings["DOCKYARD_MASTER"] = f"zk://{zk_hosts}/mesos" if state.zk else master
    if role == "scheduler" and state.zk:
        settings["DOCKYARD_ZK"] = f"zk://{zk_hosts}/dockyard"
    if role == "router":
        settings["DOCKYARD_SCHEDULER"] = service_url(state, control, "scheduler")
        settings["DOCKYARD_STATS_PORT"] = str(PORTS["router-stats"])
        if not options.insecure:
            settings["DOCKYARD_CLIENT_CONFIG"] = str(client_file(state))
    if role == "agent":
        settings["DOCKYARD_ATTRIBUTES"] = f"node:{node.name}"
        # The nodes share one machine: each offers its share of it (a network, and so ports, of its own).
        agents = sum(1 for each in state.nodes.values() if "agent" in each.roles)
        settings["DOCKYARD_RESOURCES"] = machine.with_share(options.agent_resources, agents, Path(state.dir))
    if options.extra and options.extra.get(role):
        settings["DOCKYARD_EXTRA_ARGS"] = options.extra[role]
    if options.insecure:
        settings["DOCKYARD_INSECURE"] = "1"
    else:
        settings["DOCKYARD_SECURITY_DIR"] = str(security_dir(state))
        settings["DOCKYARD_TLS_NAME"] = node.name
    return settings


def _script(name: str, *args: str) -> None:
    """Run one of the provisioning scripts Vagrant nodes run too."""
    if not (PROVISION / name).exists():
        raise LabError(f"{PROVISION / name} not found: run dockyard lab from a checkout, "
                       "or set DOCKYARD_PROVISION to vagrant/provision")
    done = subprocess.run(["bash", str(PROVISION / name), *args], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        raise LabError(f"{name} {' '.join(args[:1])} failed: {done.stderr.strip()}")


def write_role_env(path: Path, role: str, settings: dict[str, str]) -> None:
    """Through role-env.sh, so the lab and Vagrant nodes write the same file."""
    _script("role-env.sh", role, str(path), *(f"{key}={value}" for key, value in settings.items()))


def _launch(state: LabState, node: Node, role: str, env_file: Path) -> Proc:
    """run-role.sh in the node's namespace, recorded in the state file at once."""
    proc = nodes.start(node.name, node.netns, role,
                       ["bash", str(PROVISION / "run-role.sh"), role, str(env_file)],
                       Path(state.dir) / node.name / f"{role}.log", env_file=str(env_file))
    state.procs.append(proc)
    state.save()
    return proc


def start_role(state: LabState, node: Node, role: str, options: UpOptions) -> Proc:
    env_file = Path(state.dir) / node.name / f"{role}.env"
    write_role_env(env_file, role, _role_settings(state, node, role, options))
    proc = _launch(state, node, role, env_file)
    _fault(f"start:{node.name}:{role}")
    return proc


def _start_roles(state: LabState, options: UpOptions, say: Callable[[str], None]) -> None:
    """ZooKeeper, then the master, then agents, the scheduler and the router (which retries until
    the scheduler answers); the first two waited for before the next starts."""
    control = state.control()
    order = [(control, role) for role in ("zookeeper", "master") if role in control.roles]
    order += [(node, "agent") for node in state.nodes.values() if "agent" in node.roles]
    order += [(control, role) for role in ("scheduler", "router") if role in control.roles]
    pending: list[Proc] = []
    for node, role in order:
        proc = start_role(state, node, role, options)
        say(f"started {role} on {node.name} (pid {proc.pid})")
        if options.wait and role in ("zookeeper", "master"):
            wait_ready(state, proc, options.timeout)   # later roles need these first
        else:
            pending.append(proc)
    if options.wait:
        for proc in pending:
            wait_ready(state, proc, options.timeout)


def service_url(state: LabState, node: Node, role: str) -> str:
    """Where a role serves; the router's HAProxy serves plain HTTP (no TLS termination)."""
    scheme = "https" if secured(state) and role not in ("router", "router-stats") else "http"
    return f"{scheme}://{node.ip}:{state.ports[role]}"


def _context(state: LabState) -> ssl.SSLContext | None:
    ca = security_dir(state) / "ca.pem"
    return ssl.create_default_context(cafile=str(ca)) if secured(state) else None


def probe(state: LabState, node: Node, role: str, timeout: float = 1.0) -> bool:
    """Is this role answering from the host, at its node's address?"""
    if role == "zookeeper":
        try:
            with socket.create_connection((node.ip, state.ports[role]), timeout=timeout) as s:
                s.sendall(b"ruok")
                return s.recv(8) == b"imok"
        except OSError:
            return False
    if role == "router":
        return _router_serves(state, node, timeout)
    try:
        with urllib.request.urlopen(service_url(state, node, role) + "/health",
                                    timeout=timeout, context=_context(state)) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _router_serves(state: LabState, node: Node, timeout: float) -> bool:
    """The router's HAProxy shows its stats page to the router's own credentials: HAProxy runs
    only once the router has read the apps from the scheduler, so this answers for both."""
    request = urllib.request.Request(service_url(state, node, "router-stats") + "/")
    if secured(state):
        auth = client_settings.load(str(client_file(state))).auth
        if auth is not None:
            token = base64.b64encode(":".join(auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(state: LabState, proc: Proc, timeout: float) -> None:
    """Poll the role's health until `timeout`; fail fast, with its log, if it exits."""
    node = state.node(proc.node)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes.reap()
        if not nodes.alive(proc):
            raise LabError(f"{proc.role} on {proc.node} exited during start-up; "
                           f"last lines of {proc.log}:\n{_tail(Path(proc.log))}")
        if probe(state, node, proc.role):
            return
        time.sleep(0.2)
    raise LabError(f"{proc.role} on {proc.node} not healthy after {timeout}s; "
                   f"last lines of {proc.log}:\n{_tail(Path(proc.log))}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- inspecting ------------------------------------------------------------

def require(name: str, root: Path | None) -> LabState:
    state = load(name, root)
    if state is None:
        raise LabError(f"no lab {name!r} (no state in {lab_dir(name, root)})")
    return state


def status(state: LabState) -> dict:
    """What is running and answering, asked of the kernel and the services now."""
    nodes.reap()
    result: dict = {"name": state.name, "phase": state.phase, "subnet": state.subnet,
                    "bridge": state.bridge, "host_ip": state.bridge_ip, "nodes": []}
    for node in state.nodes.values():
        link_up = network.link_is_up(node.host_if)
        roles = []
        for role in node.roles:
            procs = [p for p in state.procs if p.node == node.name and p.role == role]
            proc = procs[-1] if procs else None
            running = bool(proc and nodes.alive(proc))
            roles.append({
                "role": role, "pid": proc.pid if proc else None, "running": running,
                "address": f"{node.ip}:{state.ports[role]}",
                "healthy": running and link_up and probe(state, node, role, timeout=1.0),
            })
        result["nodes"].append({
            "name": node.name, "ip": node.ip, "netns": node.netns,
            "netns_exists": network.netns_exists(node.netns),
            "link": "up" if link_up else "down", "partitioned": node.partitioned,
            "roles": roles,
        })
    control = state.control() if state.nodes else None
    if control:
        result["urls"] = {"master": service_url(state, control, "master"),
                          "scheduler": service_url(state, control, "scheduler")}
        if "router" in control.roles:
            result["urls"]["router"] = service_url(state, control, "router")
            result["urls"]["router_stats"] = service_url(state, control, "router-stats") + "/"
        if secured(state):
            result["client_config"] = str(client_file(state))
    return result


# -- failure drills --------------------------------------------------------

def partition(state: LabState, node_name: str) -> Node:
    """Cut the node off the bridge: its processes run on but nobody reaches them."""
    node = state.node(node_name)
    network.set_link(node.host_if, up=False)
    node.partitioned = True
    state.save()
    return node


def heal(state: LabState, node_name: str) -> Node:
    node = state.node(node_name)
    network.set_link(node.host_if, up=True)
    node.partitioned = False
    state.save()
    return node


def kill(state: LabState, node_name: str) -> list[int]:
    """Crash the node: SIGKILL every process in its namespace (tasks too)."""
    node = state.node(node_name)
    return nodes.stop_netns(node.netns, grace=0.0)


def start(state: LabState, node_name: str, timeout: float = 90.0) -> list[Proc]:
    """Restart a killed node's roles from their recorded environment files."""
    node = state.node(node_name)
    started = []
    for role in node.roles:
        previous = [p for p in state.procs if p.node == node.name and p.role == role]
        if previous and nodes.alive(previous[-1]):
            continue
        env_file = Path(state.dir) / node.name / f"{role}.env"
        if not env_file.exists():
            raise LabError(f"no settings for {role} on {node.name} ({env_file})")
        started.append(_launch(state, node, role, env_file))
    for proc in started:
        wait_ready(state, proc, timeout)
    return started


# -- removing --------------------------------------------------------------

def _mounts_under(paths: list[str]) -> list[str]:
    """Mount points at or below any of `paths`, deepest first (for unmounting)."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in paths):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def down(name: str, root: Path | None, keep_files: bool = False,
         say: Callable[[str], None] = lambda line: None) -> dict[str, list]:
    """Remove every process, mount, namespace, link and file of lab `name`.

    Works from the state file when there is one and also sweeps by name prefix,
    so a lab whose `up` was killed at any point goes away completely. Idempotent.
    """
    _require_root()
    state = load(name, root)
    folder = Path(state.dir) if state else lab_dir(name, root)
    mine = prefix(name)
    removed: dict[str, list] = {"processes": [], "mounts": [], "netns": [], "links": []}

    namespaces = {ns for ns in network.netns_list() if ns.startswith(mine)}
    if state:
        namespaces |= {node.netns for node in state.nodes.values()}
    for netns in sorted(namespaces):
        removed["processes"] += nodes.stop_netns(netns)
    for proc in state.procs if state else []:
        if nodes.kill(proc):               # e.g. a process whose namespace vanished
            removed["processes"].append(proc.pid)
    if removed["processes"]:
        say(f"stopped {len(removed['processes'])} processes")

    # What killed executors leave (container runtime state, cgroups): the same
    # janitor an agent runs at start, on each agent's work dir.
    for work_dir in sorted(folder.glob("*/agent")) if folder.is_dir() else []:
        janitor = subprocess.run([sys.executable, str(REPO / "dockyard.py"), "executor",
                                  "--cleanup", str(work_dir)], capture_output=True, text=True,
                                 timeout=120)
        if janitor.returncode != 0:
            say(f"executor clean-up of {work_dir} failed: {janitor.stderr.strip()[-300:]}")
    # Mounts a role left in the host's mount table (`ip netns del` handles /run/netns).
    for point in _mounts_under([str(folder)]):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
        removed["mounts"].append(point)

    # Links before namespaces: deleting a veth end is synchronous, while a deleted
    # namespace takes its veth with it only later, in the kernel's own time.
    links = {link for link in network.link_names() if link.startswith(mine)}
    if state:
        links |= {node.host_if for node in state.nodes.values()} | {state.bridge}
    for link in sorted(links, key=lambda item: item.endswith("br")):
        if network.link_exists(link):
            network.delete_link(link)
            removed["links"].append(link)
    for netns in sorted(namespaces):
        network.delete_netns(netns)
        removed["netns"].append(netns)
    for leftover in network.NETNS_ETC.glob(f"{mine}*") if network.NETNS_ETC.is_dir() else []:
        network.delete_netns(leftover.name)
    if removed["netns"] or removed["links"]:
        say(f"removed {len(removed['netns'])} namespaces, {len(removed['links'])} links")

    if state:
        remove(state)
    if not keep_files and folder.is_dir():
        subprocess.run(["rm", "-rf", "--one-file-system", str(folder)], timeout=120,
                       check=False)
    return removed


def leftovers(name: str) -> dict[str, list[str]]:
    """Anything of lab `name` still on the host (empty lists when clean)."""
    mine = prefix(name)
    return {
        "netns": [ns for ns in network.netns_list() if ns.startswith(mine)],
        "links": [link for link in network.link_names() if link.startswith(mine)],
        "etc": [p.name for p in network.NETNS_ETC.glob(f"{mine}*")]
        if network.NETNS_ETC.is_dir() else [],
    }


def shell_command(state: LabState, node_name: str) -> str:
    """The command an operator types to get a shell on a node."""
    return f"ip netns exec {shlex.quote(state.node(node_name).netns)} bash"
