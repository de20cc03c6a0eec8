"""`/v1` answers in Metronome's own shapes (api/v1/models: JobSpecFormat, JobRunWrites,
JobRunTaskFormat, the queue writer), so a client that parses strictly reads them; dockyard's
extensions show only where a job uses them, or with `Dockyard-Detail: true`.

Before, every job carried `run.instances` and `run.restart.backoffSeconds`, and every run
`trigger`, `instances`, and tasks with `index`, `attempt`, `createdAt`, `exitCode`..."""
from __future__ import annotations

import json
import re

from tests.support.procs import wait_for

METRONOME_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")  # yyyy-MM-dd'T'HH:mm:ss.SSSZ
RUN_KEYS = {"id", "jobId", "status", "createdAt", "completedAt", "tasks"}


def plain(scheduler, method: str, path: str, body: dict | None = None) -> tuple[int, dict | list]:
    """A call without dockyard's detail, as a Metronome client makes it."""
    status, _, raw = scheduler.api.call(method, path, body)
    return status, json.loads(raw) if raw.strip() else None


def test_jobs_and_runs_are_metronomes_shapes(scheduler) -> None:
    status, job = plain(scheduler, "POST", "/v1/jobs", {"id": "shaped", "run": {"cmd": "exit 3", "cpus": 0.1,
                                                                                "mem": 32}})
    assert status == 201
    assert set(job) == {"id", "labels", "run", "schedules"}, job
    assert "instances" not in job["run"] and job["run"]["restart"] == {"policy": "NEVER"}

    status, started = plain(scheduler, "POST", "/v1/jobs/shaped/runs")
    assert status == 201 and set(started) == RUN_KEYS and started["completedAt"] is None, started
    assert METRONOME_TIME.match(started["createdAt"])

    def finished() -> dict | None:
        run = plain(scheduler, "GET", f"/v1/jobs/shaped/runs/{started['id']}")[1]
        return run if run["status"] in ("SUCCESS", "FAILED") else None
    run = wait_for(finished, timeout=30, what="the run to end")
    assert set(run) == RUN_KEYS and run["status"] == "FAILED" and METRONOME_TIME.match(run["completedAt"])
    [task] = run["tasks"]
    assert set(task) == {"id", "startedAt", "completedAt", "status"} and task["status"] == "TASK_FAILED", task
    assert plain(scheduler, "GET", f"/v1/runs/{run['id']}")[1] == run
    assert all(set(r) == RUN_KEYS for r in plain(scheduler, "GET", "/v1/jobs/shaped/runs?all=true")[1])
    history = plain(scheduler, "GET", "/v1/jobs/shaped?embed=history")[1]["history"]
    assert [set(r) for r in history["failedFinishedRuns"]] == [{"id", "createdAt", "finishedAt"}]

    # dockyard's detail, as the CLI asks for it
    detailed = scheduler.call("GET", f"/v1/jobs/shaped/runs/{run['id']}")
    assert detailed["trigger"] == "api" and detailed["tasks"][0]["exitCode"] == 3 and detailed["reason"]
    scheduler.call("DELETE", "/v1/jobs/shaped")


def test_an_array_jobs_extensions_show_where_it_uses_them(scheduler) -> None:
    spec = {"id": "arrayed", "run": {"cmd": "sleep 60", "cpus": 0.1, "mem": 32, "instances": 2,
                                     "restart": {"policy": "ON_FAILURE", "backoffSeconds": 2}}}
    status, job = plain(scheduler, "POST", "/v1/jobs", spec)
    assert status == 201 and job["run"]["instances"] == 2 and job["run"]["restart"]["backoffSeconds"] == 2
    _, run = plain(scheduler, "POST", "/v1/jobs/arrayed/runs")
    assert set(run) == RUN_KEYS | {"instances"} and run["instances"] == 2
    assert sorted(t["index"] for t in run["tasks"]) == [0, 1]
    scheduler.call("DELETE", "/v1/jobs/arrayed?stopCurrentJobRuns=true")


def test_the_queue_lists_run_ids_per_job(scheduler) -> None:
    """Metronome's queue: `[{"jobId", "runs": [{"runId"}]}]`; the waiting tasks and why are
    dockyard's detail."""
    scheduler.call("POST", "/v1/jobs", {"id": "queued-only", "run": {"cmd": "true", "cpus": 0.1, "mem": 64000}})
    run = scheduler.call("POST", "/v1/jobs/queued-only/runs")
    queued = wait_for(lambda: [i for i in plain(scheduler, "GET", "/v1/queue")[1] if i["jobId"] == "queued-only"],
                      timeout=15, what="the run queued")
    assert queued == [{"jobId": "queued-only", "runs": [{"runId": run["id"]}]}]
    detailed = wait_for(lambda: [i for i in scheduler.call("GET", "/v1/queue") if i["jobId"] == "queued-only"
                                 and i["waiting"]], timeout=15, what="why it waits")
    assert detailed[0]["runId"] == run["id"] and len(detailed[0]["tasks"]) == 1
    scheduler.call("DELETE", "/v1/jobs/queued-only?stopCurrentJobRuns=true")
