"""A real network cut (issue 6): the agent in its own network namespace loses its link.

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

from tests.faults.harness import NetnsNetwork, NetnsNode, call
from tests.support.procs import Process, dockyard, free_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def node() -> Iterator[NetnsNode]:
    network = NetnsNetwork().create()
    try:
        yield network.add_node()
    finally:
        network.remove()


@pytest.fixture
def procs() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()


def test_a_run_on_an_agent_cut_off_by_its_netns_is_done_once(node: NetnsNode, procs: list[Process],
                                                             tmp_path: Path) -> None:
    master_port, agent_port, sched_port = free_port(), free_port(), free_port()
    master = f"{node.host_ip}:{master_port}"
    procs.append(Process(dockyard("master", "--ip", node.host_ip, "--port", str(master_port),
                                  "--work-dir", str(tmp_path / "master"), "--agent-ping-interval", "1",
                                  "--agent-ping-timeout", "5"), tmp_path / "master.log"))
    wait_for(lambda: call(f"http://{master}/health")[0] == 200, timeout=30, what="master up")
    procs.append(Process(node.argv(dockyard("agent", "--master", master, "--ip", node.node_ip,
                                            "--port", str(agent_port), "--work-dir", str(tmp_path / "agent"),
                                            "--resources", "cpus:2;mem:1024;disk:1024;ports:[31000-31099]",
                                            "--hostname", "netagent")), tmp_path / "agent.log"))

    def agents() -> list[str]:
        return [a["hostname"] for a in call(f"http://{master}/master/state")[1].get("slaves", [])
                if a.get("active")]
    wait_for(lambda: agents() == ["netagent"], timeout=30, what="the namespaced agent registered")
    api = f"http://127.0.0.1:{sched_port}"
    procs.append(Process(dockyard("scheduler", "--master", master, "--ip", "127.0.0.1", "--port", str(sched_port),
                                  "--data-dir", str(tmp_path / "sched")), tmp_path / "scheduler.log"))
    wait_for(lambda: call(f"{api}/ping")[0] == 200, timeout=30, what="scheduler up")

    marks, go = tmp_path / "marks", tmp_path / "go"
    cmd = f"echo done >> {marks}; while [ ! -e {go} ]; do sleep 0.2; done"
    job = {"id": "cut", "run": {"cmd": cmd, "cpus": 0.1, "mem": 32}}
    assert call(f"{api}/v1/jobs", "POST", job)[0] == 201
    status, run, _ = call(f"{api}/v1/jobs/cut/runs", "POST")
    assert status == 201, run

    def task(state: str) -> dict | None:
        tasks = call(f"{api}/v1/jobs/cut/runs/{run['id']}")[1].get("tasks") or []
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
        current = call(f"{api}/v1/jobs/cut/runs/{run['id']}")[1]
        return current if current.get("status") == "SUCCESS" else None
    done = wait_for(finished, timeout=30, what="the run succeeded")
    assert [t["id"] for t in done["tasks"]] == [first["id"]]
    assert marks.read_text().splitlines() == ["done"]
