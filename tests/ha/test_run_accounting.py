"""Run accounting under HA faults: every attempt of a run is counted once.

Unit level, as tests/scheduler/test_core_jobs.py: the real core, store and jobs
manager, a driver that records, the test's clock, and the Mesos statuses written
out in the order a fault soak delivered them. The first test replays the statuses
of run faults-batch/20261128190115tgqzt3 (test_soak_with_partitions), whose work was
done twice: read back from that soak's ZooKeeper, attempt 1 went TASK_RUNNING ->
TASK_GONE ("Reconciliation: Task is unknown to the agent"); it had in fact finished,
but its agent was killed before any master took its TASK_FINISHED, and lost it.
"""
from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path

import pytest

from framework.store import open_store
from scheduler.core import Core, CoreConfig
from scheduler.jobs.manager import JobManager
from scheduler.jobs.specs import parse_job
from scheduler.tasks import State
from tests.scheduler.test_core_jobs import Clock, launched, offer
from tests.scheduler.test_core_jobs import RecordingDriver as StrictDriver

_uuids = itertools.count(1)


class RecordingDriver(StrictDriver):
    """Also ACKs an update that came after the task's end, with the end still stored (Mesos
    needs the ACK; the state machine ignores the update)."""

    def acknowledgeStatusUpdate(self, status: dict) -> None:
        record = self.core.get(status["task_id"]["value"])
        if record is not None and record.terminal and record.state.value != status["state"]:
            raw, _ = self.core.store.get(f"/tasks/{record.task_id}")
            assert json.loads(raw)["state"] == record.state.value
            self.calls.append(("acknowledgeStatusUpdate", (status,)))
            return
        self.__getattr__("acknowledgeStatusUpdate")(status)


def update(task_id: str, state: str, message: str = "", reason: str | None = None,
           agent: str = "S1", uuid: bool = True) -> dict:
    """A status as the master sends it; reconciliation answers and master-made ones carry no uuid."""
    out: dict = {"task_id": {"value": task_id}, "state": state, "message": message,
                 "agent_id": {"value": agent}}
    if reason:
        out["reason"] = reason
    if uuid:
        out["uuid"] = base64.b64encode(next(_uuids).to_bytes(16, "big")).decode()
    return out


def subscribed_core(store, clock: Clock) -> tuple[Core, RecordingDriver]:
    core = Core(store, CoreConfig(), clock=clock)
    core.load()
    driver = RecordingDriver(core)
    core.attach(driver)
    return core, driver


@pytest.fixture
def world(tmp_path: Path):
    clock = Clock()
    store = open_store(tmp_path)
    core, driver = subscribed_core(store, clock)
    core.handle_subscribed({"framework_id": "F1"})
    jobs = JobManager(store, core, clock=clock, unreachable_seconds=5)
    return clock, core, driver, jobs


def batch(jobs: JobManager, policy: str = "ON_FAILURE", backoff: float = 0.2, instances: int = 1) -> None:
    jobs.create_job(parse_job({"id": "batch", "run": {
        "cmd": "sleep 8", "cpus": 0.1, "mem": 32, "instances": instances,
        "restart": {"policy": policy, "backoffSeconds": backoff}}}))


def launch_next(core: Core, driver: RecordingDriver, n: int, agent: str = "S1") -> str:
    core.handle_offers([offer(n, agent)])
    return launched(driver)[-1]["task_id"]["value"]


def running(core: Core, task_id: str, agent: str = "S1") -> None:
    core.handle_status(update(task_id, "TASK_STARTING", agent=agent))
    core.handle_status(update(task_id, "TASK_RUNNING", agent=agent))


