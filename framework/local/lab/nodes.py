"""Processes inside a node's namespace.

A node's process enters the node's network namespace and sees the node's
`/etc/netns/<netns>/` files (its `hosts`) over `/etc`, as `ip netns exec` gives;
but it keeps the host's `/sys`, where `ip netns exec` mounts a fresh sysfs that
hides `/sys/fs/cgroup`: an agent there would find no cgroups and run its tasks
with no limits at all. A lab node is a machine of its own to the tasks, and
their cgroup limits hold as on any agent.

A started process is detached (own session, output in a log file) so it
outlives `lab up`. Stopping a node asks the kernel which processes live in its
namespace (`ip netns pids`) instead of trusting a PID list: executors and
tasks that an agent started are in there too, and nothing is missed after a
crash of the lab command.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from framework.proctree import same_process, start_time

from . import LabError
from .network import NETNS_DIR, NETNS_ETC, netns_pids
from .state import Proc

# In a mount namespace of its own (slave: the host's later mounts still show), bind the node's
# /etc files, then enter the node's network namespace and exec the program: its pid is ours.
_ENTER = ('etc=$1 net=$2; shift 2; for file in "$etc"/*; do [ -e "$file" ] && '
          'mount --bind "$file" "/etc/${file##*/}"; done; exec nsenter --net="$net" -- "$@"')


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside node namespace `netns` (see the module docstring)."""
    return ["unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", _ENTER, "lab-node",
            str(NETNS_ETC / netns), str(NETNS_DIR / netns), *argv]


# Children started by this process, kept so their exit status is collected.
_children: list[subprocess.Popen] = []


def alive(proc: Proc) -> bool:
    """Running and the same process we started (not a reused PID)."""
    return same_process(proc.pid, proc.start_time)


def start(node: str, netns: str, role: str, argv: Sequence[str], log: Path,
          env: dict[str, str] | None = None, env_file: str = "") -> Proc:
    """Start `argv` in `netns`; each step execs the next, so the PID is the program's."""
    log.parent.mkdir(parents=True, exist_ok=True)
    merged = dict(os.environ)
    merged.update(env or {})
    with open(log, "ab") as out:
        child = subprocess.Popen(in_netns(netns, argv), stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=merged, start_new_session=True, close_fds=True)
    began = start_time(child.pid)
    if began is None:
        child.wait(5)
        raise LabError(f"{role} on {node} exited at once (status {child.returncode}); "
                       f"see {log}")
    _children.append(child)
    return Proc(node=node, role=role, pid=child.pid, start_time=began, argv=list(argv),
                log=str(log), env_file=env_file)


def reap() -> None:
    """Collect exit statuses of our own dead children so they do not linger as zombies."""
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def stop_netns(netns: str, grace: float = 5.0) -> list[int]:
    """SIGTERM every process in `netns`, SIGKILL what is left after `grace`.

    Returns the PIDs found. Loops because a dying agent may still fork.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        reap()
        pids = [pid for pid in netns_pids(netns) if start_time(pid) is not None]
        if not pids:
            return sorted(seen)
        seen.update(pids)
        if time.monotonic() >= deadline:
            sig = signal.SIGKILL
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL and time.monotonic() > deadline + 10:
            raise LabError(f"processes {pids} in {netns} survive SIGKILL")
        time.sleep(0.1)


def kill(proc: Proc, sig: int = signal.SIGKILL) -> bool:
    """Signal one recorded process if it is still the one we started."""
    if not alive(proc):
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True
