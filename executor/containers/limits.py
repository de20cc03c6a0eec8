"""Why a task died, when a limit killed it: one watcher thread for every task of the executor.

The kernel enforces memory and pids limits itself but does not say that it did; an
OOM kill and a sandbox over its disk quota become Mesos limitation reasons here.
One thread polls every task's watcher when it is due: a
thread per task cost a start, a join and a wake-up every interval per task, which at
a hundred short tasks a second was a measurable share of the executor's CPU.

    watcher = LimitWatcher(group, [sandbox], disk_limit, mem_mb, on_limit).start()
    ...
    info = watcher.explain(exit_info)   # stops watching; adds the limitation, if any
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from executor.launcher import ExitInfo
from framework import cgroups

log = logging.getLogger(__name__)

MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"
DISK = "REASON_CONTAINER_LIMITATION_DISK"

Limitation = tuple[str, str]  # (Mesos reason, message)


def disk_usage(path: Path) -> int:
    """Bytes allocated below `path` (hard links counted once), without following symlinks."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    key = (info.st_dev, info.st_ino)
                    if info.st_nlink > 1:
                        if key in seen:
                            continue
                        seen.add(key)
                    total += info.st_blocks * 512
        except OSError:
            continue
    return total


class LimitWatcher:
    """Polls one task's cgroup OOM counter and disk usage; calls `on_limit` once, then stops."""

    def __init__(self, group: cgroups.Cgroup, disk_paths: list[Path], disk_limit: int | None,
                 mem_mb: float | None, on_limit: Callable[[Limitation], None], *,
                 interval: float = 0.2, disk_interval: float = 0.5) -> None:
        self.group = group
        self.disk_paths = disk_paths
        self.disk_limit = disk_limit
        self.mem_mb = mem_mb
        self.on_limit = on_limit
        self.interval = interval
        self.disk_interval = disk_interval
        self.disk_used = 0
        self.limitation: Limitation | None = None
        self._lock = threading.Lock()  # a check and stop() never overlap: no kill after stop()
        self._stopped = False
        self._next_memory = self._next_disk = 0.0

    def start(self) -> "LimitWatcher":
        now = time.monotonic()
        self._next_memory = self._next_disk = now + self.interval
        _POLLER.add(self)
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        _POLLER.discard(self)

    def explain(self, info: ExitInfo) -> ExitInfo:
        """`info` with a Mesos limitation reason when a limit, not the task, ended it."""
        self.stop()
        limitation = self.limitation or self.check_memory()
        if limitation is None and self.disk_limit:
            limitation = self.check_disk()
        if limitation is None:
            return info
        reason, message = limitation
        return ExitInfo(info.exit_code, info.signal, reason, f"{message} ({info.message})")

    def check_memory(self) -> Limitation | None:
        if self.group.oom_kills() > 0:
            peak = self.group.peak_memory() / 1048576
            requested = f"Requested: {self.mem_mb:g}MB " if self.mem_mb else ""
            return MEMORY, (f"Memory limit exceeded: {requested}Maximum Used: {peak:.0f}MB; "
                            "the kernel OOM-killed a process of the task")
        return None

    def check_disk(self) -> Limitation | None:
        if not self.disk_limit:
            return None
        self.disk_used = sum(disk_usage(p) for p in self.disk_paths)
        if self.disk_used > self.disk_limit:
            return DISK, (f"Disk usage ({self.disk_used / 1048576:.1f}MB) exceeds quota "
                          f"({self.disk_limit / 1048576:.1f}MB) on the sandbox and root filesystem")
        return None

    # -- called by the poller -------------------------------------------------
    def due(self) -> float:
        return self._next_memory

    def poll(self, now: float) -> bool:
        """One look, if due; False once there is nothing more to watch."""
        with self._lock:
            if self._stopped:
                return False
            if now < self._next_memory:
                return True
            self._next_memory = now + self.interval
            found = self.check_memory()
            if found is None and now >= self._next_disk:
                self._next_disk = now + self.disk_interval
                found = self.check_disk()
            if found is None:
                return True
            self.limitation = found
            self._stopped = True
            self.on_limit(found)
            return False


class _Poller:
    """The one thread that polls every started watcher when it is due."""

    def __init__(self) -> None:
        self._watchers: set[LimitWatcher] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watcher: LimitWatcher) -> None:
        with self._changed:
            self._watchers.add(watcher)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="limit-watcher", daemon=True)
                self._thread.start()
            self._changed.notify()

    def discard(self, watcher: LimitWatcher) -> None:
        with self._changed:
            self._watchers.discard(watcher)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [w for w in self._watchers if w.due() <= now]
                if not due:
                    soonest = min((w.due() for w in self._watchers), default=now + 60.0)
                    self._changed.wait(soonest - now)
                    continue
            for watcher in due:
                try:
                    keep = watcher.poll(now)
                except Exception:  # a broken check must not end the watching of every other task
                    log.exception("limit check of %s failed", watcher.group.paths)
                    keep = True
                if not keep:
                    self.discard(watcher)


_POLLER = _Poller()
