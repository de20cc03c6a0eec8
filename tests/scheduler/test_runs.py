"""A job run as stored: what goes in comes back, and its tasks are found by id."""
from __future__ import annotations

import json

from scheduler.jobs.runs import JobRun, RunTask


def test_a_run_round_trips_through_json_and_finds_tasks_added_later() -> None:
    run = JobRun(id="r1", job_id="j", created_at=10.0, instances=3, deadline_at=99.0)
    run.tasks += [RunTask(id=f"j.{i}.1", index=i, attempt=1, created_at=10.0) for i in range(3)]
    run.tasks[1].status, run.tasks[1].exit_code, run.tasks[1].counted_as = "TASK_FAILED", 2, "TASK_FAILED"
    run.succeeded.append(0)
    run.retry_at[1] = 12.5
    assert run.task("j.1.1") is run.tasks[1] and run.task("j.1.2") is None
    run.tasks.append(RunTask(id="j.1.2", index=1, attempt=2, created_at=12.5))  # the retry
    assert run.task("j.1.2") is run.tasks[3]

    raw = run.to_json()
    stored = json.loads(raw)
    assert "_by_id" not in stored and stored["retry_at"] == {"1": 12.5}
    back = JobRun.from_json(raw)
    assert back == run and back.to_json() == raw
    assert back.task("j.1.1").exit_code == 2 and back.retry_at == {1: 12.5}