def test_the_soak_incident_retries_per_policy_and_never_counts_an_attempt_twice(world) -> None:
    clock, core, driver, jobs = world
    batch(jobs)
    run = jobs.start_run("batch")
    first = launch_next(core, driver, 1, "S0")
    running(core, first, "S0")
    # Its TASK_FINISHED died with its agent; a new master reconciles: unknown to the (new) agent.
    clock.now += 26
    core.handle_status(update(first, "TASK_GONE", "Reconciliation: Task is unknown to the agent",
                              "REASON_RECONCILIATION", agent="S0", uuid=False))
    assert run.retry_at, "TASK_GONE is a failure: ON_FAILURE retries it"
    clock.now += 0.3
    jobs.tick()
    second = launch_next(core, driver, 2, "S1")
    running(core, second, "S1")
    clock.now += 8
    core.handle_status(update(second, "TASK_FAILED", "Executor terminated", "REASON_EXECUTOR_TERMINATED"))
    clock.now += 0.5
    jobs.tick()
    third = launch_next(core, driver, 3, "S0")
    running(core, third, "S0")
    # The update attempt 1's agent should have kept, arriving at last, and resends of the rest.
    core.handle_status(update(first, "TASK_FINISHED", "Command exited with status 0", agent="S0"))
    core.handle_status(update(second, "TASK_FAILED", "Executor terminated", "REASON_EXECUTOR_TERMINATED"))
    assert run.status == "ACTIVE" and len(run.tasks) == 3 and not run.retry_at
    clock.now += 8
    core.handle_status(update(third, "TASK_FINISHED", "Command exited with status 0", agent="S0"))
    core.handle_status(update(third, "TASK_DROPPED", "Task is unknown to the agent", "REASON_RECONCILIATION",
                              agent="S0"))
    jobs.tick(clock.now + 60)
    assert run.status == "SUCCESS" and [t.attempt for t in run.tasks] == [1, 2, 3]
    assert [t.counted_as for t in run.tasks] == ["TASK_GONE", "TASK_FAILED", "TASK_FINISHED"]
    counts = jobs.job_state("batch")
    assert (counts.success_count, counts.failure_count) == (1, 0)


@pytest.mark.parametrize("late", ["TASK_DROPPED", "TASK_LOST", "TASK_KILLED", "TASK_GONE", "TASK_FAILED"])
def test_a_late_terminal_status_of_a_finished_task_is_ignored(world, late: str) -> None:
    clock, core, driver, jobs = world
    batch(jobs)
    run = jobs.start_run("batch")
    task_id = launch_next(core, driver, 1)
    running(core, task_id)
    core.handle_status(update(task_id, "TASK_FINISHED", "Command exited with status 0"))
    acks = len(driver.named("acknowledgeStatusUpdate"))
    core.handle_status(update(task_id, late, "late", "REASON_RECONCILIATION"))  # e.g. after a failover
    core.handle_status(update(task_id, late, "late", uuid=False))
    jobs.tick(clock.now + 60)
    assert len(driver.named("acknowledgeStatusUpdate")) == acks + 1, "acknowledged, then ignored"
    assert core.get(task_id).state == State.FINISHED
    assert run.status == "SUCCESS" and len(run.tasks) == 1 and run.tasks[0].status == "TASK_FINISHED"
    assert jobs.job_state("batch").failure_count == 0


def test_a_failed_task_is_retried_once_whatever_else_is_said_of_it(world) -> None:
    clock, core, driver, jobs = world
    batch(jobs, backoff=2)
    run = jobs.start_run("batch")
    task_id = launch_next(core, driver, 1)
    running(core, task_id)
    core.handle_status(update(task_id, "TASK_FAILED", "Command exited with status 1"))
    retry_at = dict(run.retry_at)
    core.handle_status(update(task_id, "TASK_LOST", "late"))
    core.handle_status(update(task_id, "TASK_KILLED", "late", uuid=False))
    assert run.retry_at == retry_at and run.status != "FAILED"
    clock.now += 2
    jobs.tick()
    jobs.tick(clock.now + 60)
    assert [t.attempt for t in run.tasks] == [1, 2]


def test_the_run_counts_a_task_once_even_when_told_twice(world) -> None:
    """Below the core's table (which already refuses terminal -> terminal): a second terminal
    record of the same task handed to the run, as a replay after a failover would."""
    clock, core, driver, jobs = world
    batch(jobs, instances=2)
    run = jobs.start_run("batch")
    core.handle_offers([offer(1)])
    zero, one = (t["task_id"]["value"] for t in launched(driver))
    for task_id in (zero, one):
        running(core, task_id)
    core.handle_status(update(zero, "TASK_FINISHED", "Command exited with status 0"))
    assert run.succeeded == [0] and run.tasks[0].counted_as == "TASK_FINISHED"
    replay = core.get(zero)
    replay.state = State.FAILED
    jobs.on_task_status(replay, {"state": "TASK_FAILED"})
    assert not run.retry_at and run.succeeded == [0] and run.status != "FAILED"
    core.handle_status(update(one, "TASK_FINISHED", "Command exited with status 0"))
    assert run.status == "SUCCESS" and len(run.tasks) == 2


