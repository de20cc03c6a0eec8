"""Who a job's tasks run as: `run.user`, else the framework's `--mesos-user` (nobody by default)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("user, uid", [("daemon", 1), (None, 65534)], ids=["run.user", "framework user"])
def test_a_jobs_task_runs_as_its_run_user_else_the_frameworks(scheduler, user: str | None, uid: int) -> None:
    job_id = f"ids-{user or 'default'}"
    run_spec = {"cmd": "id -u; id -g", "cpus": 0.1, "mem": 32, **({"user": user} if user else {})}
    scheduler.call("POST", "/v1/jobs", {"id": job_id, "run": run_spec})
    run = scheduler.call("POST", f"/v1/jobs/{job_id}/runs")
    final = scheduler.wait_finished(job_id, run["id"])
    assert final["status"] == "SUCCESS", final
    sandbox = Path(scheduler.wait_until(lambda: scheduler.run(job_id, run["id"]), lambda r: r["tasks"][0]["sandbox"],
                                        "the task's sandbox")["tasks"][0]["sandbox"])
    assert (sandbox / "stdout").read_text().split() == [str(uid), str(uid)]
    assert sandbox.stat().st_uid == uid
