"""The parent of a nested process the OCI runtime starts detached: it reaps it and exits with
its status, as `runc exec` in the foreground does, without relaying its output.

`runc exec` in the foreground gives the process pipes of its own and copies them to its
own stdio 32 KB at a time: a relay that costs several times what the command itself does
and held a session's output to half a host read. `runc exec --detach` hands the process
the stdio it was given instead, then exits; the process, until then the runtime's child,
is reparented to the nearest ancestor that is a child subreaper (prctl
PR_SET_CHILD_SUBREAPER). This is that ancestor, one per session, so the agent itself
stays an ordinary parent:

1. it starts idle, its stdin a socket to the agent (a warm one waits for the next session,
   see `framework/local/agent/nested.py`); end of file there ends it;
2. one message brings the runtime's argv, the pid file the runtime writes, and the
   process's stdin, stdout and stderr (SCM_RIGHTS); it starts the runtime with them and
   closes its own copies, so the output ends when the process's writers do;
3. a runtime that fails exits with its status (its message went to the process's stderr),
   closing the socket unsaid; otherwise the pid of the process (from the pid file) goes
   back on the socket, which closes, and the process is waited for: its status becomes
   this one's, the exit code, or 128+N when signal N killed it (the runtime's convention);
4. every signal it gets (but SIGCHLD) is passed on to the process, as the runtime would.

A message without a pid file runs its argv as the process itself (a host task's chain, with
the message's environment and working directory), and says its pid at once. A message with
a status file has the process's raw wait status written there (temp file, then rename) before
this one exits: the agent may have been killed and restarted meanwhile, and a process that is
not its child cannot be waited for, so that file is how it learns how the process ended, as
Mesos's launch helper leaves `status` in the container's runtime directory
(src/slave/containerizer/mesos/launch.cpp).

Standard library only, started with `-I -S`: its start is on a session's path when no
warm one is waiting.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
MAX_MESSAGE = 1 << 20
FAILED = 125  # nothing was started: the reason went to stderr


def subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def exit_code(status: int) -> int:
    """A wait status as a runtime's exit code: the code, or 128+N for death by signal N."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class Forwarder:
    """Signals for the process, held until its pid is known."""

    def __init__(self) -> None:
        self.target: int | None = None
        self.pending: list[int] = []
        for number in signal.valid_signals():
            if number not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
                try:
                    signal.signal(number, self.forward)
                except (OSError, ValueError):
                    pass  # real-time signals the interpreter keeps

    def forward(self, number: int, frame: object = None) -> None:
        if self.target is None:
            self.pending.append(number)
            return
        try:
            os.kill(self.target, number)
        except ProcessLookupError:
            pass

    def found(self, pid: int) -> None:
        self.target = pid
        for number in self.pending:
            self.forward(number)
        self.pending.clear()


def main() -> int:
    control = socket.socket(fileno=0)
    forwarder = Forwarder()
    message, fds, _flags, _address = socket.recv_fds(control, MAX_MESSAGE, 3)
    if not message:
        return 0  # the agent went, or needs no more of this one
    try:
        request = json.loads(message)
        argv = [str(a) for a in request["argv"]]
        pid_file = str(request["pid_file"]) if request.get("pid_file") else None
        status_file = str(request["status_file"]) if request.get("status_file") else None
        env = {str(k): str(v) for k, v in request["env"].items()} if request.get("env") is not None else os.environ
        subreaper()
        if request.get("cwd"):
            os.chdir(str(request["cwd"]))
        for fd in fds:
            os.set_inheritable(fd, False)  # the runtime gets them as 0, 1 and 2 only
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        runtime = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        os.write(fds[2] if len(fds) > 2 else 2, f"cannot start the runtime: {error}\n".encode())
        return FAILED
    finally:
        for fd in fds:
            os.close(fd)
    reaped: dict[int, int] = {}  # statuses of children reaped before we knew who they were
    main_pid: int | None = None
    if pid_file is None:  # the process is the one just started
        main_pid = _found(runtime, forwarder, control)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            print("nested reaper: the process ended unseen", file=sys.stderr)
            return FAILED
        reaped[pid] = status
        if pid == runtime and pid_file is not None:
            if status != 0:
                return exit_code(status)
            try:
                with open(pid_file) as handle:
                    main_pid = _found(int(handle.read().split()[0]), forwarder, control)
            except (OSError, ValueError, IndexError) as error:
                print(f"nested reaper: no pid in {pid_file}: {error}", file=sys.stderr)
                return FAILED
        if main_pid is not None and main_pid in reaped:
            if status_file is not None:
                _write_status(status_file, reaped[main_pid])
            return exit_code(reaped[main_pid])


def _found(pid: int, forwarder: Forwarder, control: socket.socket) -> int:
    """The process runs as `pid`: signals go to it, and the agent learns its pid."""
    forwarder.found(pid)
    try:
        control.send(b"%d" % pid)
    except OSError:
        pass  # the agent went: the process still gets its parent
    control.close()
    return pid


def _write_status(path: str, status: int) -> None:
    """The raw wait status, whole or not at all: a temp file beside `path`, then a rename."""
    temp = f"{path}.{os.getpid()}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"%d" % status)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except FileNotFoundError:
        pass  # its task's executor is gone, and what was kept of its nested containers with it
    except OSError as error:
        print(f"nested reaper: cannot write {path}: {error}", file=sys.stderr)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # at once: the session's end waits for this exit, not for the interpreter's clean-up
