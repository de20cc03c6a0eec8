"""Process trees from /proc: who descends from whom, and what they use.

Standard library only: the executor imports it too. cgroups (framework/cgroups.py)
give better numbers when a task has one; this is the fallback for host processes.
"""
from __future__ import annotations

import os
import signal
import time

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int | str) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Fields after the command name, which may itself hold spaces and parentheses.
    return stat[stat.rfind(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (/proc/<pid>/stat field 22): with
    the pid it names one process, whatever later reuses the number. None when the process is
    gone or a zombie (its pid names nothing that runs)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == b"Z":
        return None
    return int(fields[19])


def same_process(pid: int, start: int | None) -> bool:
    """Whether `pid` runs and is still the process that `start_time` saw start at `start`."""
    return start is not None and start_time(pid) == start


def descendants(root: int) -> list[int]:
    """Every live descendant of `root`, including those that left its process group."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def inner_pid(pid: int) -> int | None:
    """What process `pid` calls itself in its own PID namespace (the last `NSpid` entry).

    A host task runs in its own PID namespace, so the numbers it prints (`$$`, `$!`)
    are not host pids; this is the other half of the translation.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return pid  # kernels before 4.1 have no NSpid line: no namespaces to translate


def host_pid(pid_inside: int, root: int) -> int | None:
    """The host pid of the process in `root`'s tree known as `pid_inside` in its namespace.

    `root` is what the host sees of a task (the launcher's `Running.pid`); the
    task's own processes live below it, possibly in a PID namespace of their own.
    Without a namespace the two numbers are the same. None when no such process lives.
    """
    for pid in [root, *descendants(root)]:
        if inner_pid(pid) == pid_inside:
            return pid
    return None


def kill_tree(root: int, sig: int = signal.SIGKILL) -> None:
    """Signal `root`, its process group and every descendant (and their groups)."""
    pids = [root, *descendants(root)]
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    own_group = os.getpgrp()
    for group in groups - {own_group}:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def statistics(pids: list[int]) -> dict:
    """Mesos ResourceStatistics fields that /proc can answer for a set of processes."""
    user = system = 0.0
    rss = 0
    threads = 0
    alive = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        alive += 1
        user += int(fields[11]) / _CLOCK_TICKS
        system += int(fields[12]) / _CLOCK_TICKS
        threads += int(fields[17])
        rss += int(fields[21]) * _PAGE_SIZE
    return {
        "timestamp": time.time(),
        "cpus_user_time_secs": round(user, 3),
        "cpus_system_time_secs": round(system, 3),
        "mem_rss_bytes": rss,
        "processes": alive,
        "threads": threads,
    }