def give_up_first(clock: Clock, core: Core, driver: RecordingDriver, jobs: JobManager, policy: str = "ON_FAILURE",
                  backoff: float = 0.2):
    batch(jobs, policy=policy, backoff=backoff)
    run = jobs.start_run("batch")
    first = launch_next(core, driver, 1, "S0")
    running(core, first, "S0")
    core.handle_status(update(first, "TASK_UNREACHABLE", "Agent agent0 removed: health check timed out",
                              "REASON_AGENT_REMOVED", agent="S0", uuid=False))
    clock.now += 4
    jobs.tick()
    assert not run.retry_at, "waited for within DOCKYARD_JOB_UNREACHABLE_SECONDS"
    clock.now += 2
    jobs.tick()
    assert driver.named("killTask")[-1][0] == {"value": first}
    assert run.tasks[0].counted_as == "TASK_LOST"
    return run, first


def test_a_task_finished_after_we_gave_it_up_is_recorded_and_not_retried_again(world) -> None:
    clock, core, driver, jobs = world
    run, first = give_up_first(clock, core, driver, jobs)
    clock.now += 0.2
    jobs.tick()
    second = launch_next(core, driver, 2, "S1")
    running(core, second, "S1")
    # The partition heals: attempt 1 had finished meanwhile (and our kill came too late).
    core.handle_status(update(first, "TASK_FINISHED", "Command exited with status 0", agent="S0"))
    core.handle_status(update(first, "TASK_KILLED", "late kill", agent="S0"))
    for _ in range(3):
        clock.now += 10
        jobs.tick()
    assert run.status == "ACTIVE" and [t.attempt for t in run.tasks] == [1, 2] and not run.retry_at
    assert run.tasks[0].status == "TASK_FINISHED" and run.tasks[0].exit_code == 0
    assert "counted it as TASK_LOST" in run.tasks[0].message
    core.handle_status(update(second, "TASK_FINISHED", "Command exited with status 0"))
    assert run.status == "SUCCESS" and [t.attempt for t in run.tasks] == [1, 2]
    assert jobs.job_state("batch").success_count == 1


def test_a_task_given_up_under_never_fails_the_run_once_and_its_late_end_is_recorded(world) -> None:
    clock, core, driver, jobs = world
    run, first = give_up_first(clock, core, driver, jobs, policy="NEVER")
    assert run.status == "FAILED" and "TASK_LOST" in run.reason
    core.handle_status(update(first, "TASK_RUNNING", "Agent reregistered", "REASON_AGENT_REREGISTERED",
                              agent="S0", uuid=False))
    core.handle_status(update(first, "TASK_KILLED", "killed", agent="S0"))
    kept = jobs.get_run("batch", run.id)
    assert kept.status == "FAILED" and kept.tasks[0].status == "TASK_KILLED" and len(kept.tasks) == 1
    counts = jobs.job_state("batch")
    assert (counts.success_count, counts.failure_count) == (0, 1)


def test_a_give_up_survives_a_scheduler_failover(world, tmp_path: Path) -> None:
    """A new leader neither counts the given-up task again (its TASK_KILLED must not fail an
    ON_FAILURE run) nor forgets the retry, and kills the task if it shows up running."""
    clock, core, driver, jobs = world
    run, first = give_up_first(clock, core, driver, jobs, backoff=30)
    # The leader dies before the retry is due; a new one takes over from the store.
    core2, driver2 = subscribed_core(core.store, clock)
    jobs2 = JobManager(core.store, core2, clock=clock, unreachable_seconds=5)
    jobs2.load()
    core2.handle_subscribed({"framework_id": "F1"})
    run2 = jobs2.get_run("batch", run.id)
    assert run2.tasks[0].counted_as == "TASK_LOST" and 0 in run2.retry_at
    core2.handle_status(update(first, "TASK_RUNNING", "Agent reregistered", "REASON_AGENT_REREGISTERED",
                               agent="S0", uuid=False))
    assert {"value": first} in [args[0] for args in driver2.named("killTask")]
    core2.handle_status(update(first, "TASK_KILLED", "killed", agent="S0"))
    assert run2.status != "FAILED" and run2.tasks[0].status == "TASK_KILLED"
    clock.now += 30
    jobs2.tick()
    second = launch_next(core2, driver2, 5, "S1")
    assert second.endswith(".0.2")
    running(core2, second, "S1")
    core2.handle_status(update(second, "TASK_FINISHED", "Command exited with status 0"))
    assert run2.status == "SUCCESS" and [t.attempt for t in run2.tasks] == [1, 2]
    counts = jobs2.job_state("batch")
    assert (counts.success_count, counts.failure_count) == (1, 0)
