"""Why a task died, when a limit killed it: one watcher thread for every task of the executor.

The kernel enforces memory and pids limits itself; here an OOM kill, and a sandbox
over its disk quota, become Mesos limitation reasons (and end the whole task).
One thread serves every task: it sleeps in epoll on each task's OOM notifier (the
kernel wakes it; see `Cgroup.oom_notifier`) and measures the disk of tasks with a
quota when due.

    watcher = LimitWatcher.watch(group, sandbox, resources)   # right after the cgroup is made
    ...
    info = watcher.explain(exit_info)   # stops watching; adds the limitation, if any
"""
from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from executor.launcher import ExitInfo
from framework import cgroups
from framework.errors import ContainerError

log = logging.getLogger(__name__)

MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"
DISK = "REASON_CONTAINER_LIMITATION_DISK"

Limitation = tuple[str, str]  # (Mesos reason, message)

# After a memory event the notifier rests while the counters are looked at again: the
# kernel says "under OOM" a moment before it counts the kill, and a v2 cgroup that keeps
# hitting memory.max (reclaiming page cache) signals on every hit. Bounds a task's checks
# to RECHECKS + 1 per RECHECKS * RECHECK_SECONDS.
RECHECK_SECONDS = 0.25
RECHECKS = 2


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
    """One task's limits: the kernel wakes us on an OOM (no polling of memory), and the
    sandbox's disk usage is measured every `disk_interval` when it has a quota; calls
    `on_limit` once, then stops."""

    def __init__(self, group: cgroups.Cgroup, disk_paths: list[Path], disk_limit: int | None,
                 mem_mb: float | None, on_limit: Callable[[Limitation], None], *,
                 disk_interval: float = 0.5) -> None:
        self.group = group
        self.disk_paths = disk_paths
        self.disk_limit = disk_limit
        self.mem_mb = mem_mb
        self.on_limit = on_limit
        self.disk_interval = disk_interval
        self.disk_used = 0
        self.limitation: Limitation | None = None
        self.notifier: cgroups.OomNotifier | None = None
        self._lock = threading.Lock()  # a check and stop() never overlap: no kill after stop()
        self._stopped = False
        self._next_disk = self._next_memory = 0.0
        self._rechecks = 0

    def start(self) -> "LimitWatcher":
        try:
            self.notifier = self.group.oom_notifier()
        except (OSError, ContainerError) as error:  # still explained at exit, just not at once
            log.warning("no OOM notifications for %s: %s", self.group.paths, error)
        self._next_disk = time.monotonic() + self.disk_interval
        _POLLER.add(self)
        return self

    @classmethod
    def watch(cls, group: cgroups.Cgroup, sandbox: Path, resources: dict[str, float]) -> "LimitWatcher":
        """Watch a task's new cgroup: before its first process joins, so that no OOM goes
        unseen. A limit hit kills the whole task (as Mesos destroys the container)."""
        disk = resources.get("disk")
        return cls(group, [sandbox], int(disk * 1048576) if disk else None, resources.get("mem"),
                   lambda limitation: group.kill(signal.SIGKILL)).start()

    def stop(self) -> None:
        _POLLER.discard(self)
        with self._lock:
            self._stopped = True
            if self.notifier is not None:
                self.notifier.close()

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
    def due(self) -> float | None:
        """When `poll` has something to look at: a memory recheck or the disk."""
        dues = ([self._next_memory] if self._rechecks else []) + ([self._next_disk] if self.disk_limit else [])
        return min(dues) if dues else None

    def memory_event(self) -> bool:
        """The kernel signalled a memory event; False once there is nothing more to watch."""
        with self._lock:
            if self._stopped:
                return False
            if self.notifier is not None:
                self.notifier.rearm()
            found = self.check_memory()
            if found is None:
                self._rechecks, self._next_memory = RECHECKS, time.monotonic() + RECHECK_SECONDS
            return self._report(found)

    def poll(self, now: float) -> bool:
        """The looks that are due; False once there is nothing more to watch."""
        with self._lock:
            if self._stopped:
                return False
            found = None
            if self._rechecks and now >= self._next_memory:
                self._rechecks -= 1
                self._next_memory = now + RECHECK_SECONDS
                found = self.check_memory()
                if found is None and not self._rechecks:
                    _POLLER.resume(self)
            if found is None and self.disk_limit and now >= self._next_disk:
                self._next_disk = now + self.disk_interval
                found = self.check_disk()
            return self._report(found)

    def _report(self, found: Limitation | None) -> bool:
        if found is None:
            return True
        self.limitation = found
        self._stopped = True
        self.on_limit(found)
        return False


