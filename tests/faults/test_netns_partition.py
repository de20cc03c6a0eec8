"""A real network cut: the agent in its own network namespace loses its link.

The master sees the agent stop answering pings, reports its task TASK_UNREACHABLE
(dockyard is PARTITION_AWARE); the task itself runs on. When the link comes back
the agent re-registers, the task is RUNNING again, and the job run finishes with
its work done exactly once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.faults.harness import NetnsNetwork, NetnsNode
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def node() -> Iterator[NetnsNode]:
    network = NetnsNetwork().create()
    try:
        yield network.add_node()
    finally:
        network.remove()


def test_a_run_on_an_agent_cut_off_by_its_netns_is_done_once(node: NetnsNode, tmp_path: Path,
                                                             task_dir: Path) -> None:
    """The master on the bridge's host address and the agent in its namespace serve a network, not
    loopback: the cluster runs with TLS on (certificates naming those addresses) besides its
    authentication, and the scheduler speaks HTTPS to the master."""
    cluster = Cluster(tmp_path / "cluster", agents=1, ip=node.host_ip,
                      agent_net=lambda index: (node.node_ip, node.argv([])),
                      resources="cpus:2;mem:1024;disk:1024;ports:[31000-31099]",
                      master_args=["--agent-ping-interval", "1", "--agent-ping-timeout", "5"])
    assert cluster.tls and cluster.master_url.startswith("https://")
    with cluster.start(), SchedulerProcess.start(cluster, tmp_path / "sched") as scheduler:
        run_cut_and_heal(node, scheduler, task_dir)


def run_cut_and_heal(node: NetnsNode, scheduler: SchedulerProcess, shared: Path) -> None:
    """`shared`: a directory the job's task (nobody) may write."""
    marks, go = shared / "marks", shared / "go"
    cmd = f"echo done >> {marks}; while [ ! -e {go} ]; do sleep 0.2; done"
    job = {"id": "cut", "run": {"cmd": cmd, "cpus": 0.1, "mem": 32}}
    assert scheduler.status("POST", "/v1/jobs", job)[0] == 201
    status, run = scheduler.status("POST", "/v1/jobs/cut/runs")
    assert status == 201, run

    def task(state: str) -> dict | None:
        tasks = scheduler.call("GET", f"/v1/jobs/cut/runs/{run['id']}").get("tasks") or []
        return tasks[-1] if tasks and tasks[-1]["status"] == state else None
    first = wait_for(lambda: task("TASK_RUNNING"), timeout=30, what="the run's task running")
    node.cut()
    try:
        assert wait_for(lambda: task("TASK_UNREACHABLE"), timeout=30, what="task unreachable")["id"] == first["id"]
        assert marks.read_text().splitlines() == ["done"]  # cut off, not stopped: it runs on
    finally:
        node.heal()
    assert wait_for(lambda: task("TASK_RUNNING"), timeout=30, what="task running again")["id"] == first["id"]
    go.touch()

    def finished() -> dict | None:
        current = scheduler.call("GET", f"/v1/jobs/cut/runs/{run['id']}")
        return current if current.get("status") == "SUCCESS" else None
    done = wait_for(finished, timeout=30, what="the run succeeded")
    assert [t["id"] for t in done["tasks"]] == [first["id"]]
    assert marks.read_text().splitlines() == ["done"]
