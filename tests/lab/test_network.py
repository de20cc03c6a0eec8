"""The namespace plumbing, for real: bridge, veths, namespaces, processes inside them."""
from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from framework.local.lab import LabError, NetworkError, network, nodes
from framework.local.lab.state import LabState, Node, Proc, check_lab_name, load, prefix
from tests.support.procs import wait_for


def fetch(url: str, timeout: float = 1.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def reachable(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((ip, port)) == 0


@pytest.fixture
def net() -> Iterator[dict]:
    """A bridge and two namespace nodes; removed after, and checked gone."""
    tag = "n" + secrets.token_hex(3)
    third = 100 + secrets.randbelow(100)
    mine = prefix(tag)
    spec = {"bridge": f"{mine}br", "host_ip": f"10.214.{third}.1",
            "nodes": [network.NodeLink(f"{mine}a", f"{mine}0", f"10.214.{third}.2/24"),
                      network.NodeLink(f"{mine}b", f"{mine}1", f"10.214.{third}.3/24")]}
    try:
        network.add_bridge(spec["bridge"], f"{spec['host_ip']}/24")
        for link in spec["nodes"]:
            network.add_netns(link.netns)
            network.plug(link, spec["bridge"])
        yield spec
    finally:
        for link in spec["nodes"]:
            nodes.stop_netns(link.netns, grace=2)
            network.delete_link(link.host_if)
            network.delete_netns(link.netns)
        network.delete_link(spec["bridge"])
    assert not [ns for ns in network.netns_list() if ns.startswith(mine)]
    assert not [name for name in network.link_names() if name.startswith(mine)]


def http_server(netns: str, ip: str, log: Path) -> Proc:
    return nodes.start("n", netns, "web", [sys.executable, "-m", "http.server", "--bind", ip,
                                           "8000"], log, env={"PYTHONUNBUFFERED": "1"})


@pytest.mark.root
def test_nodes_have_own_addresses_and_are_reachable_from_host_and_each_other(
        net: dict, tmp_path: Path) -> None:
    a, b = net["nodes"]
    # Each namespace sees only loopback and its own eth0 with its own address.
    assert sorted(network.link_names(a.netns)) == ["eth0", "lo"]
    addresses = network.ip("-4", "-o", "addr", "show", "dev", "eth0", netns=a.netns)
    assert network.bare(a.address) in addresses
    server = http_server(a.netns, network.bare(a.address), tmp_path / "web.log")
    url = f"http://{network.bare(a.address)}:8000/"
    wait_for(lambda: "Directory listing" in fetch(url), timeout=20, what="server in netns")
    # From the other node, through the bridge.
    other = subprocess.run(["ip", "netns", "exec", b.netns, sys.executable, "-c",
                            f"import urllib.request; print(urllib.request.urlopen('{url}', "
                            "timeout=5).status)"], capture_output=True, text=True, timeout=30)
    assert other.stdout.strip() == "200", other.stderr
    # Nodes have no route out of the lab subnet.
    routes = network.ip("route", netns=b.netns)
    assert "default" not in routes
    assert nodes.alive(server)


@pytest.mark.root
def test_link_down_partitions_node_and_link_up_heals_it(net: dict, tmp_path: Path) -> None:
    a, _ = net["nodes"]
    ip = network.bare(a.address)
    server = http_server(a.netns, ip, tmp_path / "web.log")
    wait_for(lambda: reachable(ip, 8000), timeout=20, what="server in netns")
    network.set_link(a.host_if, up=False)
    assert not network.link_is_up(a.host_if)
    assert not reachable(ip, 8000)
    assert nodes.alive(server), "a partition cuts the network, it does not kill"
    network.set_link(a.host_if, up=True)
    wait_for(lambda: reachable(ip, 8000), timeout=20, what="healed node")


@pytest.mark.root
def test_stop_netns_kills_processes_the_lab_never_recorded(net: dict, tmp_path: Path) -> None:
    a, _ = net["nodes"]
    ip = network.bare(a.address)
    standin = Path(__file__).with_name("standin_role.py")
    proc = nodes.start("a", a.netns, "agent",
                       [sys.executable, str(standin), "agent", "--ip", ip, "--port", "5051"],
                       tmp_path / "agent.log")
    # The stand-in forks a child into its own session, as an agent starts executors.
    wait_for(lambda: len(network.netns_pids(a.netns)) == 2, timeout=20, what="forked child")
    found = nodes.stop_netns(a.netns, grace=5)
    assert proc.pid in found and len(found) == 2
    assert network.netns_pids(a.netns) == []
    assert all(nodes.start_time(pid) is None for pid in found)


@pytest.mark.root
def test_stop_netns_escalates_to_sigkill(net: dict, tmp_path: Path) -> None:
    a, _ = net["nodes"]
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', " \
           "flush=True); time.sleep(600)"
    proc = nodes.start("a", a.netns, "stubborn", [sys.executable, "-c", code],
                       tmp_path / "stubborn.log")
    wait_for(lambda: "ok" in (tmp_path / "stubborn.log").read_text(), timeout=10,
             what="SIGTERM ignored")
    assert nodes.stop_netns(a.netns, grace=0.5) == [proc.pid]
    assert not nodes.alive(proc)


@pytest.mark.root
def test_ip_failures_are_translated_and_removal_is_idempotent() -> None:
    with pytest.raises(NetworkError, match="Cannot find device"):
        network.ip("link", "set", "dy-nonexist-0", "up")
    network.delete_link("dy-nonexist-0")          # already gone: not an error
    network.delete_netns("dy-nonexist-ns")
    with pytest.raises(NetworkError, match="bad interface name"):
        network.add_bridge("a-name-that-is-too-long", "10.214.0.1/24")
    assert "a-name-that-is-too-long" not in network.link_names()


def test_addresses_stay_in_private_subnet() -> None:
    assert network.host_address("10.213.0.0/24", 11) == "10.213.0.11/24"
    with pytest.raises(NetworkError, match="not a private IPv4 range"):
        network.host_address("8.8.8.0/24", 2)
    with pytest.raises(NetworkError, match="bad lab subnet"):
        network.host_address("10.213.0.1/24", 2)
    with pytest.raises(NetworkError, match="does not fit"):
        network.host_address("10.213.0.0/30", 5)


def test_lab_names_fit_interface_names() -> None:
    assert check_lab_name("abcd1234") == "abcd1234"
    longest = f"{prefix('abcd1234')}49p"
    assert len(longest) <= network.IFNAMSIZ
    for bad in ("", "UPPER", "has-dash", "waytoolongname"):
        with pytest.raises(LabError):
            check_lab_name(bad)


def test_state_file_round_trips_and_is_replaced_atomically(tmp_path: Path) -> None:
    state = LabState(name="x", dir=str(tmp_path / "x"), subnet="10.213.0.0/24",
                     bridge="dy-x-br", bridge_ip="10.213.0.1")
    state.nodes["control"] = Node("control", "dy-x-control", "dy-x-0", "10.213.0.2",
                                  ["master", "scheduler"])
    state.intend("bridge:dy-x-br")
    state.procs.append(Proc("control", "master", 42, 7, ["a", "b"], "/log"))
    state.save()
    loaded = load("x", tmp_path)
    assert loaded == state
    assert loaded.node("control").roles == ["master", "scheduler"]
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["state.json"]
    with pytest.raises(LabError, match="no node 'agent9'"):
        loaded.node("agent9")


def test_alive_refuses_a_reused_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        began = nodes.start_time(child.pid)
        assert began is not None
        assert nodes.alive(Proc("n", "r", child.pid, began, [], ""))
        assert not nodes.alive(Proc("n", "r", child.pid, began - 1, [], ""))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert nodes.start_time(child.pid) is None