class _Poller:
    """The one thread that waits on every task's OOM notifier (epoll) and measures the
    disks that are due: a thread per task cost a start, a join and a wake-up every
    interval per task, which at a hundred short tasks a second showed in the executor's
    CPU; polling memory counters cost a read per task per interval even when idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: set[LimitWatcher] = set()
        self._by_fd: dict[int, LimitWatcher] = {}
        self._epoll: select.epoll | None = None
        self._wake = -1  # an eventfd: a new disk deadline may be sooner than the wait
        self._thread: threading.Thread | None = None

    def add(self, watcher: LimitWatcher) -> None:
        with self._lock:
            if self._epoll is None:
                self._epoll = select.epoll()
                self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                self._epoll.register(self._wake, select.EPOLLIN)
            self._watchers.add(watcher)
            if watcher.notifier is not None:
                self._by_fd[watcher.notifier.fd] = watcher
                self._epoll.register(watcher.notifier.fd, watcher.notifier.mask | select.EPOLLONESHOT)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="limit-watcher", daemon=True)
                self._thread.start()
        if watcher.disk_limit:
            os.eventfd_write(self._wake, 1)  # its first look may be due before the current wait ends

    def resume(self, watcher: LimitWatcher) -> None:
        """Listen to a watcher's notifier again (one event at a time: EPOLLONESHOT)."""
        with self._lock:
            if watcher.notifier is not None and self._by_fd.get(watcher.notifier.fd) is watcher:
                assert self._epoll is not None
                self._epoll.modify(watcher.notifier.fd, watcher.notifier.mask | select.EPOLLONESHOT)

    def discard(self, watcher: LimitWatcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)
            if watcher.notifier is not None and self._by_fd.get(watcher.notifier.fd) is watcher:
                del self._by_fd[watcher.notifier.fd]
                assert self._epoll is not None
                try:
                    self._epoll.unregister(watcher.notifier.fd)
                except OSError:
                    pass

    def _run(self) -> None:
        assert self._epoll is not None
        while True:
            with self._lock:
                now = time.monotonic()
                deadlines = [due for w in self._watchers if (due := w.due()) is not None]
            timeout = max(0.0, min(deadlines) - now) if deadlines else 60.0
            events = self._epoll.poll(timeout)
            for fd, _mask in events:
                if fd == self._wake:
                    try:
                        os.eventfd_read(self._wake)
                    except BlockingIOError:
                        pass
                    continue
                with self._lock:
                    watcher = self._by_fd.get(fd)
                if watcher is not None:
                    self._check(watcher, watcher.memory_event)
            now = time.monotonic()
            with self._lock:
                due = [w for w in self._watchers if (d := w.due()) is not None and d <= now]
            for watcher in due:
                self._check(watcher, lambda w=watcher: w.poll(now))

    def _check(self, watcher: LimitWatcher, check: Callable[[], bool]) -> None:
        try:
            keep = check()
        except Exception:  # a broken check must not end the watching of every other task
            log.exception("limit check of %s failed", watcher.group.paths)
            keep = True
        if not keep:
            self.discard(watcher)


_POLLER = _Poller()
