"""The host processes behind an agent's executors: finding, measuring and killing them.

A Mesos containerizer knows its containers by cgroup; the embedded agent also
knows host tasks by the sandbox they work in, and a process by its pid and
start time (a pid alone may have been reused).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from framework.local.agent import checkpoint
from framework.local.agent.model import dockyard_argv
from framework.proctree import statistics

log = logging.getLogger(__name__)


def container_statistics(executor_pid: int, pids: list[int]) -> dict:
    """Cgroup numbers when the executor has a cgroup of its own, /proc sums otherwise.

    A host executor shares the agent's cgroup, whose numbers would describe the
    whole agent, so those are not used.
    """
    try:
        from framework.errors import ContainerError  # first: the except clause below names it
        from framework import cgroups

        layout = cgroups.detect()  # raises ContainerError on a host without usable cgroups
        controller = "" if layout.version == 2 else "memory"
        if cgroups.own_cgroup(controller, executor_pid) != cgroups.own_cgroup(controller, os.getpid()):
            found = cgroups.stats_for_pid(executor_pid)
            if found:
                return dict(found)
    except (ImportError, OSError, RuntimeError, ValueError, KeyError, ContainerError):
        pass
    return statistics(pids)


def kill_sandbox_processes(directory: Path) -> int:
    """SIGKILL every process working inside `directory`: host tasks an executor left behind."""
    return kill_processes_in([directory])


def task_sandbox(executor_directory: Path, task_id: str) -> Path | None:
    """`tasks/<task_id>/` of an executor sandbox (dockyard's executor runs each task there)."""
    if not task_id or task_id in (".", "..") or "/" in task_id or "\0" in task_id:
        return None
    return executor_directory / "tasks" / task_id


def kill_processes_in(directories: list[Path]) -> int:
    """SIGKILL every process whose working directory is inside one of `directories` (one /proc scan)."""
    prefixes = [str(d) for d in directories]
    killed = 0
    own = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if any(cwd == prefix or cwd.startswith(prefix + "/") for prefix in prefixes):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def containers_in(work_dir: Path, directories: list[Path]) -> list[str]:
    """The task sandboxes among `directories` that still have a container record.

    Records are `<work_dir>/containers/<id>/state.json`, written by dockyard's
    executor (executor/containers/state.py) with the task's `sandbox`; a record
    is removed last when a container is destroyed.
    """
    wanted = {str(d) for d in directories}
    found = []
    try:
        entries = list(os.scandir(work_dir / "containers"))
    except OSError:
        return []
    for entry in entries:
        record = checkpoint.read_json(Path(entry.path) / "state.json")
        if isinstance(record, dict) and record.get("sandbox") in wanted:
            found.append(str(record["sandbox"]))
    return found


class ContainerReaper:
    """Runs `dockyard executor --cleanup` for the agent: at start and stop for everything a
    crash left, and for the containers of each executor that died without destroying them.

    One clean-up process at a time takes every sandbox queued meanwhile.
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._pending: list[tuple[Path, asyncio.Future]] = []
        self._reaper: asyncio.Task | None = None

    async def clean_up(self, *options: str) -> None:
        """Run `dockyard executor --cleanup WORK_DIR [OPTIONS]` once (mounts, cgroups a crash left)."""
        argv = dockyard_argv("executor", "--cleanup", str(self.work_dir), *options)
        try:
            process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
            code = await asyncio.wait_for(process.wait(), 120)
        except (OSError, asyncio.TimeoutError) as error:
            log.warning("executor clean-up %s failed: %s", argv, error)
            return
        if code != 0:
            log.warning("executor clean-up %s exited with %s", argv, code)

    async def reap(self, directory: Path) -> None:
        """Destroy the containers (cgroups, mounts, runtime state) of a dead executor's tasks.

        A Mesos containerizer destroys an executor's containers as soon as the executor
        ends; ours run under the executor, so one that was killed leaves them running.
        """
        future = asyncio.get_running_loop().create_future()
        self._pending.append((directory, future))
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._batches())
        await future

    async def _batches(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.clean_up(*(a for d, _ in batch for a in ("--sandbox", str(d))))
            finally:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
