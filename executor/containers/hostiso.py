"""Isolation for command tasks (no image): host filesystem, own cgroup and PID namespace.

The host launcher (`executor/host.py`) keeps starting the process; this adds:

    iso = HostIsolation.create(spec)                # cgroup with the task's limits
    argv = iso.wrap(argv)                           # unshare --pid --fork --mount-proc sh INIT task
    Popen(argv, stdin=iso.ready_fd(), ...)          # the init joins the cgroups, says "ready" there
    iso.started(popen.pid)                          # returns once the task runs and signals reach it
    iso.annotate(exit_info)                         # OOM/disk limitation -> Mesos reason
    iso.stats(); iso.signal(sig); iso.destroy()     # cgroup readings; kill all; clean up

The record under `<work_dir>/containers/<id>/state.json` lets `executor/cleanup.py`
remove the cgroup after a crash, like any container.
"""
from __future__ import annotations

import errno
import os
import pwd
import select
import shlex
import shutil
import signal as signals
from dataclasses import replace
from pathlib import Path

from executor.containers.launcher import LimitWatcher, describe_exit, new_container_id, teardown
from executor.containers.state import write_json
from executor.launcher import ExitInfo, LaunchSpec
from framework import cgroups
from framework.errors import ContainerError

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"

# PID 1 of the task's namespace. The kernel drops signals sent to a namespace's init
# unless it has a handler, so the task must not be init (Mesos keeps a helper there
# too). This shell joins the task's cgroups (writing 0 to cgroup.procs moves the
# writer: cheaper than a Python preexec_fn, which forces a full fork of the executor),
# moves the launcher's "ready" pipe (its stdin) to fd 9, sets traps that forward
# signals to the task, starts the task, reaps orphans while waiting, and exits with
# the task's status (128+N when a signal N killed it).
# The task's own process says "ready" on fd 9 only once it is past the shell's
# fork (traps reset to defaults), just before exec: from then on a signal to the
# process group or the cgroup reaches it, so the launcher hands the task out only
# then. `env --default-signal` undoes the SIGINT/SIGQUIT ignore that sh imposes on
# background jobs, so the task starts with default dispositions like any Mesos task.
# The CPU limit (shares and CFS quota) is set once the task runs (`started`): at 0.01
# cpu (1 ms per 100 ms) the helper's few milliseconds of shell start-up would otherwise
# cost the task a few throttled periods before it even runs. Memory and pids limits are
# there from the start.
JOIN = 'for f in {files}; do echo 0 >"$f" || exit 125; done; '
INIT = (
    'exec 9>&0 0</dev/null; '
    'for s in TERM INT HUP QUIT USR1 USR2; do trap "kill -$s \\$child 2>/dev/null" $s; done; '
    '(echo ready 2>/dev/null >&9; exec env --default-signal=INT,QUIT "$@" 9>&-) & child=$!; '
    'exec 9>&-; '
    'while :; do wait $child; status=$?; kill -0 $child 2>/dev/null || break; done; '
    'exit $status'
)
READY_TIMEOUT = 30.0



