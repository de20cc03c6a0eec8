"""The provisioning scripts that Vagrant nodes and `dockyard lab` share, run for real."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from framework.local.lab import network, nodes
from framework.local.lab.lab import PROVISION
from framework.local.lab.state import prefix
from tests.support.procs import wait_for
from tests.support.zookeeper import available as zookeeper_available

SCRIPTS = sorted(PROVISION.glob("*.sh"))


def script(name: str, *args: str, env: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(PROVISION / name), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
    if check:
        assert done.returncode == 0, done.stderr
    return done


def role_argv(tmp_path: Path, role: str, *settings: str) -> list[str]:
    env_file = tmp_path / f"{role}.env"
    script("role-env.sh", role, str(env_file), *settings)
    return script("run-role.sh", "--print", role, str(env_file)).stdout.splitlines()


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_strict_plain_shell(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(path, os.X_OK)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_role_command_lines_embedded(tmp_path: Path) -> None:
    common = ("DOCKYARD_CMD=/opt/py /src/dockyard.py", "DOCKYARD_IP=10.213.0.11",
              "DOCKYARD_HOSTNAME=agent1", "DOCKYARD_WORK_DIR=/w")
    assert role_argv(tmp_path, "agent", *common, "DOCKYARD_MASTER=10.213.0.2:5050",
                     "DOCKYARD_ATTRIBUTES=node:agent1",
                     "DOCKYARD_RESOURCES=cpus:2;mem:1024;ports:[31000-31099]") == [
        "/opt/py", "/src/dockyard.py", "agent", "--master", "10.213.0.2:5050",
        "--ip", "10.213.0.11", "--port", "5051", "--work-dir", "/w", "--hostname", "agent1",
        "--attributes", "node:agent1", "--resources", "cpus:2;mem:1024;ports:[31000-31099]"]
    assert role_argv(tmp_path, "master", *common, "DOCKYARD_ZK=zk://10.213.0.2:2181/mesos") == [
        "/opt/py", "/src/dockyard.py", "master", "--ip", "10.213.0.11", "--port", "5050",
        "--work-dir", "/w", "--hostname", "agent1", "--offer-timeout", "10", "--zk", "zk://10.213.0.2:2181/mesos"]
    assert role_argv(tmp_path, "scheduler", *common, "DOCKYARD_MASTER=zk://c:2181/mesos",
                     "DOCKYARD_PORT=8080") == [
        "/opt/py", "/src/dockyard.py", "scheduler", "--master", "zk://c:2181/mesos",
        "--ip", "10.213.0.11", "--port", "8080", "--data-dir", "/w"]


def test_router_command_line(tmp_path: Path) -> None:
    """The router on the control node: every frontend and the stats page on the node's address,
    the scheduler named by URL; secured, the client settings with its credentials and CA."""
    common = ("DOCKYARD_CMD=dockyard", "DOCKYARD_IP=192.168.56.10", "DOCKYARD_HOSTNAME=control",
              "DOCKYARD_WORK_DIR=/var/lib/dockyard/router", "DOCKYARD_PORT=80", "DOCKYARD_STATS_PORT=9090")
    assert role_argv(tmp_path, "router", *common, "DOCKYARD_SCHEDULER=http://192.168.56.10:8080",
                     "DOCKYARD_INSECURE=1") == [
        "dockyard", "router", "--url", "http://192.168.56.10:8080", "--ip", "192.168.56.10",
        "--http-port", "80", "--stats-ip", "192.168.56.10", "--stats-port", "9090",
        "--work-dir", "/var/lib/dockyard/router"]  # no --insecure: the router has no server of its own to secure
    secured = role_argv(tmp_path, "router", *common, "DOCKYARD_SCHEDULER=https://192.168.56.10:8080",
                        "DOCKYARD_SECURITY_DIR=/etc/dockyard/security", "DOCKYARD_TLS_NAME=control",
                        "DOCKYARD_MESOS=apache", "DOCKYARD_CLIENT_CONFIG=/etc/dockyard/router-client.json",
                        "DOCKYARD_EXTRA_ARGS=--group *")
    assert secured == [
        "dockyard", "router", "--url", "https://192.168.56.10:8080", "--ip", "192.168.56.10",
        "--http-port", "80", "--stats-ip", "192.168.56.10", "--stats-port", "9090",
        "--work-dir", "/var/lib/dockyard/router", "--config", "/etc/dockyard/router-client.json",
        "--group", "*"]
    env_file = tmp_path / "router.env"
    script("role-env.sh", "router", str(env_file), *common, "DOCKYARD_SECURITY_DIR=/s")
    unsure = script("run-role.sh", "--print", "router", str(env_file), check=False)
    assert unsure.returncode == 2 and "DOCKYARD_SCHEDULER" in unsure.stderr
    script("role-env.sh", "router", str(env_file), *common, "DOCKYARD_SECURITY_DIR=/s",
           "DOCKYARD_SCHEDULER=https://c:8080")
    anonymous = script("run-role.sh", "--print", "router", str(env_file), check=False)
    assert anonymous.returncode == 2 and "DOCKYARD_CLIENT_CONFIG" in anonymous.stderr


def test_role_command_lines_apache_mesos(tmp_path: Path) -> None:
    argv = role_argv(tmp_path, "master", "DOCKYARD_MESOS=apache", "DOCKYARD_IP=192.168.56.10",
                     "DOCKYARD_WORK_DIR=/var/lib/dockyard/master", "DOCKYARD_HOSTNAME=control",
                     "DOCKYARD_ZK=zk://192.168.56.10:2181/mesos")
    assert argv == ["mesos-master", "--ip=192.168.56.10", "--port=5050",
                    "--work_dir=/var/lib/dockyard/master", "--hostname=control", "--offer_timeout=10secs",
                    "--zk=zk://192.168.56.10:2181/mesos", "--quorum=1"]
    agent = role_argv(tmp_path, "agent", "DOCKYARD_MESOS=apache", "DOCKYARD_IP=192.168.56.11",
                      "DOCKYARD_WORK_DIR=/w", "DOCKYARD_MASTER=zk://192.168.56.10:2181/mesos",
                      "DOCKYARD_ATTRIBUTES=node:agent1")
    assert agent[0] == "mesos-agent" and "--attributes=node:agent1" in agent


def test_role_settings_are_refused_when_unsafe_or_missing(tmp_path: Path) -> None:
    env_file = tmp_path / "x.env"
    bad = script("role-env.sh", "agent", str(env_file), "DOCKYARD_IP=$(reboot)", check=False)
    assert bad.returncode == 2 and "DOCKYARD_IP" in bad.stderr and not env_file.exists()
    assert script("role-env.sh", "agent", str(env_file), "PATH=/x", check=False).returncode == 2
    assert script("role-env.sh", "web", str(env_file), check=False).returncode == 2
    script("role-env.sh", "agent", str(env_file), "DOCKYARD_IP=10.0.0.1")
    missing = script("run-role.sh", "--print", "agent", str(env_file), check=False)
    assert missing.returncode == 2 and "DOCKYARD_WORK_DIR" in missing.stderr
    script("role-env.sh", "master", str(env_file), "DOCKYARD_MESOS=other", "DOCKYARD_IP=1",
           "DOCKYARD_WORK_DIR=/w")
    wrong = script("run-role.sh", "--print", "master", str(env_file), check=False)
    assert wrong.returncode == 2 and "embedded or apache" in wrong.stderr


def test_hosts_block_is_replaced_not_appended(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n10.9.9.9\tkeepme\n")
    script("hosts.sh", str(hosts), "control=192.168.56.10", "agent1=192.168.56.11")
    script("hosts.sh", str(hosts), "control=192.168.56.10", "agent1=192.168.56.12")
    text = hosts.read_text()
    assert "keepme" in text and text.count("BEGIN dockyard lab") == 1
    assert "192.168.56.12\tagent1" in text and "192.168.56.11" not in text
    assert script("hosts.sh", str(hosts), "bad name=1.2.3.4", check=False).returncode == 2


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("role", ["zookeeper", "master", "agent", "scheduler", "router"])
def test_units_are_written_into_a_root_and_verify(tmp_path: Path, role: str) -> None:
    root = tmp_path / "root"
    script("role-env.sh", role, str(root / "etc/dockyard" / f"{role}.env"), "DOCKYARD_IP=1.2.3.4")
    env = {"DOCKYARD_ROOT": str(root), "DOCKYARD_LIBEXEC": str(PROVISION)}
    unit = Path(script("install-unit.sh", role, env=env).stdout.strip())
    assert unit == root / "etc/systemd/system" / f"dockyard-{role}.service"
    text = unit.read_text()
    assert f"ExecStart={PROVISION}/run-role.sh {role} /etc/dockyard/{role}.env" in text
    assert ("KillMode=process" in text) == (role == "agent")  # the router's HAProxy stops with its unit
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and "dockyard" not in verify.stderr, verify.stderr


def test_router_unit_starts_after_the_scheduler_on_its_node(tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = {"DOCKYARD_ROOT": str(root), "DOCKYARD_LIBEXEC": str(PROVISION)}
    for role in ("scheduler", "router"):
        script("role-env.sh", role, str(root / "etc/dockyard" / f"{role}.env"), "DOCKYARD_IP=1.2.3.4")
        script("install-unit.sh", role, env=env)
    unit = (root / "etc/systemd/system/dockyard-router.service").read_text()
    assert "After=network-online.target dockyard-scheduler.service" in unit
    assert "Restart=always" in unit


def test_unit_without_settings_is_refused(tmp_path: Path) -> None:
    done = script("install-unit.sh", "agent", env={"DOCKYARD_ROOT": str(tmp_path)}, check=False)
    assert done.returncode == 2 and "agent.env is missing" in done.stderr


def test_master_choice(tmp_path: Path) -> None:
    assert script("install-mesos.sh", env={"DOCKYARD_MESOS": "embedded"}).stdout == "embedded\n"
    assert script("install-mesos.sh", env={"DOCKYARD_MESOS": "nope"},
                  check=False).returncode == 2
    if shutil.which("mesos-master"):
        pytest.skip("Apache Mesos is installed here: auto would pick it")
    candidate = subprocess.run(["apt-cache", "policy", "mesos"], capture_output=True,
                               text=True).stdout
    if "Candidate:" in candidate and "(none)" not in candidate:
        pytest.skip("this host's apt sources carry a mesos package")
    # Debian carries no Mesos: auto falls back to the embedded master, apache refuses.
    assert script("install-mesos.sh", env={"DOCKYARD_MESOS": "auto"}).stdout == "embedded\n"
    refused = script("install-mesos.sh", env={"DOCKYARD_MESOS": "apache"}, check=False)
    assert refused.returncode == 1 and "DOCKYARD_MESOS_APT" in refused.stderr


@pytest.fixture
def node() -> Iterator[network.NodeLink]:
    """One namespace node on its own bridge, as `dockyard lab` builds them."""
    mine = prefix("p" + os.urandom(2).hex())
    link = network.NodeLink(f"{mine}zk", f"{mine}0", "10.215.7.2/24")
    bridge = f"{mine}br"
    try:
        network.add_bridge(bridge, "10.215.7.1/24")
        network.add_netns(link.netns)
        network.plug(link, bridge)
        yield link
    finally:
        nodes.stop_netns(link.netns)
        network.delete_link(link.host_if)
        network.delete_netns(link.netns)
        network.delete_link(bridge)
    assert not [n for n in network.link_names() if n.startswith(mine)]


@pytest.mark.root
@pytest.mark.skipif(not zookeeper_available(), reason="Debian's zookeeper is not installed")
def test_zookeeper_role_runs_in_a_namespace_node(node: network.NodeLink, tmp_path: Path) -> None:
    """role-env.sh + run-role.sh, exactly as a Vagrant unit runs them, inside a node."""
    env_file = tmp_path / "zookeeper.env"
    script("role-env.sh", "zookeeper", str(env_file), "DOCKYARD_PORT=2181",
           f"DOCKYARD_WORK_DIR={tmp_path / 'zk'}")
    proc = nodes.start("zk", node.netns, "zookeeper",
                       ["bash", str(PROVISION / "run-role.sh"), "zookeeper", str(env_file)],
                       tmp_path / "zookeeper.log")
    ip = network.bare(node.address)

    def ruok() -> bool:
        with socket.create_connection((ip, 2181), timeout=1) as sock:
            sock.sendall(b"ruok")
            return sock.recv(8) == b"imok"

    wait_for(ruok, timeout=60, what="ZooKeeper in the node")
    # run-role.sh execs: the recorded PID is java itself, not a shell around it.
    assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "java"
    # Its admin server is off, leaving 8080 to the scheduler.
    with socket.socket() as sock:
        sock.settimeout(0.5)
        assert sock.connect_ex((ip, 8080)) != 0


def test_secured_roles_get_the_same_flags_as_up(tmp_path: Path) -> None:
    """run-role.sh (lab and Vagrant) and `dockyard up` (framework/security/bundle.py) secure the
    embedded roles with the same flags; Apache Mesos gets Mesos's names and libprocess's TLS."""
    from framework.security.bundle import Bundle

    sec = tmp_path / "security"
    bundle = Bundle(sec)
    common = ("DOCKYARD_CMD=dockyard", "DOCKYARD_IP=10.213.0.11", "DOCKYARD_HOSTNAME=agent1",
              "DOCKYARD_WORK_DIR=/w", f"DOCKYARD_SECURITY_DIR={sec}", "DOCKYARD_TLS_NAME=agent1")
    tls = bundle.tls_flags(sec / "agent1.pem", sec / "agent1.key")
    master = role_argv(tmp_path, "master", *common)
    assert master[-len(bundle.master_flags()) - len(tls):] == [*bundle.master_flags(), *tls]
    assert master[master.index("--offer-timeout") + 1] == "10"
    agent = role_argv(tmp_path, "agent", *common, "DOCKYARD_MASTER=10.213.0.2:5050")
    assert agent[-len(bundle.agent_flags("agent1")) - len(tls):] == [*bundle.agent_flags("agent1"), *tls]
    scheduler = role_argv(tmp_path, "scheduler", *common, "DOCKYARD_MASTER=10.213.0.2:5050")
    assert scheduler[-len(bundle.scheduler_flags()) - len(tls):] == [*bundle.scheduler_flags(), *tls]

    apache = role_argv(tmp_path, "master", *common, "DOCKYARD_MESOS=apache")
    assert apache[:2] == ["env", "LIBPROCESS_SSL_ENABLED=true"]
    assert f"--credentials={sec}/credentials.json" in apache and "--authenticate_agents" in apache
    assert "mesos-master" in apache

    open_agent = role_argv(tmp_path, "agent", "DOCKYARD_CMD=dockyard", "DOCKYARD_IP=10.213.0.11",
                           "DOCKYARD_WORK_DIR=/w", "DOCKYARD_MASTER=m:5050", "DOCKYARD_INSECURE=1")
    assert open_agent[-1] == "--insecure" and "--credential" not in open_agent
