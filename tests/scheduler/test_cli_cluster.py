"""The client commands against a real embedded cluster (2 agents) and scheduler: what a new
user sees while a deployment or a run goes wrong, on a terminal (through a pseudo-terminal)
and in a pipe.

Each test names its apps and jobs under its own prefix; an autouse fixture removes what a
test left, so a failing test does not hold resources for the next.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.procs import dockyard, wait_for
from tests.support.scheduler import SchedulerProcess

SMALL = {"cpus": 0.1, "mem": 32}


class Cli:
    """`dockyard ...` as the scheduler's operator (its client.json), in a pipe or on a terminal."""

    def __init__(self, scheduler: SchedulerProcess, workdir: Path) -> None:
        self.scheduler = scheduler
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_URL", "DOCKYARD_CONFIG")}

    def argv(self, *args: str) -> list[str]:
        return dockyard(*args, "--config", str(self.scheduler.client_file))

    def write(self, name: str, spec: dict[str, Any]) -> str:
        path = self.workdir / name
        path.write_text(json.dumps(spec))
        return str(path)

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env,
                              cwd=self.workdir)

    def ok(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, done.stderr + done.stdout
        return done

    def tty(self, *args: str, timeout: float = 90) -> tuple[int, str]:
        """Run on a pseudo-terminal (100 columns); the exit status and everything it wrote."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        process = subprocess.Popen(self.argv(*args), stdin=slave, stdout=slave, stderr=slave, cwd=self.workdir,
                                   env={**self.env, "TERM": "xterm-256color", "COLUMNS": "100"})
        os.close(slave)
        output = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # the child closed the terminal
                        break
                    if not chunk:
                        break
                    output += chunk
                elif process.poll() is not None:
                    break
            else:
                raise AssertionError(f"dockyard {' '.join(args)} still running after {timeout}s:\n{output!r}")
        finally:
            if process.poll() is None:
                process.kill()
            os.close(master)
        return process.wait(10), output.decode(errors="replace")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    workdir = tmp_path_factory.mktemp("cli-cluster")
    with Cluster(workdir / "cluster", agents=2, resources="cpus:2;mem:1024;disk:10000").start() as cluster:
        with SchedulerProcess.start(cluster, workdir / "scheduler") as process:
            yield process


@pytest.fixture
def cli(scheduler: SchedulerProcess, tmp_path: Path) -> Iterator[Cli]:
    yield Cli(scheduler, tmp_path)
    for app in scheduler.call("GET", "/v2/apps")["apps"]:
        scheduler.status("DELETE", f"/v2/apps/{app['id'].strip('/')}?force=true")
    for job in scheduler.call("GET", "/v1/jobs"):
        scheduler.status("DELETE", f"/v1/jobs/{job['id']}?stopCurrentJobRuns=true")
    wait_for(lambda: not scheduler.call("GET", "/v2/tasks")["tasks"], timeout=60, what="every app's tasks ended")


def deployments(scheduler: SchedulerProcess, app_id: str) -> list[str]:
    return [d["id"] for d in scheduler.call("GET", "/v2/deployments") if app_id in d["affectedApps"]]


# -- a failing deployment says so at once, and is never reported deployed -----------------------

def test_a_crash_looping_app_is_not_deployed_and_the_command_stops_with_its_reason(cli: Cli) -> None:
    spec = cli.write("crash.json", {"id": "/t1/crash", "cmd": "exit 3", "instances": 2, **SMALL})
    started = time.monotonic()
    done = cli.run("app", "deploy", spec)
    took = time.monotonic() - started
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert not any(line.endswith(("- deployed", "deployment finished")) for line in lines), lines
    assert "the same failure 3 times in a row: TASK_FAILED" in done.stderr
    assert "Command exited with status 3" in done.stderr
    assert "dockyard app delete /t1/crash" in done.stderr  # how to stop what goes on
    assert took < 45, f"{took:.0f}s: the reason came only at a time-out"
    failure = next(i for i, line in enumerate(lines) if "Command exited with status 3" in line)
    assert failure < len(lines) - 3, "the first failure was shown only at the end"
    # in a pipe: a line per change, never one per poll, and no countdown
    progress = [line for line in lines if line.startswith("/t1/crash:")]
    assert all(a != b for a, b in zip(progress, progress[1:])), progress
    assert not any(re.search(r"backoff \d", line) for line in lines), lines
    assert "\x1b[" not in done.stderr
    assert cli.scheduler.call("GET", "/v2/apps/t1/crash")["app"]["instances"] == 2  # left to the scheduler


def test_on_a_terminal_progress_is_one_line_redrawn_with_the_last_failure_under_it(cli: Cli) -> None:
    spec = cli.write("crash.json", {"id": "/t2/crash", "cmd": "sleep 0.3; exit 4", **SMALL})
    code, output = cli.tty("app", "deploy", spec)
    assert code == 1, output
    assert "\x1b[1A" in output and "\x1b[2K" in output, f"not redrawn in place: {output!r}"
    assert re.search(r"last failure: TASK_FAILED on agent\d: Command exited with status 4", output), output
    screen = output.split("Error:")[0]
    assert screen.count("\x1b[2K") >= 2  # redrawn while it went on, not printed line after line
    assert "the same failure 3 times in a row" in output


def test_a_failing_health_check_is_shown_as_it_happens(cli: Cli) -> None:
    spec = cli.write("sick.json", {"id": "/t3/sick", "cmd": "sleep 600", **SMALL, "healthChecks": [
        {"protocol": "COMMAND", "command": {"value": "echo not-ready; exit 1"}, "gracePeriodSeconds": 0,
         "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2, "delaySeconds": 0}]})
    done = cli.run("app", "deploy", spec, "--max-failures", "2")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    checks = [i for i, line in enumerate(lines) if line.strip().startswith("health check failed on agent")]
    killed = [i for i, line in enumerate(lines) if "unhealthy" in line and "TASK_KILLED" in line]
    assert checks and killed and checks[0] < killed[0], lines
    assert "the same failure 2 times in a row: TASK_KILLED" in done.stderr
    assert "- deployed" not in done.stderr


# -- what cannot be placed says so with the numbers, and does not linger silently ------------------

def test_an_app_no_agent_can_take_prints_the_dry_run_numbers_and_gives_up_after_the_grace(cli: Cli) -> None:
    spec = cli.write("big.json", {"id": "/t4/big", "cmd": "sleep 600", "cpus": 0.1, "mem": 100000, "instances": 2})
    started = time.monotonic()
    done = cli.run("app", "deploy", spec, "--unplaceable-grace", "2")
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30
    assert re.search(r"agent\d: InsufficientMemory - mem: want 100000, free \d+ of 1024", done.stderr), done.stderr
    assert "/t4/big cannot be placed" in done.stderr and "no agent will change by itself" in done.stderr
    assert "dockyard app delete /t4/big --force" in done.stderr
    queue = cli.scheduler.call("GET", "/v2/queue")["queue"]
    assert [q["count"] for q in queue if q["app"]["id"] == "/t4/big"] == [2]  # still queued, as Marathon keeps it


def test_job_run_wait_gives_up_on_a_run_no_agent_can_take_and_says_how_to_stop_it(cli: Cli) -> None:
    spec = cli.write("huge.json", {"id": "t5-huge", "run": {"cmd": "true", "cpus": 0.1, "mem": 100000}})
    started = time.monotonic()
    done = cli.run("job", "run", spec, "--wait", "--unplaceable-grace", "2")
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30, "it waited for maxLaunchDelay (an hour)"
    assert re.search(r"agent\d: InsufficientMemory - mem: want 100000, free \d+ of 1024", done.stderr), done.stderr
    [run] = cli.scheduler.call("GET", "/v1/jobs/t5-huge/runs")
    assert run["status"] in ("INITIAL", "STARTING"), run  # still queued, as Metronome keeps it
    assert f"dockyard job stop t5-huge {run['id']}" in done.stderr
    cli.ok("job", "stop", "t5-huge", run["id"])


# -- scaling past what fits: the preview, waiting instances, and a 409 in the CLI's words -----------

def test_scale_past_the_agents_previews_waits_visibly_and_a_409_names_force_and_the_deployment(cli: Cli) -> None:
    spec = cli.write("web.json", {"id": "/t6/web", "cmd": "sleep 600", "instances": 2, **SMALL,
                                  "constraints": [["hostname", "UNIQUE"]]})
    cli.ok("app", "deploy", spec)
    done = cli.run("app", "scale", "/t6/web", "3", "--wait", "--timeout", "4")
    assert done.returncode == 1, done.stderr
    assert "warning: 1 of 3 instances cannot be placed now (dry run)" in done.stderr
    assert re.search(r"agent\d: UnfulfilledConstraint - hostname:UNIQUE", done.stderr), done.stderr
    assert re.search(r"2/3 running, 1 waiting \(offers refused: UnfulfilledConstraint \d/\d\)", done.stderr), \
        done.stderr
    assert "not deployed after 4s" in done.stderr

    shown = cli.ok("app", "show", "/t6/web").stdout
    assert re.search(r"\s+waiting\s+-\s+-\s+", shown), shown  # STATE waiting, no health, no host
    assert "waiting: 1 not placed; offers refused: UnfulfilledConstraint" in shown
    listed = cli.ok("task", "list").stdout
    rows = re.findall(r"^\S+\s+/t6/web\s+(\S+)", listed, re.M)
    assert sorted(rows) == ["TASK_RUNNING", "TASK_RUNNING", "waiting"], listed
    assert "/t6/web: 1 waiting to be placed (offers refused: UnfulfilledConstraint" in listed
    tasks = json.loads(cli.ok("task", "list", "--json").stdout)
    assert sorted(t["state"] for t in tasks) == ["TASK_RUNNING", "TASK_RUNNING", "TASK_STAGING"]  # Marathon's own
    assert [t["host"] for t in tasks if t["state"] == "TASK_STAGING"] == [""]

    [held] = deployments(cli.scheduler, "/t6/web")
    refused = cli.run("app", "delete", "/t6/web")
    assert refused.returncode == 1
    assert f"locked by deployment {held}" in refused.stderr and "--force" in refused.stderr
    assert "?force=true" not in refused.stderr and "<DEPLOYMENT_ID>" not in refused.stderr
    assert f"dockyard app deployment cancel {held}" in refused.stderr
    assert held in cli.ok("app", "deployment", "list").stdout
    gone = cli.ok("app", "delete", "/t6/web", "--force", "--wait")
    assert "/t6/web: deleted" in gone.stderr
    assert not [t for t in cli.scheduler.call("GET", "/v2/tasks")["tasks"] if t["appId"] == "/t6/web"]


def test_scale_restart_and_rollback_follow_their_deployment_with_wait(cli: Cli) -> None:
    first = cli.write("v1.json", {"id": "/t7/app", "cmd": "sleep 600", **SMALL})
    cli.ok("app", "deploy", first)
    cli.ok("app", "deploy", cli.write("v2.json", {"id": "/t7/app", "cmd": "sleep 601", **SMALL}))
    scaled = cli.ok("app", "scale", "/t7/app", "2", "--wait")
    assert "dry run: 2 instances fit" in scaled.stderr and "/t7/app: 2/2 running - deployed" in scaled.stderr
    restarted = cli.ok("app", "restart", "/t7/app", "--wait")
    assert "/t7/app: 2/2 running - deployed" in restarted.stderr
    versions = cli.scheduler.call("GET", "/v2/apps/t7/app/versions")["versions"]
    back = cli.ok("app", "rollback", "/t7/app", "--version", versions[-1], "--wait")
    assert "- deployed" in back.stderr
    assert cli.scheduler.call("GET", "/v2/apps/t7/app")["app"]["cmd"] == "sleep 600"
    assert not deployments(cli.scheduler, "/t7/app")


# -- misspelt fields, and jobs stored without running ---------------------------------------------

def test_unknown_fields_are_printed_by_deploy_its_dry_run_and_the_job_commands(cli: Cli) -> None:
    app = cli.write("typo.json", {"id": "/t8/typo", "cmd": "sleep 600", "instnaces": 3, "memory": 16, **SMALL})
    for args in (["app", "deploy", app, "--dry-run"], ["app", "deploy", app]):
        done = cli.ok(*args)
        assert "warning: unknown field 'instnaces' (did you mean 'instances'?) - ignored" in done.stderr, args
        assert "warning: unknown field 'memory' (did you mean 'mem'?)" in done.stderr, args
    assert cli.scheduler.call("GET", "/v2/apps/t8/typo")["app"]["instances"] == 1  # accepted, typo ignored
    job = cli.write("typo-job.json", {"id": "t8-job", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "memroy": 64}})
    for args in (["job", "create", job], ["job", "update", job], ["job", "run", job]):
        done = cli.ok(*args)
        assert "warning: unknown field 'run.memroy' (did you mean 'run.mem'?)" in done.stderr, (args, done.stderr)


def test_job_create_and_update_store_a_job_without_running_it(cli: Cli) -> None:
    spec = {"id": "t9-nightly", "run": {"cmd": "echo one", **SMALL},
            "schedules": [{"id": "nightly", "cron": "0 3 * * *"}]}
    path = cli.write("nightly.json", spec)
    created = cli.ok("job", "create", path)
    assert "job t9-nightly created; schedules: nightly 0 3 * * *" in created.stdout
    again = cli.run("job", "create", path)
    assert again.returncode == 1 and f"`dockyard job update {path}` replaces it" in again.stderr
    spec["run"]["cmd"] = "echo two"
    cli.write("nightly.json", spec)
    assert "job t9-nightly updated" in cli.ok("job", "update", path).stdout
    assert cli.scheduler.call("GET", "/v1/jobs/t9-nightly")["run"]["cmd"] == "echo two"
    assert cli.scheduler.call("GET", "/v1/jobs/t9-nightly/runs?all=true") == []  # nothing ran
    cli.write("nightly.json", {**spec, "run": {"cmd": "sleep 60", **SMALL}})
    started = json.loads(cli.ok("job", "run", path, "--json").stdout)
    held = cli.run("job", "delete", "t9-nightly")
    assert held.returncode == 1 and "`dockyard job delete t9-nightly --force` stops them" in held.stderr
    assert "stopCurrentJobRuns" not in held.stderr
    cli.ok("job", "delete", "t9-nightly", "--force")
    assert cli.scheduler.status("GET", f"/v1/runs/{started['id']}")[0] == 404
    other = cli.write("other.json", {"id": "t9-other", "run": {"cmd": "true", **SMALL}})
    missing = cli.run("job", "update", other)
    assert missing.returncode == 1 and f"no job t9-other: `dockyard job create {other}` creates it" in missing.stderr
