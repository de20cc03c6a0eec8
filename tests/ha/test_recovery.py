"""Master failover and agent recovery with real processes: running tasks are kept."""
from __future__ import annotations

import os
import signal
import time

from tests.faults.harness import Deployment, our_processes
from tests.ha.test_scheduler_ha import start_long_run
from tests.support.procs import wait_for


def task_pids(d: Deployment, task_id: str) -> set[int]:
    return {pid for pid, env in our_processes(d.workdir) if env.get("MESOS_TASK_ID") == task_id}


def settled_task_pids(d: Deployment, task_id: str) -> set[int]:
    """The task's processes once its shell has started its command (`sh -c "sleep 600"` is two)."""
    def settled() -> set[int] | None:
        first = task_pids(d, task_id)
        time.sleep(0.3)
        return first if len(first) >= 2 and task_pids(d, task_id) == first else None
    return wait_for(settled, timeout=30, what=f"{task_id}'s shell and its command")


def agent_of(d: Deployment, hostname: str) -> int:
    return int(hostname.removeprefix("agent"))


def framework_in(state: dict, framework_id: str) -> dict | None:
    return next((f for f in state["frameworks"] if f["id"] == framework_id), None)


def test_master_failover_agents_reregister_and_the_framework_follows(deploy) -> None:
    d = deploy(masters=2, agents=2)
    framework_id = d.wait_leader().health()["frameworkId"]
    run = start_long_run(d, "survivor")
    task_id = run["tasks"][0]["id"]
    old = d.wait_leading_master()

    d.kill_master(old)
    new = d.wait_leading_master(other_than=old, timeout=60)

    def adopted() -> dict | None:
        state = d.cluster.state(new)
        framework = framework_in(state, framework_id)
        agents = [a for a in state["slaves"] if a.get("active", True)]
        if framework is None or len(agents) != 2 or not framework.get("active", True):
            return None
        return framework
    framework = wait_for(adopted, timeout=60, what="agents re-registered and the framework back")
    assert [(t["id"], t["state"]) for t in framework["tasks"]] == [(task_id, "TASK_RUNNING")]
    # The scheduler followed the new master (zk:// detection) with the same framework id,
    # and the run never noticed.
    _, after = d.api("GET", f"/v1/jobs/survivor/runs/{run['id']}")
    assert after["status"] == "ACTIVE" and after["tasks"][0]["status"] == "TASK_RUNNING"
    assert [t["id"] for t in after["tasks"]] == [task_id]
    second = start_long_run(d, "after-master-failover")
    framework = framework_in(d.cluster.state(new), framework_id)
    assert sorted(t["id"] for t in framework["tasks"]) == sorted([task_id, second["tasks"][0]["id"]])


def test_agent_kill9_and_restart_recovers_its_running_tasks(deploy) -> None:
    d = deploy(agents=1)
    run = start_long_run(d, "kept")
    task_id = run["tasks"][0]["id"]
    pids = settled_task_pids(d, task_id)
    executors_before = d.executor_pids()

    d.kill_agent(0)
    d.start_agent(0)

    def recovered() -> bool:
        state = d.agent_state(0)
        return any(t["id"] == task_id and t["state"] == "TASK_RUNNING"
                   for f in state["frameworks"] for e in f["executors"] for t in e["tasks"])
    wait_for(recovered, timeout=30, what="the restarted agent to report its task running")
    assert task_pids(d, task_id) == pids  # the same processes: re-attached, not relaunched
    assert set(d.executor_pids()) == set(executors_before)
    master_tasks = [t for f in d.master_state()["frameworks"] for t in f["tasks"]]
    assert [(t["id"], t["state"]) for t in master_tasks] == [(task_id, "TASK_RUNNING")]
    _, after = d.api("GET", f"/v1/jobs/kept/runs/{run['id']}")
    assert after["status"] == "ACTIVE" and [t["status"] for t in after["tasks"]] == ["TASK_RUNNING"]
    # And the agent still works: a new task launches on it.
    assert start_long_run(d, "after-agent-restart")["status"] == "ACTIVE"


def test_an_executor_that_died_with_its_agent_is_reported(deploy) -> None:
    d = deploy(agents=1)
    status, _ = d.api("POST", "/v1/jobs", {"id": "retried", "run": {
        "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
        "restart": {"policy": "ON_FAILURE", "backoffSeconds": 0.2}}})
    assert status == 201
    _, run = d.api("POST", "/v1/jobs/retried/runs")
    wait_for(lambda: d.api("GET", f"/v1/jobs/retried/runs/{run['id']}")[1]["tasks"][0]["status"]
             == "TASK_RUNNING", timeout=30, what="the first attempt running")
    executors = d.executor_pids()
    d.kill_agent(0)
    for pid in executors:  # the executor dies while its agent is down
        os.kill(pid, signal.SIGKILL)
    d.start_agent(0)

    def retried() -> dict | None:
        _, current = d.api("GET", f"/v1/jobs/retried/runs/{run['id']}")
        tasks = current["tasks"]
        return current if len(tasks) >= 2 and tasks[-1]["status"] == "TASK_RUNNING" else None
    current = wait_for(retried, timeout=60, what="the dead task reported and the run retried")
    first = current["tasks"][0]
    assert first["status"] in ("TASK_FAILED", "TASK_LOST", "TASK_GONE", "TASK_DROPPED")  # DROPPED: partition-aware
    assert current["status"] == "ACTIVE"
    running = [t for f in d.master_state()["frameworks"] for t in f["tasks"] if t["state"] == "TASK_RUNNING"]
    assert [t["id"] for t in running] == [current["tasks"][-1]["id"]]
    assert d.cluster.agent_api(0).call("GET", "/health")[0] == 200


