"""`dockyard up`: a master, N agents and the scheduler on this machine, supervised.

Each component is its own process with its own log file. Nothing is restarted
behind the user's back: when a child dies the supervisor says which, how, and
where its log is, and keeps the others running. Ctrl-C, SIGTERM, SIGHUP or
`dockyard down` stops them all (scheduler, agents, master, in that order); so
does the end of whoever reads `up`'s output (`| tee` gone). The components die
with `up` even when it is killed outright (lifeline.py), and `WORK_DIR/cluster.json`
records them (up_record.py). Nothing starts unless every port `up` needs is
free (preflight.py): a second `up` never touches a running cluster.

Secure by default (docs/security.md): on first start `up` generates a security
bundle under `WORK_DIR/security` (a CA, certificates, credentials, ACLs, the
executor key), turns authentication on for every component, and writes
`WORK_DIR/client.json` for the CLI. TLS is on when `--tls` is given or the
cluster binds an address other than loopback. `--insecure` runs today's open
cluster instead, for a loopback playground.
"""
from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

from framework.errors import SecurityError
from framework.local.cluster import lifeline
from framework.local.agent import machine
from framework.local.agent.model import dockyard_argv
from framework.local.agent.processes import kill_sandbox_processes
from framework.local.cluster.preflight import taken_ports
from framework.local.cluster.up_record import ClusterRecord
from framework.mesos.resources import Resources
from framework.security import client as client_settings
from framework.security.binding import is_loopback
from framework.security.bundle import Bundle
from framework.tables import console as make_console
from framework.tables import table as make_table

console = make_console()
output = lifeline.Output()
STOP_TIMEOUT = 10.0


def say(text: str, **options: object) -> None:
    """Print for the user; a reader gone (closed pipe) silences output rather than failing."""
    output.write(lambda: console.print(text, highlight=False, **options))


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    url: str  # where it listens
    health: str
    popen: subprocess.Popen | None = None
    reported: bool = False
    env: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # to check the health of a TLS server

    def start(self) -> None:
        """In its own session (Ctrl-C is for `up` to handle), dying with `up` however `up` ends."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                          start_new_session=True, preexec_fn=lifeline.die_with_parent())

    @property
    def work_dir(self) -> str | None:
        return self.argv[self.argv.index("--work-dir") + 1] if "--work-dir" in self.argv else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health, timeout=1, context=self.tls) as response:
                return 200 <= response.status < 300
        except OSError:
            return False


# Below the kernel's ephemeral range (32768+), which clients and free_port() draw from.
PORT_RANGE = (31000, 32767)


def port_slice(ranges: list[tuple[int, int]], index: int, agents: int) -> str:
    """Agent `index`'s (1-based) Nth of the ports in `ranges`, as `--resources` range text."""
    ports = [port for begin, end in ranges for port in range(begin, end + 1)]
    size = len(ports) // max(agents, 1)
    mine = ports[(index - 1) * size:index * size]
    pieces: list[list[int]] = []
    for port in mine:
        if pieces and port == pieces[-1][1] + 1:
            pieces[-1][1] = port
        else:
            pieces.append([port, port])
    return "[" + ",".join(f"{begin}-{end}" for begin, end in pieces) + "]"


def agent_resources(resources: str | None, index: int, agents: int, work_dir: Path) -> str:
    """Agents on one machine share it: each gets an Nth of its CPUs, memory and disk unless
    `--resources` sets them, and its own slice of the ports (31000-32767, or the ports
    `--resources` names).

    Two agents offering the same host ports would hand the same port to two tasks, and
    the second would fail to bind; N agents each offering the whole machine would
    promise N times its memory.
    """
    given = [part for part in (resources or "").split(";") if part.strip()]
    ports = [part for part in given if part.split(":", 1)[0].strip() == "ports"]  # a role's ports stay whole
    others = ";".join(part for part in given if part not in ports) or None
    ranges = Resources.parse(";".join(ports)).ranges("ports") if ports else [PORT_RANGE]
    return ";".join([machine.with_share(others, agents, work_dir), f"ports:{port_slice(ranges, index, agents)}"])


