"""The executor's TaskRunner driving ContainerLauncher: what Mesos users see in status updates."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from executor.containers.launcher import ContainerLauncher
from executor.launcher import LaunchSpec
from executor.launchers import launcher_for
from executor.task_runner import TaskRunner
from tests.containers.conftest import traces

pytestmark = pytest.mark.root


class Updates:
    def __init__(self) -> None:
        self.items: list[tuple[str, str | None, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, runner, state, message, reason, healthy) -> None:  # noqa: ANN001
        with self.lock:
            self.items.append((state, message, reason))


def spec(work: Path, sandbox: Path, image: str, command: str, **resources: float) -> LaunchSpec:
    return LaunchSpec(task_id=sandbox.name, command={"value": command}, env={}, sandbox=sandbox,
                      resources=resources or {"cpus": 1, "mem": 64},
                      container={"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}},
                      work_dir=work)


def test_oom_becomes_task_failed_with_memory_reason(shared_work: Path, busybox: str, tmp_path: Path) -> None:
    task = spec(shared_work, tmp_path / "oom-task", busybox, "dd if=/dev/zero of=/dev/null bs=200M count=1; sleep 60",
                cpus=1, mem=32)
    assert isinstance(launcher_for(task), ContainerLauncher)
    updates = Updates()
    runner = TaskRunner(task.task_id, task, ContainerLauncher(), updates).start()
    assert runner.join(60)
    state, message, reason = updates.items[-1]
    assert (state, reason) == ("TASK_FAILED", "REASON_CONTAINER_LIMITATION_MEMORY")
    assert "Memory limit exceeded" in (message or "")
    assert list((shared_work / "containers").glob(f"*{task.task_id}*")) == []


def test_exit_code_and_missing_image(shared_work: Path, busybox: str, tmp_path: Path) -> None:
    task = spec(shared_work, tmp_path / "exit-task", busybox, "exit 7")
    updates = Updates()
    runner = TaskRunner(task.task_id, task, ContainerLauncher(), updates).start()
    assert runner.join(60)
    assert updates.items[-1] == ("TASK_FAILED", "Command exited with status 7", None)
    missing = spec(shared_work, tmp_path / "missing-task", busybox.rsplit(":", 1)[0] + ":nope", "true")
    updates = Updates()
    runner = TaskRunner(missing.task_id, missing, ContainerLauncher(), updates).start()
    assert runner.join(60)
    state, message, reason = updates.items[-1]
    assert (state, reason) == ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED")
    assert "nope" in (message or "")
    assert all(traces(shared_work, c.name) == [] for c in (shared_work / "containers").glob("*-task-*"))
