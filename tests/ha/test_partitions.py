"""Partitions with real processes: an agent frozen past the master's ping timeout.

dockyard is PARTITION_AWARE, so the master reports the frozen agent's tasks as
TASK_UNREACHABLE; when the agent thaws and re-registers they come back RUNNING
(REASON_AGENT_REREGISTERED). A job run waits for its task instead of running
it twice; a service replaces an instance only after inactiveAfterSeconds and
kills the surplus once the old one is back.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

from tests.faults.harness import Deployment
from tests.ha.conftest import job
from tests.support.procs import wait_for

FAST_PINGS = {"agents": 2, "schedulers": 1, "agent_ping_interval": 1.0, "agent_ping_timeout": 5.0}


@pytest.fixture
def frozen() -> Iterator[list[int]]:
    """Pids this test SIGSTOPped: always thawed, even when the test fails."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def freeze_agent(d: Deployment, hostname: str, frozen: list[int]) -> int:
    index = int(hostname.removeprefix("agent"))
    pid = d.cluster.agents[index].pid
    os.kill(pid, signal.SIGSTOP)
    frozen.append(pid)
    return pid


def test_a_job_run_across_a_partition_is_done_exactly_once(deploy, frozen, task_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_JOB_UNREACHABLE_SECONDS", "300")  # longer than the partition
    d = deploy(**FAST_PINGS)
    marks, go = task_dir / "marks", task_dir / "go"
    cmd = f"echo done >> {marks}; while [ ! -e {go} ]; do sleep 0.2; done"
    assert d.api("POST", "/v1/jobs", job("once", cmd))[0] == 201
    status, run = d.api("POST", "/v1/jobs/once/runs")
    assert status == 201, run

    def task(state: str) -> dict | None:
        tasks = d.api("GET", f"/v1/jobs/once/runs/{run['id']}")[1].get("tasks") or []
        return tasks[-1] if tasks and tasks[-1]["status"] == state else None
    first = wait_for(lambda: task("TASK_RUNNING"), timeout=30, what="the run's task running")
    pid = freeze_agent(d, first["host"], frozen)
    unreachable = wait_for(lambda: task("TASK_UNREACHABLE"), timeout=30, what="the task unreachable")
    assert unreachable["id"] == first["id"]
    os.kill(pid, signal.SIGCONT)
    back = wait_for(lambda: task("TASK_RUNNING"), timeout=30, what="the task running again")
    assert back["id"] == first["id"]
    go.touch()
    done = wait_for(lambda: (r := d.api("GET", f"/v1/jobs/once/runs/{run['id']}")[1])["status"] == "SUCCESS" and r,
                    timeout=30, what="the run succeeded")
    assert [t["id"] for t in done["tasks"]] == [first["id"]]
    assert marks.read_text().splitlines() == ["done"]


def running(d: Deployment, app: str) -> list[dict]:
    tasks = d.api("GET", f"/v2/apps/{app}/tasks")[1]["tasks"]
    return [t for t in tasks if t["state"] == "TASK_RUNNING"]


def test_a_service_keeps_its_unreachable_instance_within_inactive_after(deploy, frozen) -> None:
    d = deploy(**FAST_PINGS)
    app = {"id": "/patient", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1,
           "unreachableStrategy": {"inactiveAfterSeconds": 600, "expungeAfterSeconds": 600}}
    assert d.api("POST", "/v2/apps", app)[0] == 201
    first = wait_for(lambda: (r := running(d, "patient")) and len(r) == 1 and r[0], timeout=30,
                     what="one instance running")
    pid = freeze_agent(d, first["host"], frozen)

    def states() -> list[str]:
        return [t["state"] for t in d.api("GET", "/v2/apps/patient/tasks")[1]["tasks"]]
    wait_for(lambda: "TASK_UNREACHABLE" in states(), timeout=30, what="the instance unreachable")
    os.kill(pid, signal.SIGCONT)
    back = wait_for(lambda: (r := running(d, "patient")) and r, timeout=30, what="the instance back")
    assert [t["id"] for t in back] == [first["id"]]
    ours = [t for f in d.master_state()["frameworks"] for t in f["tasks"] + f.get("completed_tasks", [])
            if t["id"].startswith("patient")]
    assert [t["id"] for t in ours] == [first["id"]], "a replacement was launched"


def test_a_service_replaces_an_unreachable_instance_and_kills_the_surplus(deploy, frozen) -> None:
    d = deploy(**FAST_PINGS)
    app = {"id": "/eager", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1,
           "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}}
    assert d.api("POST", "/v2/apps", app)[0] == 201
    first = wait_for(lambda: (r := running(d, "eager")) and len(r) == 1 and r[0], timeout=30,
                     what="one instance running")
    pid = freeze_agent(d, first["host"], frozen)
    second = wait_for(lambda: (r := running(d, "eager")) and r[0]["id"] != first["id"] and r[0],
                      timeout=30, what="a replacement on the other agent")
    assert second["host"] != first["host"]
    os.kill(pid, signal.SIGCONT)

    def settled() -> list[dict] | None:
        live = [t for f in d.master_state()["frameworks"] for t in f["tasks"]
                if t["id"].startswith("eager") and t["state"] in ("TASK_RUNNING", "TASK_STAGING",
                                                                    "TASK_STARTING", "TASK_UNREACHABLE")]
        return live if len(live) == 1 and live[0]["state"] == "TASK_RUNNING" else None
    survivors = wait_for(settled, timeout=30, what="one instance left after the old one returned")
    assert len(running(d, "eager")) == 1 and survivors[0]["id"] in {first["id"], second["id"]}


def test_a_run_retries_a_task_unreachable_too_long_and_kills_it_on_return(deploy, frozen,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The wait is bounded: past DOCKYARD_JOB_UNREACHABLE_SECONDS the task counts as lost, the
    run retries elsewhere (ON_FAILURE), and the old task is killed when its agent returns."""
    monkeypatch.setenv("DOCKYARD_JOB_UNREACHABLE_SECONDS", "1")
    d = deploy(**FAST_PINGS)
    assert d.api("POST", "/v1/jobs", job("bounded", "sleep 600", restart={"policy": "ON_FAILURE"}))[0] == 201
    status, run = d.api("POST", "/v1/jobs/bounded/runs")
    assert status == 201, run

    def tasks() -> list[dict]:
        return d.api("GET", f"/v1/jobs/bounded/runs/{run['id']}")[1].get("tasks") or []
    first = wait_for(lambda: (t := tasks()) and t[-1]["status"] == "TASK_RUNNING" and t[-1], timeout=30,
                     what="the run's task running")
    pid = freeze_agent(d, first["host"], frozen)
    second = wait_for(lambda: (t := tasks()) and t[-1]["id"] != first["id"] and t[-1]["status"] == "TASK_RUNNING"
                      and t[-1], timeout=40, what="the retry running")
    assert second["host"] != first["host"]
    os.kill(pid, signal.SIGCONT)

    def old_gone() -> bool:  # killed once back: neither live nor still waiting as unreachable
        frameworks = d.master_state()["frameworks"]
        live = [t["id"] for f in frameworks for t in f["tasks"]
                if t["state"] in ("TASK_RUNNING", "TASK_STAGING", "TASK_STARTING", "TASK_KILLING")]
        away = [t["id"] for f in frameworks for t in f.get("unreachable_tasks", [])]
        return live == [second["id"]] and first["id"] not in away
    wait_for(old_gone, timeout=30, what="the returned old task killed")
    # Its end is recorded in the run, and not counted a second time: the run goes on.
    old = wait_for(lambda: (t := tasks()) and t[0]["status"] == "TASK_KILLED" and t[0], timeout=30,
                   what="the old task's end recorded in the run")
    assert "counted it as TASK_LOST" in old["message"]
    assert d.api("GET", f"/v1/jobs/bounded/runs/{run['id']}")[1]["status"] == "ACTIVE"
    assert [t["id"] for t in tasks()] == [first["id"], second["id"]]