def test_an_agent_gone_past_its_timeout_has_its_work_replaced(deploy) -> None:
    d = deploy(agents=2, agent_ping_interval=0.5, agent_ping_timeout=3.0)
    # Replaced as soon as it is unreachable (Marathon's default would wait 300 s first).
    status, payload = d.api("POST", "/v2/apps", {"id": "/replaced", "cmd": "sleep 600", "cpus": 0.1,
                                                 "mem": 32, "instances": 1,
                                                 "unreachableStrategy": {"inactiveAfterSeconds": 0,
                                                                         "expungeAfterSeconds": 0}})
    assert status == 201, payload

    def instance() -> dict | None:
        tasks = d.api("GET", "/v2/apps/replaced/tasks")[1]["tasks"]
        running = [t for t in tasks if t["state"] == "TASK_RUNNING"]
        return running[0] if len(running) == 1 else None
    first = wait_for(instance, timeout=30, what="the app's instance running")
    doomed = agent_of(d, first["host"])
    executors = [pid for pid, env in d.executor_pids().items()
                 if env["MESOS_DIRECTORY"].startswith(str(d.workdir / "cluster" / f"agent{doomed}"))]
    d.kill_agent(doomed)  # the whole host dies: its executors with it
    for pid in executors:
        os.kill(pid, signal.SIGKILL)

    def replaced() -> dict | None:
        current = instance()
        return current if current is not None and current["id"] != first["id"] else None
    second = wait_for(replaced, timeout=60, what="the instance replaced on the surviving agent")
    assert agent_of(d, second["host"]) != doomed
    lost = [t for f in d.master_state()["frameworks"]
            for t in f.get("completed_tasks", []) + f.get("unreachable_tasks", []) + f["tasks"]
            if t["id"] == first["id"]]
    assert lost and lost[0]["state"] in ("TASK_LOST", "TASK_UNREACHABLE", "TASK_GONE")


def test_an_update_the_agent_took_while_no_master_led_survives_its_kill9(deploy, task_dir) -> None:
    """As a Mesos agent checkpoints status updates and resends the unacknowledged ones after
    recovery: a task that finished while no master led (its TASK_FINISHED held by the agent)
    must not be forgotten when the agent is then killed and restarted. The soak saw this as
    run faults-batch/20261128190115tgqzt3 done twice: attempt 1 ended TASK_GONE."""
    d = deploy(masters=1, agents=1, schedulers=1)
    marks, go = task_dir / "marks", task_dir / "go"
    cmd = f"while [ ! -e {go} ]; do sleep 0.1; done; echo $DOCKYARD_ATTEMPT >> {marks}"
    status, _ = d.api("POST", "/v1/jobs", {"id": "held", "run": {
        "cmd": cmd, "cpus": 0.1, "mem": 32, "restart": {"policy": "ON_FAILURE", "backoffSeconds": 0.2}}})
    assert status == 201
    _, run = d.api("POST", "/v1/jobs/held/runs")
    wait_for(lambda: d.api("GET", f"/v1/jobs/held/runs/{run['id']}")[1]["tasks"][0]["status"]
             == "TASK_RUNNING", timeout=30, what="the first attempt running")
    task_id = run["tasks"][0]["id"]
    d.cluster.stop_master(0)  # no master leads from now on
    go.touch()

    def held() -> bool:  # the agent has the task's end, and no master to hand it to
        return any(t["id"] == task_id and t["state"] == "TASK_FINISHED"
                   for f in d.agent_state(0)["frameworks"] for e in f["executors"] + f["completed_executors"]
                   for t in e["completed_tasks"])
    wait_for(held, timeout=30, what="the agent to hold the task's TASK_FINISHED")
    d.kill_agent(0)
    d.cluster.start_agent(0, wait=False)  # no master to register with yet
    d.cluster.start_master(0)

    def finished() -> dict | None:
        current = d.api("GET", f"/v1/jobs/held/runs/{run['id']}")[1]
        return current if current.get("status") in ("SUCCESS", "FAILED") else None
    current = wait_for(finished, timeout=90, what="the run finished")
    assert [t["status"] for t in current["tasks"]] == ["TASK_FINISHED"], current["tasks"]
    assert current["status"] == "SUCCESS" and marks.read_text().split() == ["1"]
