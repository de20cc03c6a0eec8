"""`dockyard up` and `dockyard down` around a cluster's life, with real processes.

A second `up` on taken ports starts nothing and touches nothing, and says what
holds each port. `down` stops a cluster from another terminal. The components
die with `up` when `up` is killed with SIGKILL, and when whoever reads its output
goes away. Agents started together share the machine instead of each offering
all of it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from framework.local.agent import machine
from framework.local.cluster.up_record import ClusterRecord, Recorded
from tests.local.test_up import consecutive_free_ports, master_of, registered
from tests.support.procs import REPO, Process, dockyard, free_port, port_open, wait_for

RESOURCES = "cpus:1;mem:512;disk:100"


class Up:
    """One `dockyard up --no-scheduler` on free ports, in `work`."""

    def __init__(self, tmp_path: Path, name: str, agents: int = 2, *flags: str) -> None:
        self.work = tmp_path / name
        self.agents = agents
        self.master_port, self.agent_port = free_port(), consecutive_free_ports(agents)
        self.argv = dockyard("up", "--agents", str(agents), "--no-scheduler", "--work-dir", str(self.work),
                             "--master-port", str(self.master_port), "--agent-port", str(self.agent_port), *flags)
        self.log = tmp_path / f"{name}.log"

    @property
    def ports(self) -> list[tuple[int, str]]:
        """(port, address): the master on loopback, agent N on its own 127.0.2.N."""
        return [(self.master_port, "127.0.0.1"),
                *((self.agent_port + i, f"127.0.2.{i + 1}") for i in range(self.agents))]

    def start(self) -> Process:
        process = Process(self.argv, self.log, env={"COLUMNS": "200"})
        wait_for(lambda: registered(self.work, self.agents), 60, what=f"{self.agents} agents registered")
        wait_for(lambda: "cluster up" in process.output(), 30, what="`up` to say the cluster is up")
        return process

    def record(self) -> ClusterRecord:
        record = ClusterRecord.load(self.work)
        assert record is not None, f"no cluster.json in {self.work}"
        return record

    def all_gone(self) -> bool:
        return not any(p.alive() for p in self.record().components) and \
            not any(port_open(port, host) for port, host in self.ports)


def down(work: Path) -> subprocess.CompletedProcess:
    return subprocess.run(dockyard("down", "--work-dir", str(work)), capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_second_up_on_taken_ports_starts_nothing_and_names_what_answers(tmp_path: Path) -> None:
    first = Up(tmp_path, "first", 2, "--resources", RESOURCES)
    running = first.start()
    try:
        before = master_of(first.work).get_json("/master/state")
        second = Up(tmp_path, "second", 2, "--resources", RESOURCES)
        second.argv = [*second.argv[:-4], "--master-port", str(first.master_port),
                       "--agent-port", str(first.agent_port)]
        refused = subprocess.run(second.argv, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0, refused.stdout
        said = refused.stdout + refused.stderr
        assert f"port {first.master_port} (for the master) is taken: a Mesos master answers there" in said, said
        assert f"port {first.agent_port} (for agent1) is taken: a Mesos agent answers there" in said, said
        assert not (second.work / "client.json").exists() and not (second.work / "cluster.json").exists()
        after = master_of(first.work).get_json("/master/state")
        assert [(a["id"], a["hostname"]) for a in after["slaves"]] == \
            [(a["id"], a["hostname"]) for a in before["slaves"]], "no agent joined or re-registered"
        assert running.alive() and all(p.alive() for p in first.record().components)

        # Something that is not dockyard on a port is named as such.
        with socket.create_server(("127.0.0.1", 0)) as squatter:
            port = squatter.getsockname()[1]
            third = Up(tmp_path, "third", 1, "--resources", RESOURCES)
            third.argv[third.argv.index("--master-port") + 1] = str(port)
            refused = subprocess.run(third.argv, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        assert f"port {port} (for the master) is taken: another program answers there (not HTTP)" in refused.stderr
        again = subprocess.run(first.argv, capture_output=True, text=True, timeout=60)
        assert again.returncode != 0 and "a cluster started by `dockyard up` runs from" in again.stderr
    finally:
        running.stop(timeout=30)


def test_down_stops_a_cluster_from_another_terminal_and_agents_share_the_machine(tmp_path: Path) -> None:
    cluster = Up(tmp_path, "shared", 2)
    running = cluster.start()
    try:
        share = machine.share(cluster.work, 2)
        agents = master_of(cluster.work).get_json("/master/state")["slaves"]
        for agent in agents:
            assert agent["resources"]["cpus"] == pytest.approx(float(share["cpus"]))
            assert agent["resources"]["mem"] == pytest.approx(float(share["mem"]))
            assert agent["resources"]["disk"] == pytest.approx(float(share["disk"]))
        assert sorted(a["resources"]["ports"] for a in agents) == ["[31000-31883]", "[31884-32767]"]
        whole = machine.detected(cluster.work)
        assert sum(a["resources"]["cpus"] for a in agents) <= float(whole["cpus"])
        assert sum(a["resources"]["mem"] for a in agents) <= float(whole["mem"])

        stopped = down(cluster.work)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped the cluster in" in stopped.stdout and "agent2" in stopped.stdout
        assert running.popen.wait(30) == 0, running.output()[-2000:]
        assert "stopping the cluster" in running.output()
        assert cluster.all_gone()
        again = down(cluster.work)
        assert again.returncode == 0 and "was not running" in again.stdout
    finally:
        running.stop(timeout=30)


def test_components_die_with_up_killed_by_sigkill(tmp_path: Path) -> None:
    cluster = Up(tmp_path, "killed", 2, "--resources", RESOURCES)
    running = cluster.start()
    try:
        record = cluster.record()
        assert record.up.pid == running.pid and len(record.components) == 3
        running.kill9()
        wait_for(cluster.all_gone, timeout=30, what="the master and agents gone with `up`")
        after = down(cluster.work)
        assert after.returncode == 0 and "was not running" in after.stdout, after.stdout + after.stderr
    finally:
        running.stop(timeout=30)


def test_up_stops_the_cluster_when_nobody_reads_its_output(tmp_path: Path) -> None:
    """`dockyard up | tee log`, and tee goes away: the cluster does not stay behind."""
    cluster = Up(tmp_path, "piped", 1, "--resources", RESOURCES)
    up = subprocess.Popen(cluster.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if b"cluster up" in line:
                break
        assert cluster.record().components, "up recorded what it started"
        up.stdout.close()  # the reader is gone
        assert up.wait(30) != 0
        wait_for(cluster.all_gone, timeout=30, what="the components gone with `up`")
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)


def test_down_stops_what_outlived_a_killed_up_and_nothing_else(tmp_path: Path) -> None:
    """A component that survived its `up` (one that ignores SIGTERM, even) is stopped; a process
    that merely has a recorded pid (another start time) is left alone."""
    work = tmp_path / "orphans"
    work.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    survivor = subprocess.Popen(["sleep", "600"], start_new_session=True)
    stubborn = subprocess.Popen(["bash", "-c", "trap '' TERM; while :; do sleep 0.2; done"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        ClusterRecord(work, Recorded("up", gone.pid, 1), [],
                      [Recorded.of("master", survivor.pid), Recorded.of("scheduler", stubborn.pid),
                       Recorded("agent1", stranger.pid, 1)]).save()
        stopped = down(work)
        assert stopped.returncode == 0, stopped.stderr
        assert "master" in stopped.stdout and "scheduler" in stopped.stdout and "agent1" not in stopped.stdout
        assert "scheduler did not stop within" in stopped.stdout
        assert survivor.wait(5) == -signal.SIGTERM
        assert stubborn.wait(5) == -signal.SIGKILL
        assert stranger.poll() is None, "a pid with another start time is not the recorded process"
    finally:
        for process in (survivor, stubborn, stranger):
            if process.poll() is None:
                process.kill()
                process.wait(5)