OFFER_TIMEOUT = 10.0  # seconds before an unanswered offer is rescinded (Mesos's --offer_timeout); the
# scheduler holds offers it cannot use for up to 5 s before declining, so 10 s leaves margin


@dataclass(frozen=True)
class Security:
    """What a cluster runs with: a bundle (None: open), and a certificate when TLS is on."""

    bundle: Bundle | None = None
    cert: tuple[Path, Path] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    def client_context(self) -> ssl.SSLContext | None:
        if self.bundle is None or self.cert is None:
            return None
        return ssl.create_default_context(cafile=str(self.bundle.ca_cert))

    def flags(self, component: str, name: str = "") -> list[str]:
        if self.bundle is None:
            return ["--insecure"]
        tls = self.bundle.tls_flags(*self.cert) if self.cert else []
        if component == "master":
            return self.bundle.master_flags() + tls
        if component == "agent":
            return self.bundle.agent_flags(name) + tls
        return self.bundle.scheduler_flags() + tls


def agent_address(ip: str, index: int) -> str:
    """Where agent `index` listens, which is also its Mesos hostname (`$HOST`, Marathon's task
    `host`): an address, so that whatever reads it (a router, marathon-lb, a user's curl)
    reaches the agent's tasks without DNS, as Mesos agents started with
    `--hostname_lookup=false` advertise their IP. On loopback each agent has one of its own
    (127.0.2.N: all of 127/8 reaches this machine), so agents stay apart as separate
    machines would be (a `hostname:UNIQUE` constraint spreads over them); on any other
    address they share it, and the `agent` attribute tells them apart."""
    return f"127.0.2.{index}" if is_loopback(ip) else ip


WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def advertised(address: str) -> str:
    """The address others reach a component listening on `address` at (an agent's hostname):
    the address, or for a wildcard this machine's own address."""
    if address not in WILDCARDS:
        return address
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def reachable(address: str) -> str:
    """Where this machine reaches a component listening on `address`."""
    return "127.0.0.1" if address in WILDCARDS else address


def hosts_of(ip: str, agents: int = 0) -> list[str]:
    """What a certificate for this machine's cluster must name: loopback, the bound address
    and each agent's address."""
    return sorted({"127.0.0.1", "localhost", socket.gethostname(), advertised(ip),
                   *(advertised(agent_address(ip, index)) for index in range(1, agents + 1))})


def prepare_security(work_dir: Path, ip: str, agents: int, tls: bool, insecure: bool) -> Security:
    """Generate (or reuse) the bundle under WORK_DIR/security; certificates when TLS is on."""
    if insecure:
        return Security()
    bundle = Bundle(work_dir / "security").ensure(agents=[f"agent{i}" for i in range(1, agents + 1)])
    if not (tls or not is_loopback(ip)):
        return Security(bundle)
    return Security(bundle, bundle.certificate("cluster", hosts_of(ip, agents)))


def write_client_settings(work_dir: Path, ip: str, master_port: int, scheduler_port: int,
                          security: Security) -> Path:
    """WORK_DIR/client.json: where the CLI finds this cluster and who it is there (written open
    too, so a file left from an earlier secured run never points the CLI at the wrong setting)."""
    host = reachable(ip)
    settings = {"url": f"{security.scheme}://{host}:{scheduler_port}",
                "master": f"{security.scheme}://{host}:{master_port}"}
    if security.bundle is not None:
        settings.update(principal=security.bundle.operator.principal, secret=security.bundle.operator.secret)
    if security.bundle is not None and security.cert:
        settings["ca"] = str(security.bundle.ca_cert)
    path = work_dir / "client.json"
    work_dir.mkdir(parents=True, exist_ok=True)  # `--insecure` makes no security dir that would create it
    client_settings.write(path, settings)
    return path


