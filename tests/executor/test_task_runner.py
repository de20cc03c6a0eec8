"""TaskRunner with the host launcher: real processes, every move observed."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from executor.host import HostLauncher
from executor.launcher import LaunchSpec
from executor.task_runner import MOVES, IllegalMove, TaskRunner, Verdict, grace_seconds
from framework.proctree import host_pid


class Updates:
    """Collects what a runner reports, like the executor driver would receive it."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, runner, state, message, reason, healthy) -> None:  # noqa: ANN001
        with self.lock:
            self.items.append((state, message, reason))

    @property
    def states(self) -> list[str]:
        return [state for state, _, _ in self.items]


def run(tmp_path: Path, command: dict, **kwargs) -> tuple[TaskRunner, Updates]:  # noqa: ANN003
    updates = Updates()
    spec = LaunchSpec(task_id="t1", command=command, env={"PATH": "/usr/bin:/bin"}, sandbox=tmp_path / "sandbox")
    runner = TaskRunner("t1", spec, HostLauncher(), updates, **kwargs).start()
    return runner, updates


def test_exit_status_is_reported_as_failed_with_mesos_message(tmp_path: Path) -> None:
    runner, updates = run(tmp_path, {"value": "echo out; echo err >&2; exit 3"})
    assert runner.join(10)
    assert updates.items == [("TASK_STARTING", None, None), ("TASK_RUNNING", None, None),
                             ("TASK_FAILED", "Command exited with status 3", None)]
    assert (tmp_path / "sandbox" / "stdout").read_text() == "out\n"
    assert (tmp_path / "sandbox" / "stderr").read_text() == "err\n"


def test_exit_zero_finishes(tmp_path: Path) -> None:
    runner, updates = run(tmp_path, {"value": "exit 0"})
    assert runner.join(10)
    assert updates.states == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]


def test_starting_is_not_reported_when_not_asked_for(tmp_path: Path) -> None:
    runner, updates = run(tmp_path, {"value": "exit 0"}, send_starting=False)
    assert runner.join(10)
    assert updates.states == ["TASK_RUNNING", "TASK_FINISHED"]


def test_argv_command_without_shell(tmp_path: Path) -> None:
    runner, updates = run(tmp_path, {"shell": False, "value": "/bin/echo", "arguments": ["echo", "a b", "$HOME"]})
    assert runner.join(10)
    assert updates.states[-1] == "TASK_FINISHED"
    assert (tmp_path / "sandbox" / "stdout").read_text() == "a b $HOME\n"


def test_launch_failure_fails_the_task_with_its_reason(tmp_path: Path) -> None:
    runner, updates = run(tmp_path, {"shell": False, "value": "/nonexistent/program"})
    assert runner.join(10)
    state, message, reason = updates.items[-1]
    assert (state, reason) == ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED")
    assert "nonexistent" in (message or "")


def test_kill_sends_sigterm_then_killing_state_when_capable(tmp_path: Path) -> None:
    runner, updates = run(tmp_path, {"value": "sleep 60"}, send_killing=True)
    assert runner.started.wait(10)
    runner.kill(5.0)
    assert runner.join(10)
    assert updates.states == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]
    assert updates.items[-1][1] == "Command terminated with signal SIGTERM"


def test_task_ignoring_sigterm_gets_sigkill_after_grace(tmp_path: Path) -> None:
    marker = tmp_path / "trapped"
    runner, updates = run(tmp_path, {"value": f"trap 'touch {marker}' TERM; while true; do sleep 0.05; done"})
    assert runner.started.wait(10)
    time.sleep(0.2)  # let the shell install its trap (the observable is the trap's marker below)
    begun = time.monotonic()
    runner.kill(1.0)
    assert runner.join(10)
    elapsed = time.monotonic() - begun
    assert marker.exists(), "the task saw SIGTERM first"
    assert 1.0 <= elapsed < 6.0
    assert updates.items[-1] == ("TASK_KILLED", "Command terminated with signal SIGKILL", None)
    assert "TASK_KILLING" not in updates.states  # framework without TASK_KILLING_STATE


def test_kill_reaches_children_of_the_task(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    runner, _ = run(tmp_path, {"value": f"sleep 60 & echo $! > {pidfile}; wait"})
    assert runner.started.wait(10)
    deadline = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # `$!` is the pid the task sees (inside its PID namespace with --isolation=namespaces/pid); host_pid maps it
    child = host_pid(int(pidfile.read_text()), runner.process.pid)
    assert child is not None, "the task's child is in the task's process tree"
    runner.kill(0.5)
    assert runner.join(10)

    def gone() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 3
    while not gone():
        assert time.monotonic() < deadline, "the task's child outlived the kill"
        time.sleep(0.02)


def test_status_checker_verdict_kills_and_decides_state(tmp_path: Path) -> None:
    class Unhealthy:
        stopped = False

        def status(self) -> Verdict | None:
            return Verdict("TASK_FAILED", "health check failed", healthy=False)

        def stop(self) -> None:
            self.stopped = True

    checker = Unhealthy()
    runner, updates = run(tmp_path, {"value": "sleep 60"}, checkers=[checker])
    assert runner.join(10)
    assert updates.items[-1] == ("TASK_FAILED", "health check failed", None)
    assert checker.stopped


def test_kill_before_launch_is_killed_during_launch(tmp_path: Path) -> None:
    updates = Updates()
    spec = LaunchSpec(task_id="t1", command={"value": "sleep 60"}, env={}, sandbox=tmp_path)
    runner = TaskRunner("t1", spec, HostLauncher(), updates)
    runner.kill()
    runner.start()
    assert runner.join(10)
    assert updates.items[-1] == ("TASK_KILLED", "Task killed before it was launched",
                                 "REASON_TASK_KILLED_DURING_LAUNCH")


def test_transition_table_rejects_illegal_moves(tmp_path: Path) -> None:
    spec = LaunchSpec(task_id="t1", command={"value": "true"}, env={}, sandbox=tmp_path)
    runner = TaskRunner("t1", spec, HostLauncher(), Updates())
    with pytest.raises(IllegalMove, match="NEW -> TASK_RUNNING"):
        runner.move("TASK_RUNNING")
    assert all(not MOVES[state] for state in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED"))


def test_grace_from_kill_policy() -> None:
    assert grace_seconds({"grace_period": {"nanoseconds": 2_500_000_000}}) == 2.5
    assert grace_seconds(None, default=7.0) == 7.0
