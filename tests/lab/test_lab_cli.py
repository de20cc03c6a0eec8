"""`dockyard lab` end to end on its own plumbing, with stand-in roles.

The roles here are `standin_role.py` (serves /health at the node's address and
forks a child), so these tests check what the lab itself promises: addresses,
reachability from the host, partitions, kills, and that `lab down` removes
everything, also after `lab up` was killed half-way. test_lab_e2e.py runs the
real master, agents and scheduler.
"""
from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from framework.local.lab import network
from framework.local.lab.lab import FAULT_ENV
from framework.local.lab.state import load
from tests.support.procs import wait_for

from .conftest import STANDIN, Lab, assert_clean, processes_mentioning

pytestmark = pytest.mark.root


def health(lab: Lab, ip: str, port: int) -> str:
    """What a role answers on /health, over the HTTPS a secured lab (the default) serves."""
    ca = lab.dir / "security" / "ca.pem"
    with urllib.request.urlopen(f"https://{ip}:{port}/health", timeout=1,
                                context=ssl.create_default_context(cafile=str(ca))) as response:
        return response.read().decode()


def answers(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((ip, port)) == 0


def roles(report: dict) -> dict[str, dict]:
    return {f"{node['name']}/{role['role']}": role
            for node in report["nodes"] for role in node["roles"]}


def test_up_status_partition_heal_kill_start_down(lab: Lab) -> None:
    done = lab.up("--agents", "2", "--dockyard-cmd", STANDIN)
    assert "control" in done.stdout and "agent2" in done.stdout
    # The line that points the host's CLI at the lab, ready to paste.
    assert f"export DOCKYARD_CONFIG={lab.dir / 'client.json'}" in done.stdout.splitlines()[-1]
    report = lab.status()
    assert report["phase"] == "up"
    assert [node["name"] for node in report["nodes"]] == ["control", "agent1", "agent2"]
    assert all(role["healthy"] for role in roles(report).values())
    control, agent1, agent2 = report["nodes"]
    assert len({control["ip"], agent1["ip"], agent2["ip"]}) == 3
    # Each role is reachable from the host at its node's own address.
    assert health(lab, control["ip"], 5050).startswith("master")
    assert health(lab, control["ip"], 8080).startswith("scheduler")
    assert health(lab, agent2["ip"], 5051).startswith("agent")
    # The router is a control-node role: its stats page on the node's address (plain HTTP: HAProxy
    # terminates no TLS), its HTTP port in the table and the URLs.
    assert [role["role"] for role in control["roles"]] == ["master", "scheduler", "router"]
    assert roles(report)["control/router"]["address"] == f"{control['ip']}:80"
    assert report["urls"]["router"] == f"http://{control['ip']}:80"
    assert report["urls"]["router_stats"] == f"http://{control['ip']}:9090/"
    with urllib.request.urlopen(f"http://{control['ip']}:9090/health", timeout=5) as response:
        assert response.read().decode().startswith("router")
    assert f"router    http://{control['ip']}:80" in done.stdout
    # Nodes find each other by name (the lab writes each namespace's hosts file; certificates name
    # the node too).
    by_name = subprocess.run(["ip", "netns", "exec", agent1["netns"], "curl", "-sf", "-m", "5",
                              "--cacert", str(lab.dir / "security" / "ca.pem"), "https://control:5050/health"],
                             capture_output=True, text=True, timeout=30)
    assert by_name.stdout.startswith("master"), by_name.stderr

    lab.run("partition", "agent2")
    cut = lab.node("agent2")
    assert cut["partitioned"] and cut["link"] == "down"
    assert not cut["roles"][0]["healthy"] and cut["roles"][0]["running"]
    assert not answers(agent2["ip"], 5051)
    lab.run("heal", "agent2")
    wait_for(lambda: lab.node("agent2")["roles"][0]["healthy"], timeout=20, what="healed agent2")

    # Crashing the control node takes the router with the master and scheduler; `start` brings
    # all three back.
    before = {role["role"]: role["pid"] for role in control["roles"]}
    lab.run("kill", "control")
    assert network.netns_pids(control["netns"]) == []
    assert not any(role["running"] for role in lab.node("control")["roles"])
    started = lab.run("start", "control")
    assert "master, scheduler, router" in started.stderr
    after = {role["role"]: role for role in lab.node("control")["roles"]}
    assert all(role["healthy"] and role["pid"] != before[name] for name, role in after.items())

    pid = agent1["roles"][0]["pid"]
    lab.run("kill", "agent1")
    assert network.netns_pids(agent1["netns"]) == []     # the forked child died too
    assert not lab.node("agent1")["roles"][0]["running"]
    assert lab.node("control")["roles"][0]["running"]
    lab.run("start", "agent1")
    restarted = lab.node("agent1")["roles"][0]
    assert restarted["healthy"] and restarted["pid"] != pid

    down = lab.run("down")
    assert "is down" in down.stderr
    assert_clean(lab)
    assert not lab.dir.exists()
    # Repeating it is harmless.
    lab.run("down")


def test_up_with_zookeeper_runs_it_on_the_control_node(lab: Lab) -> None:
    lab.up("--agents", "1", "--zk", "--dockyard-cmd", STANDIN)
    control = lab.node("control")
    assert [role["role"] for role in control["roles"]] == ["zookeeper", "master", "scheduler", "router"]
    assert all(role["healthy"] for role in control["roles"])
    with socket.create_connection((control["ip"], 2181), timeout=5) as sock:
        sock.sendall(b"ruok")
        assert sock.recv(8) == b"imok"
    settings = (lab.dir / "agent1" / "agent.env").read_text()
    assert f'DOCKYARD_MASTER="zk://{control["ip"]}:2181/mesos"' in settings


def test_up_without_the_router_leaves_it_out(lab: Lab) -> None:
    done = lab.up("--agents", "1", "--no-router", "--dockyard-cmd", STANDIN)
    report = lab.status()
    control = report["nodes"][0]
    assert [role["role"] for role in control["roles"]] == ["master", "scheduler"]
    assert "router" not in report["urls"] and "router " not in done.stdout
    assert not answers(control["ip"], 9090)
    assert not (lab.dir / "control" / "router.env").exists()


def test_router_settings_name_the_scheduler_and_the_lab_credentials(lab: Lab) -> None:
    lab.up("--agents", "1", "--dockyard-cmd", STANDIN, "--router-args", "--group web")
    control = lab.node("control")
    settings = (lab.dir / "control" / "router.env").read_text()
    assert f'DOCKYARD_SCHEDULER="https://{control["ip"]}:8080"' in settings
    assert f'DOCKYARD_CLIENT_CONFIG="{lab.dir / "client.json"}"' in settings
    assert 'DOCKYARD_EXTRA_ARGS="--group web"' in settings
    argv = Path(f"/proc/{control['roles'][2]['pid']}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    assert argv[argv.index("--ip") + 1] == control["ip"] and argv[argv.index("--stats-ip") + 1] == control["ip"]
    assert argv[argv.index("--config") + 1] == str(lab.dir / "client.json")
    assert argv[-2:] == ["--group", "web"]


@pytest.mark.parametrize("step", ["netns:agent1", "plug:agent2",
                                  "start:control:master", "start:agent2:agent"])
def test_down_after_up_was_killed_mid_way_leaves_nothing(lab: Lab, step: str) -> None:
    crashed = lab.up("--agents", "2", "--dockyard-cmd", STANDIN,
                     env={FAULT_ENV: f"crash-after:{step}"}, check=False)
    assert crashed.returncode == -signal.SIGKILL
    state = load(lab.name, lab.root)
    assert state is not None and state.phase == "building"
    assert network.link_exists(state.bridge)
    if step.startswith("start:"):
        # Roles it started are running on: the crash did not take them along.
        assert processes_mentioning(str(lab.dir))
    lab.run("down")
    assert_clean(lab)


def test_down_works_without_a_state_file(lab: Lab) -> None:
    lab.up("--agents", "1", "--dockyard-cmd", STANDIN,
           env={FAULT_ENV: "crash-after:start:agent1:agent"}, check=False)
    (lab.dir / "state.json").unlink()
    assert processes_mentioning(str(lab.dir))
    lab.run("down")
    assert_clean(lab)


def test_up_that_fails_names_the_role_and_removes_the_lab(lab: Lab) -> None:
    failed = lab.up("--agents", "1", "--dockyard-cmd", "false", check=False)
    assert failed.returncode == 1
    assert "master on control exited during start-up" in failed.stderr
    assert_clean(lab)
    assert (lab.dir / "control" / "master.log").exists(), "logs are kept for the post-mortem"


def test_second_up_is_refused_and_unknown_nodes_are_named(lab: Lab) -> None:
    lab.up("--agents", "1", "--dockyard-cmd", STANDIN)
    again = lab.up("--agents", "1", "--dockyard-cmd", STANDIN, check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    wrong = lab.run("partition", "agent7", check=False)
    assert wrong.returncode == 1 and "no node 'agent7'" in wrong.stderr
    assert lab.node("agent1")["roles"][0]["healthy"], "the refused up broke nothing"


def test_commands_on_a_missing_lab_say_so(lab: Lab) -> None:
    missing = lab.run("status", check=False)
    assert missing.returncode == 1 and "no lab" in missing.stderr


def test_up_refuses_leftovers_of_a_lab_without_state(lab: Lab) -> None:
    lab.up("--agents", "1", "--dockyard-cmd", STANDIN, env={FAULT_ENV: "crash-after:bridge"},
           check=False)
    (lab.dir / "state.json").unlink()
    refused = lab.up("--agents", "1", "--dockyard-cmd", STANDIN, check=False)
    assert refused.returncode == 1 and "left over" in refused.stderr
    assert network.link_exists(f"dy-{lab.name}-br"), "the refusal removed nothing"
