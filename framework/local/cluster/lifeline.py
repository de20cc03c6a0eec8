"""Children that die with their supervisor, and a supervisor that outlives a closed pipe.

`dockyard up` supervises the cluster's components and `make demo` supervises `up`.
A supervisor killed outright (SIGKILL, the OOM killer) runs no clean-up of its own:
the kernel's parent-death signal (prctl PR_SET_PDEATHSIG) sends each child SIGTERM
then, so the components stop as they do on Ctrl-C. A supervisor whose output pipe
closed (`make demo 2>&1 | tee log`, then Ctrl-C, kills `tee` first) must still stop
what it started: a write that fails with EPIPE sends further output to /dev/null
instead of raising in the middle of the stop, and a reader gone is seen without
writing (a pipe's write end polls POLLERR once nobody can read it).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import stat
import sys
from typing import Callable, TextIO

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for Popen: the child gets `signum` when the thread that started it ends.

    The setting survives exec and is not inherited by the child's own children, so an
    agent's executors (which must outlive an agent restart) are not touched by it.
    """
    parent = os.getpid()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)  # before the fork

    def arm() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os.kill(os.getpid(), signum)

    return arm


class Output:
    """Where a supervisor reports to; `lost` once nobody reads it any more."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.silenced = False

    def write(self, emit: Callable[[], None]) -> None:
        """Run `emit` (a print to this stream); a broken pipe silences the stream instead of raising."""
        if self.silenced:
            return
        try:
            emit()
            self.stream.flush()
        except BrokenPipeError:
            self.silence()

    def silence(self) -> None:
        """Send the rest of this process's output (stdout and stderr) to /dev/null."""
        self.silenced = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):
                pass
        os.close(devnull)

    @property
    def lost(self) -> bool:
        """Output went nowhere, or the pipe it goes to has no reader left."""
        if self.silenced:
            return True
        try:
            fd = self.stream.fileno()
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return False
        except (OSError, ValueError):
            return False
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR and POLLHUP are reported whatever is asked for
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
