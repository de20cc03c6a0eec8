"""Batch jobs end to end: real master, agents, executors and scheduler processes."""
from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.procs import dockyard, wait_for


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def small(cmd: str, **run: object) -> dict:
    return {"cmd": cmd, "cpus": 0.1, "mem": 32, **run}


def test_fails_twice_then_succeeds_under_on_failure(scheduler, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    cmd = (f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
           f"echo attempt $n; [ $n -ge 3 ] || exit 4")
    scheduler.call("POST", "/v1/jobs", {"id": "flaky", "run": small(
        cmd, restart={"policy": "ON_FAILURE", "backoffSeconds": 0.2})})
    run = scheduler.call("POST", "/v1/jobs/flaky/runs")
    final = scheduler.wait_finished("flaky", run["id"])
    assert final["status"] == "SUCCESS"
    assert [(t["attempt"], t["status"], t.get("exitCode")) for t in final["tasks"]] == [
        (1, "TASK_FAILED", 4), (2, "TASK_FAILED", 4), (3, "TASK_FINISHED", 0)]
    assert counter.read_text().strip() == "3"
    history = scheduler.call("GET", "/v1/jobs/flaky?embed=history")["history"]
    assert history["successCount"] == 1 and history["failureCount"] == 0
    assert [r["id"] for r in history["successfulFinishedRuns"]] == [run["id"]]


def test_active_deadline_kills_the_run(scheduler) -> None:
    scheduler.call("POST", "/v1/jobs", {"id": "sleepy", "run": small(
        "sleep 60", restart={"policy": "ON_FAILURE", "activeDeadlineSeconds": 2})})
    started = time.time()
    run = scheduler.call("POST", "/v1/jobs/sleepy/runs")
    final = scheduler.wait_finished("sleepy", run["id"])
    assert final["status"] == "FAILED" and "activeDeadlineSeconds" in final["reason"]
    assert 2 <= epoch(final["completedAt"]) - epoch(final["createdAt"]) < 4
    wait_for(lambda: scheduler.run("sleepy", run["id"])["tasks"][0]["status"] == "TASK_KILLED",
             timeout=15, what="the task killed")
    assert time.time() - started < 20


def test_array_job_instances_see_their_index(scheduler, tmp_path: Path) -> None:
    out = tmp_path / "indexes"
    scheduler.call("POST", "/v1/jobs", {"id": "array", "run": small(
        f"echo $DOCKYARD_INSTANCE_INDEX/$DOCKYARD_INSTANCES >> {out}", instances=4)})
    run = scheduler.call("POST", "/v1/jobs/array/runs")
    final = scheduler.wait_finished("array", run["id"])
    assert final["status"] == "SUCCESS" and len(final["tasks"]) == 4
    assert sorted(out.read_text().split()) == ["0/4", "1/4", "2/4", "3/4"]


def test_diamond_of_dependencies_runs_in_order(scheduler, tmp_path: Path) -> None:
    log = tmp_path / "order"
    for job_id, parents in (("dia-a", []), ("dia-b", ["dia-a"]), ("dia-c", ["dia-a"]),
                            ("dia-d", ["dia-b", "dia-c"])):
        scheduler.call("POST", "/v1/jobs", {"id": job_id, "run": small(f"echo {job_id} >> {log}"),
                                            "dependencies": [{"id": p} for p in parents]})
    with pytest.raises(urllib.error.HTTPError) as refused:
        scheduler.call("PUT", "/v1/jobs/dia-a", {"id": "dia-a", "run": small("true"),
                                                 "dependencies": [{"id": "dia-d"}]})
    assert refused.value.code == 422
    body = json.loads(refused.value.read())
    assert body["message"] == "Object is not valid" and body["details"][0]["path"] == "/dependencies"
    scheduler.call("POST", "/v1/jobs/dia-a/runs")
    wait_for(lambda: scheduler.call("GET", "/v1/jobs/dia-d?embed=historySummary")["historySummary"]
             ["successCount"] == 1, timeout=30, what="dia-d to succeed")
    order = log.read_text().split()
    assert order[0] == "dia-a" and sorted(order[1:3]) == ["dia-b", "dia-c"] and order[3:] == ["dia-d"]


def test_run_larger_than_any_agent_is_reported_unplaceable(scheduler) -> None:
    scheduler.call("POST", "/v1/jobs", {"id": "huge", "run": small("true", mem=64000)})
    run = scheduler.call("POST", "/v1/jobs/huge/runs")
    waiting = wait_for(lambda: scheduler.run("huge", run["id"]).get("waiting"), timeout=15,
                       what="a placement explanation")
    assert "mem" in waiting.lower(), waiting
    assert scheduler.run("huge", run["id"])["status"] == "INITIAL"
    stopped = scheduler.call("POST", f"/v1/jobs/huge/runs/{run['id']}/actions/stop")
    assert stopped["status"] == "FAILED"


def _next_minute_offset(lead: float) -> tuple[float, float]:
    """A clock offset that puts the scheduler `lead` seconds before a minute boundary."""
    now = time.time()
    target = math.floor(now / 60) * 60 + 3600  # an hour ahead, on a minute
    return target - lead - now, target


def test_schedule_fires_on_time_and_forbid_skips_overlap(scheduler) -> None:
    offset, boundary = _next_minute_offset(lead=1.5)
    scheduler.set_clock_offset(offset)
    scheduler.call("POST", "/v1/jobs", {"id": "cron", "run": small("sleep 120"), "schedules": [
        {"id": "every-minute", "cron": "* * * * *", "concurrencyPolicy": "FORBID"}]})
    [schedule] = scheduler.call("GET", "/v1/jobs/cron/schedules")
    assert epoch(schedule["nextRunAt"]) == boundary
    runs = wait_for(lambda: scheduler.call("GET", "/v1/jobs/cron/runs"), timeout=10, what="the scheduled run")
    assert len(runs) == 1 and runs[0]["trigger"] == "schedule:every-minute"
    assert boundary <= epoch(runs[0]["createdAt"]) < boundary + 1.5
    # jump a minute: the next fire finds the first run still active and skips it
    scheduler.set_clock_offset(offset + 60)
    stats = wait_for(lambda: scheduler.call("GET", "/v1/jobs/cron/schedules/every-minute").get("stats", {})
                     .get("skipped"), timeout=10, what="the overlapping fire skipped")
    assert stats == 1
    assert [r["id"] for r in scheduler.call("GET", "/v1/jobs/cron/runs")] == [runs[0]["id"]]
    scheduler.call("DELETE", "/v1/jobs/cron?stopCurrentJobRuns=true")
    scheduler.set_clock_offset(0)


def test_job_run_wait_streams_output_and_exits_with_task_code(scheduler, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("id: cli-job\nrun:\n  cmd: echo to-stdout; echo to-stderr >&2; exit 3\n"
                    "  cpus: 0.1\n  mem: 32\n")
    done = subprocess.run(dockyard("job", "run", str(spec), "--wait", "--url", scheduler.url),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "to-stdout" in done.stdout
    assert "to-stderr" in done.stderr and "TASK_FAILED" in done.stderr


def test_invalid_specs_answer_marathon_errors(scheduler) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        scheduler.call("POST", "/v1/jobs", {"id": "bad", "run": {"cmd": "true", "cpus": 0}})
    body = json.loads(caught.value.read())
    assert caught.value.code == 422 and body["details"][0]["path"] == "/run/cpus"
    with pytest.raises(urllib.error.HTTPError) as missing:
        scheduler.call("GET", "/v1/jobs/nope")
    assert missing.value.code == 404
    request = urllib.request.Request(scheduler.url + "/v1/jobs", data=b"{not json", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as garbled:
        urllib.request.urlopen(request, timeout=10)
    assert garbled.value.code == 400 and json.loads(garbled.value.read())["message"] == "Invalid JSON"
    scheduler.call("POST", "/v1/jobs", {"id": "dup", "run": small("true")})
    with pytest.raises(urllib.error.HTTPError) as duplicate:
        scheduler.call("POST", "/v1/jobs", {"id": "dup", "run": small("true")})
    assert duplicate.value.code == 409
    spec = scheduler.call("GET", "/openapi.json")
    assert "/v1/jobs/{job_id}/runs" in spec["paths"] and "JobSpec" in spec["components"]["schemas"]


def test_plain_command_tasks_work_too_and_logs_are_readable(cluster, tmp_path: Path) -> None:
    """`--command-tasks`: no warm executor, the agent synthesises one per task."""
    from tests.support.procs import Process, free_port, http_ok

    port = free_port()
    process = Process(dockyard("scheduler", "--master", cluster.master_address, "--port", str(port),
                               "--data-dir", str(tmp_path / "data"), "--name", "dockyard-plain",
                               "--command-tasks"), tmp_path / "scheduler.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{url}/health"), timeout=30, what="second scheduler subscribed")
        spec = tmp_path / "job.json"
        spec.write_text(json.dumps({"id": "plain", "run": small("echo plain-output-$DOCKYARD_INSTANCE_INDEX")}))
        started = subprocess.run(dockyard("job", "run", str(spec), "--json", "--url", url),
                                 capture_output=True, text=True, timeout=30)
        run_id = json.loads(started.stdout)["id"]
        wait_for(lambda: b'"SUCCESS"' in subprocess.run(
            dockyard("job", "runs", "plain", "--json", "--url", url), capture_output=True, timeout=30).stdout,
            timeout=30, what="the plain run to succeed")
        logs = subprocess.run(dockyard("job", "logs", run_id, "--url", url), capture_output=True, text=True,
                              timeout=30)
        assert "plain-output-0" in logs.stdout, logs.stderr
    finally:
        process.stop()


def test_run_survives_a_scheduler_kill_and_finishes_once(cluster, tmp_path: Path) -> None:
    """kill -9 the scheduler mid-run: the restarted one fails over, reconciles, finishes the run once."""
    from tests.support.procs import Process, free_port, http_ok

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = dockyard("scheduler", "--master", cluster.master_address, "--port", str(port),
                    "--data-dir", str(tmp_path / "data"), "--name", "dockyard-restart")
    marker = tmp_path / "ran"

    def call(method: str, path: str, body: object = None) -> dict:
        request = urllib.request.Request(url + path, method=method, data=None if body is None else
                                         json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    first = Process(argv, tmp_path / "first.log")
    try:
        wait_for(lambda: http_ok(f"{url}/health"), timeout=30, what="scheduler subscribed")
        call("POST", "/v1/jobs", {"id": "survivor", "run": small(f"echo x >> {marker}; sleep 3")})
        run_id = call("POST", "/v1/jobs/survivor/runs")["id"]
        wait_for(lambda: call("GET", f"/v1/jobs/survivor/runs/{run_id}")["status"] == "ACTIVE", timeout=20,
                 what="the run active")
        first.kill9()
    finally:
        first.stop()
    second = Process(argv, tmp_path / "second.log")
    try:
        wait_for(lambda: http_ok(f"{url}/health"), timeout=30, what="the restarted scheduler subscribed")
        wait_for(lambda: call("GET", f"/v1/jobs/survivor/runs/{run_id}")["status"] == "SUCCESS", timeout=30,
                 what="the run to finish after the restart")
        history = call("GET", "/v1/jobs/survivor?embed=history")["history"]
        assert history["successCount"] == 1 and history["failureCount"] == 0
        assert marker.read_text().split() == ["x"], "the task ran more than once"
    finally:
        second.stop()