def plan(agents: int, work_dir: Path, ip: str, master_port: int, agent_port: int, scheduler_port: int,
         scheduler: bool, resources: str | None, isolation: str | None = None,
         security: Security = Security(), router: tuple[int, int] | None = None,
         client_file: Path | None = None) -> list[Child]:
    """The children of a cluster, in start order; `router`: its HTTP and stats ports."""
    master = f"{ip}:{master_port}"
    scheme, context = security.scheme, security.client_context()
    children = [Child("master", dockyard_argv("master", "--ip", ip, "--port", str(master_port),
                                              "--work-dir", str(work_dir / "master"),
                                              "--offer-timeout", str(OFFER_TIMEOUT), *security.flags("master")),
                      work_dir / "logs" / "master.log", f"{scheme}://{master}", f"{scheme}://{master}/health",
                      tls=context)]
    for index in range(1, agents + 1):
        port, address = agent_port + index - 1, agent_address(ip, index)
        argv = dockyard_argv("agent", "--master", master, "--ip", address, "--port", str(port),
                             "--work-dir", str(work_dir / f"agent{index}"), "--hostname", advertised(address),
                             "--attributes", f"agent:agent{index}", *security.flags("agent", f"agent{index}"))
        argv += ["--resources", agent_resources(resources, index, agents, work_dir)]
        argv += ["--isolation", isolation] if isolation else []
        url = f"{scheme}://{reachable(address)}:{port}"
        children.append(Child(f"agent{index}", argv, work_dir / "logs" / f"agent{index}.log", url, f"{url}/health",
                              tls=context))
    if scheduler:
        children.append(Child("scheduler", dockyard_argv("scheduler", "--master", master, "--ip", ip,
                                                         "--port", str(scheduler_port),
                                                         "--data-dir", str(work_dir / "scheduler"),
                                                         *security.flags("scheduler")),
                              work_dir / "logs" / "scheduler.log", f"{scheme}://{ip}:{scheduler_port}",
                              f"{scheme}://{ip}:{scheduler_port}/health", tls=context))
    if scheduler and router is not None:
        http_port, stats_port = router  # the stats page stays on loopback, whatever --ip is
        argv = dockyard_argv("router", "--ip", ip, "--http-port", str(http_port), "--stats-port", str(stats_port),
                             "--work-dir", str(work_dir / "router"), "--stop-haproxy-on-exit")
        argv += ["--config", str(client_file)] if client_file is not None else []
        children.append(Child("router", argv, work_dir / "logs" / "router.log",
                              f"http://{ip}:{http_port} (stats http://127.0.0.1:{stats_port}/)",
                              f"http://127.0.0.1:{stats_port}/"))
    return children