class HostIsolation:
    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self.work_dir = Path(spec.work_dir)
        self.id = new_container_id(self.work_dir, spec.task_id)
        self.dir = self.work_dir / "containers" / self.id
        self.group = cgroups.Cgroup.for_task(self.id)
        self.watcher: LimitWatcher | None = None
        self.cpus: float | None = None  # applied once the task runs (see INIT)
        self.destroyed = False
        self._ready: tuple[int, int] | None = None  # (read, write) ends of the ready pipe
        self.record = {"id": self.id, "task_id": spec.task_id, "kind": "host", "work_dir": str(self.work_dir),
                       "dir": str(self.dir), "sandbox": str(spec.sandbox), "layers": [],
                       "cgroup": {"paths": self.group.paths, "extra": [str(p) for p in self.group.extra]}}

    @classmethod
    def available(cls) -> bool:
        """Root, cgroups and unshare present: otherwise host tasks run unisolated."""
        if os.geteuid() != 0 or not os.path.exists(UNSHARE):
            return False
        try:
            cgroups.detect()
        except Exception:
            return False
        return True

    @classmethod
    def create(cls, spec: LaunchSpec, pids: int = 4096) -> "HostIsolation":
        self = cls(spec)
        write_json(self.dir / "state.json", self.record)
        try:
            limits = cgroups.Limits.from_resources(spec.resources or {}, pids)
            self.cpus = limits.cpus
            self.group.create(replace(limits, cpus=None))  # the CPU limit once the task runs
        except BaseException:
            self.destroy()  # half-made cgroups and the record go now, not at the next agent start
            raise
        return self

    def wrap(self, argv: list[str], program: str | None = None, user: str | None = None) -> list[str]:
        """A new PID namespace (INIT in the task's cgroups, then the task), /proc remounted.

        unshare kills the namespace with itself. `program` replaces argv[0] as what is
        executed; `user` (a host user name) is switched to by `setpriv` inside the
        namespaces, after the cgroups are joined.
        """
        command = [program or argv[0], *argv[1:]]
        path = (self.spec.env or {}).get("PATH") or os.environ.get("PATH", "")
        found = os.access(command[0], os.X_OK) if "/" in command[0] else shutil.which(command[0], path=path)
        if not found:  # what Popen would have raised without the wrapper; nothing is left behind
            self.destroy()
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])
        if user:
            command = [SETPRIV, f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups",
                       "--", *command]
        join = JOIN.format(files=" ".join(shlex.quote(str(d / "cgroup.procs")) for d in self.group.dirs()))
        return [UNSHARE, "--pid", "--fork", "--kill-child", "--mount-proc", "--",
                "/bin/sh", "-c", join + INIT, "dockyard-init", *command]

    def ready_fd(self) -> int:
        """The write end of the pipe the init reports "ready" on: give it as the process's stdin.

        The init closes it once the task runs (the task gets /dev/null), so the task
        still sees what a Mesos command task sees.
        """
        self._ready = os.pipe()
        return self._ready[1]

    def started(self, pid: int) -> None:
        """Wait until the init has its traps set and the task started.

        The runner (unshare) needs no record: it lives exactly as long as the init in
        the task's cgroup, which a clean-up kills.
        """
        if self._ready is not None:
            read_end, write_end = self._ready
            self._ready = None
            os.close(write_end)  # only the init holds it now: EOF at once if the init dies first
            try:
                said = os.read(read_end, 16) if select.select([read_end], [], [], READY_TIMEOUT)[0] else None
            finally:
                os.close(read_end)
            if said == b"":  # EOF: the init died before starting the task (cgroup join, exec failure)
                raise ContainerError("the task's isolation helper failed before the task started "
                                     "(see the sandbox's stderr)")
        if self.cpus:
            self.group.apply(cgroups.Limits(cpus=self.cpus, mem_mb=None, pids=None))
        disk = (self.spec.resources or {}).get("disk")
        self.watcher = LimitWatcher(self.group, [Path(self.spec.sandbox)], int(disk * 1048576) if disk else None,
                                    (self.spec.resources or {}).get("mem"),
                                    lambda limitation: self.group.kill(signals.SIGKILL)).start()

    def annotate(self, info: ExitInfo) -> ExitInfo:
        """The exit with a Mesos limitation reason when a limit, not the task, ended it."""
        if self.watcher is None:
            return info
        if info.exit_code is not None and info.exit_code > 128:
            info = describe_exit(info.exit_code)  # the init's way of saying "killed by signal N"
        self.watcher.stop()
        limitation = self.watcher.limitation or self.watcher.check_memory()
        if limitation is None:
            return info
        reason, message = limitation
        return ExitInfo(info.exit_code, info.signal, reason, f"{message} ({info.message})")

    def signal(self, sig: int) -> None:
        self.group.kill(sig)

    def stats(self) -> dict:
        stats = self.group.stats()
        if self.watcher is not None and self.watcher.disk_limit:
            stats["disk_used_bytes"] = self.watcher.disk_used
            stats["disk_limit_bytes"] = self.watcher.disk_limit
        return stats

    def destroy(self) -> None:
        for fd in self._ready or ():  # the launch failed before started()
            os.close(fd)
        self._ready = None
        if self.destroyed:
            return
        if self.watcher is not None:
            self.watcher.stop()
        teardown(self.record)
        self.destroyed = True
