"""The limit watcher: one thread for every task of an executor, each task's limits its own."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from executor.containers.hostiso import HostIsolation
from executor.containers.limits import MEMORY
from executor.launcher import LaunchSpec, describe_exit
from tests.containers.conftest import traces

pytestmark = pytest.mark.root


def watchers() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "limit-watcher")


def test_many_tasks_share_one_watcher_and_an_oom_is_reported_on_its_own_task_only(tmp_path: Path) -> None:
    tasks = []
    try:
        for index in range(12):
            sandbox = tmp_path / f"sandbox-{index}"
            sandbox.mkdir()
            spec = LaunchSpec(task_id=f"watched-{index}", command={}, env={}, sandbox=sandbox,
                              resources={"cpus": 0.5, "mem": 32}, work_dir=tmp_path / "work")
            iso = HostIsolation.create(spec)
            script = "dd if=/dev/zero of=/dev/null bs=200M count=1; sleep 30" if index == 0 else "sleep 0.5"
            popen = subprocess.Popen(iso.wrap(["sh", "-c", script], "/bin/sh"), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
            tasks.append((iso, popen))
        assert watchers() == 1  # not one thread per task
        outcomes = [iso.annotate(describe_exit(popen.wait(30))) for iso, popen in tasks]
        assert outcomes[0].reason == MEMORY and "Memory limit exceeded" in outcomes[0].message
        assert all(o.reason is None and o.exit_code == 0 for o in outcomes[1:]), outcomes[1:]
    finally:
        for iso, popen in tasks:
            popen.kill()
            popen.wait()
            iso.destroy()
    assert all(traces(tmp_path / "work", iso.id) == [] for iso, _ in tasks)


def wakeups(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("voluntary_ctxt_switches"))


def test_idle_tasks_cost_the_watcher_no_wake_ups(tmp_path: Path) -> None:
    """Memory is not polled: the kernel wakes the watcher on an OOM, and tasks without a
    disk quota give it nothing to do on a clock."""
    isolations = []
    try:
        for index in range(20):
            sandbox = tmp_path / f"sandbox-{index}"
            sandbox.mkdir()
            isolations.append(HostIsolation.create(LaunchSpec(
                task_id=f"idle-{index}", command={}, env={}, sandbox=sandbox, resources={"cpus": 0.1, "mem": 32},
                work_dir=tmp_path / "work")))
        watcher = next(thread for thread in threading.enumerate() if thread.name == "limit-watcher")
        time.sleep(0.3)  # let it take in the new watchers
        before = wakeups(watcher)
        time.sleep(1.5)  # a poller at its old 0.2 s interval woke 7 times here
        assert wakeups(watcher) - before <= 1
    finally:
        for iso in isolations:
            iso.destroy()