def wait_healthy(child: Child, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            return False
        if child.healthy():
            return True
        time.sleep(0.1)
    return False


def stop_all(children: list[Child]) -> None:
    """SIGTERM every child (last started first), then SIGKILL what outlives the timeout."""
    for child in reversed(children):
        if child.alive():
            assert child.popen is not None
            try:
                os.killpg(child.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in reversed(children):
        if child.popen is None:
            continue
        try:
            child.popen.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            say(f"[yellow]{child.name} did not stop within {STOP_TIMEOUT:.0f}s: killing it[/]")
            try:
                os.killpg(child.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.popen.wait(5)


def clean_agent(name: str, work_dir: str) -> None:
    """`dockyard executor --cleanup` for an agent that did not stop cleanly.

    An agent stopped by SIGTERM destroys its containers itself; one that was
    killed (or crashed) leaves its executors running and its tasks' containers,
    mounts and cgroups to its next start. The cluster is going away: its
    executors are killed and that clean-up runs now.
    """
    kill_sandbox_processes(Path(work_dir))  # its executors (and host tasks) outlived it
    try:
        subprocess.run(dockyard_argv("executor", "--cleanup", work_dir), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        say(f"[yellow]clean-up after {name} failed: {error}[/]")


def clean_after_agents(children: list[Child]) -> None:
    for child in children:
        if child.name.startswith("agent") and child.popen is not None and child.popen.returncode != 0 \
                and child.work_dir:
            clean_agent(child.name, child.work_dir)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def print_table(children: list[Child]) -> None:
    table = make_table("component", "listens on", "pid", "log", title="dockyard cluster")
    for child in children:
        table.add_row(child.name, child.url, str(child.popen.pid if child.popen else "-"), str(child.log))
    output.write(lambda: console.print(table))


def print_access(security: Security, client_file: Path) -> None:
    """Where the credentials are, and how a curl or the CLI uses them."""
    if security.bundle is None:
        say("[yellow]security is off (--insecure): every API is open to anyone who can reach it[/]")
        return
    bundle = security.bundle
    tls = f" --cacert {bundle.ca_cert}" if security.cert else ""
    say(f"authentication on{' with TLS' if security.cert else ''}; credentials in {bundle.directory}")
    say(f"the CLI reads {client_file} (or --config FILE, or $DOCKYARD_CONFIG); curl needs "
        f'-u "{bundle.operator.principal}:$(cat {bundle.operator_secret_file})"{tls}', soft_wrap=True)


class Stop(Exception):
    """SIGTERM or SIGHUP arrived."""


def run(children: list[Child], on_up: Callable[[], None] | None = None,
        record: ClusterRecord | None = None) -> int:
    def on_term(_signum: int, _frame: object) -> None:
        raise Stop()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_term)
    started: list[Child] = []
    try:
        for child in children:
            child.start()
            started.append(child)
            if record is not None:
                assert child.popen is not None
                record.started(child.name, child.popen.pid, str(child.log))
            if child.name == "master" and not wait_healthy(child):
                say(f"[red]the master did not come up; see {child.log}[/]")
                return 1
        for child in started[1:]:
            if not wait_healthy(child):
                say(f"[yellow]{child.name} is not healthy yet; see {child.log}[/]")
        print_table(started)
        if on_up is not None:
            on_up()
        say("cluster up; Ctrl-C (or `dockyard down` from elsewhere) stops it")
        while True:
            for child in started:
                if not child.reported and not child.alive():
                    child.reported = True
                    assert child.popen is not None
                    say(f"[red]{child.name} {describe_exit(child.popen.returncode)}; "
                        f"it is not restarted (log: {child.log})[/]")
            if all(child.reported for child in started):
                say("[red]every component has exited[/]")
                return 1
            if output.lost:
                return 1  # whoever read this output is gone (`| tee` ended): stop as on Ctrl-C
            time.sleep(0.5)
    except (KeyboardInterrupt, Stop):
        say("stopping the cluster")
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        stop_all(started)
        clean_after_agents(started)


def refuse_to_disturb(work_dir: Path, wanted: dict[int, tuple[str, str]]) -> None:
    """Stop here, before anything is written or started, if a cluster runs in the way."""
    record = ClusterRecord.load(work_dir)
    running = record.running() if record is not None else []
    if running:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in running)
        raise click.ClickException(f"a cluster started by `dockyard up` runs from {work_dir}: {names}. "
                                   f"Stop it first: `dockyard down --work-dir {work_dir}`")
    taken = taken_ports(wanted)
    if taken:
        raise click.ClickException(
            "cannot start the cluster:\n" + "\n".join(f"  {t}" for t in taken) +
            "\nStop what holds them (Ctrl-C where that cluster runs, or `dockyard down --work-dir DIR` for one "
            "`dockyard up` started), or choose other ports: --master-port, --agent-port, --scheduler-port.")


def ports_wanted(agents: int, ip: str, master_port: int, agent_port: int, scheduler_port: int | None,
                 router: tuple[int, int] | None = None) -> dict[int, tuple[str, str]]:
    """port -> (the address it is bound on, the component that listens there); two components
    on one port is a usage error."""
    wanted = [(master_port, ip, "the master"),
              *((agent_port + i, agent_address(ip, i + 1), f"agent{i + 1}") for i in range(agents))]
    wanted += [(scheduler_port, ip, "the scheduler")] if scheduler_port is not None else []
    wanted += [(router[0], ip, "the router"), (router[1], "127.0.0.1", "the router's stats page")] \
        if router is not None else []
    ports: dict[int, tuple[str, str]] = {}
    for port, address, role in wanted:
        if port in ports:
            raise click.UsageError(f"{ports[port][1]} and {role} would both listen on port {port}")
        ports[port] = (address, role)
    return ports


@click.command("up")
@click.option("--agents", default=2, show_default=True, type=int)
@click.option("--work-dir", default=".dockyard", show_default=True, type=click.Path(path_type=Path),
              help="logs, state, the security bundle (security/) and client.json")
@click.option("--ip", default="127.0.0.1", show_default=True,
              help="address the master, scheduler and router bind, and the agents too unless it is loopback "
                   "(then agent N binds 127.0.2.N, its hostname); another than loopback turns TLS on")
@click.option("--master-port", default=5050, show_default=True, type=int)
@click.option("--agent-port", default=5051, show_default=True, type=int, help="port of agent1; agent2 gets +1 ...")
@click.option("--scheduler-port", default=8080, show_default=True, type=int)
@click.option("--no-scheduler", is_flag=True, help="start the master and agents only")
@click.option("--resources", default=None,
              help="every agent's --resources; cpus, mem and disk it leaves out are an Nth of this machine's "
                   "for each of N agents, and the ports (31000-32767, or those it names) are split among them")
@click.option("--isolation", default=None, help="every agent's --isolation (see `dockyard agent --help`)")
@click.option("--router", "with_router", is_flag=True,
              help="also run `dockyard router`: an HAProxy that follows the apps (docs/router.md)")
@click.option("--router-http-port", default=80, show_default=True, type=int,
              help="the router's port for HTTP virtual hosts (HAPROXY_{n}_VHOST)")
@click.option("--router-stats-port", default=9090, show_default=True, type=int,
              help="HAProxy's stats page and Prometheus metrics (/metrics), on 127.0.0.1")
@click.option("--tls", is_flag=True, help="serve TLS on loopback too (always on for other addresses)")
@click.option("--insecure", is_flag=True,
              help="no authentication, no TLS: every API open to anyone who reaches it (a loopback playground)")
def up_command(agents: int, work_dir: Path, ip: str, master_port: int, agent_port: int, scheduler_port: int,
               no_scheduler: bool, resources: str | None, isolation: str | None, with_router: bool,
               router_http_port: int, router_stats_port: int, tls: bool, insecure: bool) -> None:
    """Run a master, N agents and the scheduler on this machine until Ctrl-C or `dockyard down`."""
    if tls and insecure:
        raise click.UsageError("--tls and --insecure contradict each other")
    work_dir = work_dir.resolve()
    scheduler = not no_scheduler
    if with_router and not scheduler:
        raise click.UsageError("--router follows the scheduler's apps: it needs the scheduler")
    router = (router_http_port, router_stats_port) if with_router else None
    if agents < 1:
        raise click.UsageError("--agents must be at least 1")
    refuse_to_disturb(work_dir, ports_wanted(agents, ip, master_port, agent_port,
                                             scheduler_port if scheduler else None, router))
    try:
        security = prepare_security(work_dir, ip, agents, tls, insecure)
    except (SecurityError, OSError) as error:
        raise click.ClickException(f"cannot prepare the cluster's security under {work_dir}: {error}") from None
    client_file = write_client_settings(work_dir, ip, master_port, scheduler_port, security)
    children = plan(agents, work_dir, ip, master_port, agent_port, scheduler_port, scheduler, resources, isolation,
                    security, router, client_file)
    record = ClusterRecord.begin(work_dir, [child.work_dir for child in children
                                            if child.name.startswith("agent") and child.work_dir])
    sys.exit(run(children, on_up=lambda: print_access(security, client_file), record=record))
