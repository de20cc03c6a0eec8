"""Batch jobs end to end: real master, agents, executors and scheduler processes."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.procs import Process, dockyard, free_port, port_open, wait_for
from tests.support.scheduler import SchedulerProcess


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def small(cmd: str, **run: object) -> dict:
    return {"cmd": cmd, "cpus": 0.1, "mem": 32, **run}


def test_fails_twice_then_succeeds_under_on_failure(scheduler, task_dir: Path) -> None:
    counter = task_dir / "attempts"
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


def test_array_job_instances_see_their_index(scheduler, task_dir: Path) -> None:
    out = task_dir / "indexes"
    scheduler.call("POST", "/v1/jobs", {"id": "array", "run": small(
        f"echo $DOCKYARD_INSTANCE_INDEX/$DOCKYARD_INSTANCES >> {out}", instances=4)})
    run = scheduler.call("POST", "/v1/jobs/array/runs")
    final = scheduler.wait_finished("array", run["id"])
    assert final["status"] == "SUCCESS" and len(final["tasks"]) == 4
    assert sorted(out.read_text().split()) == ["0/4", "1/4", "2/4", "3/4"]


def test_diamond_of_dependencies_runs_in_order(scheduler, task_dir: Path) -> None:
    log = task_dir / "order"
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


def test_replace_kills_the_active_scheduled_run_and_starts_one_new(scheduler) -> None:
    offset, boundary = _next_minute_offset(lead=1.5)
    scheduler.set_clock_offset(offset)
    try:
        scheduler.call("POST", "/v1/jobs", {"id": "replacer", "run": small("sleep 120"), "schedules": [
            {"id": "every-minute", "cron": "* * * * *", "concurrencyPolicy": "REPLACE"}]})
        [first] = wait_for(lambda: scheduler.call("GET", "/v1/jobs/replacer/runs"), timeout=10,
                           what="the first scheduled run")
        wait_for(lambda: scheduler.run("replacer", first["id"])["status"] == "ACTIVE", timeout=20,
                 what="the first run's task running")
        # a minute later the next fire finds the first run still active: REPLACE ends it
        scheduler.set_clock_offset(offset + 60)
        [second] = wait_for(lambda: [r for r in scheduler.call("GET", "/v1/jobs/replacer/runs")
                                     if r["id"] != first["id"]], timeout=10, what="the replacing run")
        assert second["trigger"] == "schedule:every-minute"
        assert epoch(second["createdAt"]) >= boundary + 60
        old = scheduler.run("replacer", first["id"])
        assert old["status"] == "FAILED" and "REPLACE" in old["reason"], old
        wait_for(lambda: scheduler.run("replacer", first["id"])["tasks"][0]["status"] == "TASK_KILLED",
                 timeout=15, what="the replaced run's task killed")
        assert [r["id"] for r in scheduler.call("GET", "/v1/jobs/replacer/runs")] == [second["id"]]
        wait_for(lambda: scheduler.run("replacer", second["id"])["status"] == "ACTIVE", timeout=20,
                 what="the new run's task running")
        history = scheduler.call("GET", "/v1/jobs/replacer?embed=history")["history"]
        assert history["failureCount"] == 1 and history["successCount"] == 0
        assert [r["id"] for r in history["failedFinishedRuns"]] == [first["id"]]
        stats = scheduler.call("GET", "/v1/jobs/replacer/schedules/every-minute")["stats"]
        assert stats["fired"] == 2 and stats.get("skipped", 0) == 0
        assert epoch(stats["lastFiredAt"]) == boundary + 60
    finally:
        scheduler.call("DELETE", "/v1/jobs/replacer?stopCurrentJobRuns=true")
        scheduler.set_clock_offset(0)


def test_unplaceable_run_fails_after_max_launch_delay_saying_why(scheduler) -> None:
    scheduler.call("POST", "/v1/jobs", {"id": "too-big", "run": small("true", mem=64000, maxLaunchDelay=2)})
    run = scheduler.call("POST", "/v1/jobs/too-big/runs")
    final = scheduler.wait_finished("too-big", run["id"], timeout=15)
    assert final["status"] == "FAILED", final
    assert "maxLaunchDelay (2s)" in final["reason"] and "mem" in final["reason"].lower(), final["reason"]
    assert 2 <= epoch(final["completedAt"]) - epoch(final["createdAt"]) < 4
    [task] = final["tasks"]
    assert "agentId" not in task and "startedAt" not in task, task  # never placed, never started
    history = scheduler.call("GET", "/v1/jobs/too-big?embed=historySummary")["historySummary"]
    assert history["failureCount"] == 1


@pytest.fixture
def file_server(tmp_path: Path):
    """A real `python -m http.server` on loopback serving `tmp_path/served`."""
    served = tmp_path / "served"
    served.mkdir()
    port = free_port()
    server = Process([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                      "--directory", str(served)], tmp_path / "http.log")
    try:
        wait_for(lambda: port_open(port), timeout=10, what="the artifact server")
        yield served, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_artifacts_are_fetched_into_the_sandbox_before_the_task_starts(cluster, scheduler, file_server,
                                                                       tmp_path: Path, task_dir: Path) -> None:
    served, base = file_server
    (served / "tool.sh").write_text("#!/bin/sh\necho tool-ran\n")
    payload = tmp_path / "payload"
    (payload / "data").mkdir(parents=True)
    (payload / "data" / "hello.txt").write_text("hello from tar\n")
    with tarfile.open(served / "data.tar.gz", "w:gz") as tar:
        tar.add(payload / "data", arcname="data")
    with zipfile.ZipFile(task_dir / "bundle.zip", "w") as zipped:  # a file:// URI: read as the task's user
        zipped.writestr("zipped/inside.txt", "hello from zip\n")
    (served / "big.bin").write_bytes(b"x" * 100_000)  # more than the agents' 64KB cache budget
    out = task_dir / "seen"
    scheduler.call("POST", "/v1/jobs", {"id": "fetching", "run": small(
        f"./tool.sh > {out}; cat data/hello.txt zipped/inside.txt >> {out}; ls >> {out}", artifacts=[
            {"uri": f"{base}/tool.sh", "executable": True},
            {"uri": f"{base}/data.tar.gz", "cache": True},
            {"uri": f"{base}/big.bin", "cache": True},
            {"uri": (task_dir / "bundle.zip").as_uri()}])})
    run = scheduler.call("POST", "/v1/jobs/fetching/runs")
    final = scheduler.wait_finished("fetching", run["id"])
    assert final["status"] == "SUCCESS", final
    lines = out.read_text().split("\n")
    assert lines[:3] == ["tool-ran", "hello from tar", "hello from zip"]
    assert {"tool.sh", "data.tar.gz", "big.bin", "bundle.zip", "data", "zipped"} <= set(lines[3:])  # archives kept
    assert len(list(cluster.workdir.glob("agent*/fetcher-cache/*-data.tar.gz"))) == 1  # cache: true only
    assert not list(cluster.workdir.glob("agent*/fetcher-cache/*big.bin*"))  # over the budget: not kept
    # a URI that cannot be fetched fails the run before the command starts, and says which
    scheduler.call("POST", "/v1/jobs", {"id": "fetch-missing", "run": small(
        f"touch {task_dir / 'started'}", artifacts=[{"uri": f"{base}/nope.tar.gz"}])})
    missing = scheduler.call("POST", "/v1/jobs/fetch-missing/runs")
    failed = scheduler.wait_finished("fetch-missing", missing["id"])
    assert failed["status"] == "FAILED" and "nope.tar.gz" in failed["reason"], failed
    assert "404" in failed["tasks"][0]["message"] and not (task_dir / "started").exists()


def test_job_run_wait_streams_output_and_exits_with_task_code(scheduler, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("id: cli-job\nrun:\n  cmd: echo to-stdout; echo to-stderr >&2; exit 3\n"
                    "  cpus: 0.1\n  mem: 32\n")
    done = subprocess.run(dockyard("job", "run", str(spec), "--wait", "--config", str(scheduler.client_file)),
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
    code, _, garbled = scheduler.api.call("POST", "/v1/jobs", b"{not json")
    assert code == 400 and json.loads(garbled)["message"] == "Invalid JSON"
    scheduler.call("POST", "/v1/jobs", {"id": "dup", "run": small("true")})
    with pytest.raises(urllib.error.HTTPError) as duplicate:
        scheduler.call("POST", "/v1/jobs", {"id": "dup", "run": small("true")})
    assert duplicate.value.code == 409
    spec = scheduler.call("GET", "/openapi.json")
    assert "/v1/jobs/{job_id}/runs" in spec["paths"] and "JobSpec" in spec["components"]["schemas"]


def test_plain_command_tasks_work_too_and_logs_are_readable(cluster, tmp_path: Path) -> None:
    """`--command-tasks`: no warm executor, the agent synthesises one per task."""
    with SchedulerProcess.start(cluster, tmp_path, "--name", "dockyard-plain",
                                "--command-tasks") as plain:
        config = ("--config", str(plain.client_file))
        spec = tmp_path / "job.json"
        spec.write_text(json.dumps({"id": "plain", "run": small("echo plain-output-$DOCKYARD_INSTANCE_INDEX")}))
        started = subprocess.run(dockyard("job", "run", str(spec), "--json", *config),
                                 capture_output=True, text=True, timeout=30)
        run_id = json.loads(started.stdout)["id"]
        wait_for(lambda: b'"SUCCESS"' in subprocess.run(
            dockyard("job", "runs", "plain", "--json", *config), capture_output=True, timeout=30).stdout,
            timeout=30, what="the plain run to succeed")
        logs = subprocess.run(dockyard("job", "logs", run_id, *config), capture_output=True, text=True,
                              timeout=30)
        assert "plain-output-0" in logs.stdout, logs.stderr


def test_run_survives_a_scheduler_kill_and_finishes_once(cluster, tmp_path: Path, task_dir: Path) -> None:
    """kill -9 the scheduler mid-run: the restarted one fails over, reconciles, finishes the run once."""
    name = ("--name", "dockyard-restart")
    marker = task_dir / "ran"
    with SchedulerProcess.start(cluster, tmp_path, *name, log_name="first.log") as first:
        first.call("POST", "/v1/jobs", {"id": "survivor", "run": small(f"echo x >> {marker}; sleep 3")})
        run_id = first.call("POST", "/v1/jobs/survivor/runs")["id"]
        wait_for(lambda: first.call("GET", f"/v1/jobs/survivor/runs/{run_id}")["status"] == "ACTIVE",
                 timeout=20, what="the run active")
        first.process.kill9()
    # the same data dir, a fresh port: the scheduler finds its framework id and runs in its store
    with SchedulerProcess.start(cluster, tmp_path, *name, log_name="second.log") as second:
        wait_for(lambda: second.call("GET", f"/v1/jobs/survivor/runs/{run_id}")["status"] == "SUCCESS",
                 timeout=30, what="the run to finish after the restart")
        history = second.call("GET", "/v1/jobs/survivor?embed=history")["history"]
        assert history["successCount"] == 1 and history["failureCount"] == 0
        assert marker.read_text().split() == ["x"], "the task ran more than once"
