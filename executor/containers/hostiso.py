"""Isolation for command tasks (no image): host filesystem, own cgroups, a PID namespace if asked.

The host launcher (`executor/host.py`) keeps starting the process; this adds:

    iso = HostIsolation.create(spec, pid_namespace) # cgroup with the task's limits, watched from now on
    argv = iso.wrap(argv)                           # sh JOIN+LIMIT task, or sh JOIN -> unshare -> tini -> sh LIMIT task
    Popen(argv, ...)
    iso.annotate(exit_info)                         # OOM/disk limitation -> Mesos reason
    iso.stats(); iso.signal(sig); iso.destroy()     # cgroup readings; kill all; clean up

The record under `<work_dir>/containers/<id>/state.json` lets `executor/cleanup.py`
remove the cgroup after a crash, like any container.
"""
from __future__ import annotations

import errno
import os
import pwd
import shlex
import shutil
import signal as signals
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from executor.containers.bundle import INIT_BINARY, init_ready
from executor.containers.launcher import describe_exit, new_container_id, teardown
from executor.containers.limits import LimitWatcher
from executor.containers.state import write_json
from executor.launcher import ExitInfo, LaunchSpec
from framework import cgroups

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"

# The chain a host task runs under, each step exec'ing the next (unshare and tini only
# with the agent's --isolation=namespaces/pid):
#   sh     joins the task's cgroups (writing 0 to cgroup.procs moves the writer: cheaper
#          than a Python preexec_fn, which forces a full fork of the executor); from
#          here on every process of the task is in its cgroups, the helpers included.
#          A shell task (`/bin/sh -c SCRIPT`, Mesos's default) that runs as the executor's
#          user is this shell itself: the writes come first on its command line, then
#          SCRIPT, with no exec between (one exec fewer, ~1 ms of CPU a task here);
#   unshare  a new PID and mount namespace with its own /proc; it blocks SIGTERM and
#          SIGINT itself and dies with its child (--kill-child);
#   tini   PID 1 of the namespace. The kernel drops signals sent to a namespace's init
#          unless it has a handler, so the task must not be init: tini forwards every
#          signal to the task's process group (-g), reaps orphans, and exits with the
#          task's status (128+N when signal N killed it). The task starts with default
#          signal dispositions and an empty mask;
#   sh     (the last helper; the first one when there is no namespace) writes the CPU
#          limit, then execs the task. At 0.01 cpu (1 ms per 100 ms period) the helpers'
#          start-up under the quota would hold the task back a period or more before it
#          even runs; written last, the quota starts full with the task's own exec.
# A failed cgroup write exits 125 before anything of the task runs. The writes set no
# shell variable, so a SCRIPT after them starts as under `sh -c SCRIPT`.
WRITE = 'echo {value} >{path} || exit 125; '
EXEC = 'exec "$@"'


class HostIsolation:
    def __init__(self, spec: LaunchSpec, pid_namespace: bool = False) -> None:
        self.spec = spec
        self.pid_namespace = pid_namespace
        self.work_dir = Path(spec.work_dir)
        self.id = new_container_id(self.work_dir, spec.task_id)
        self.dir = self.work_dir / "containers" / self.id
        self.group = cgroups.Cgroup.for_task(self.id)
        self.group.extra = []  # no runtime makes cgroups for it in other hierarchies: none to remove
        self.watcher: LimitWatcher | None = None
        self.cpus: float | None = None  # written by the last helper (see LIMIT)
        self.destroyed = False
        self.record = {"id": self.id, "task_id": spec.task_id, "kind": "host", "work_dir": str(self.work_dir),
                       "dir": str(self.dir), "sandbox": str(spec.sandbox), "layers": [],
                       "cgroup": {"paths": self.group.paths, "extra": [str(p) for p in self.group.extra]}}

    @classmethod
    def available(cls, pid_namespace: bool = False) -> bool:
        """Root and cgroups (and for a PID namespace unshare and tini): otherwise host tasks run unisolated."""
        if os.geteuid() != 0:
            return False
        if pid_namespace and not (os.path.exists(UNSHARE) and os.path.exists(INIT_BINARY)):
            return False
        try:
            cgroups.detect()
        except Exception:
            return False
        return True

    @classmethod
    def create(cls, spec: LaunchSpec, pid_namespace: bool = False, pids: int = 4096) -> "HostIsolation":
        self = cls(spec, pid_namespace)
        write_json(self.dir / "state.json", self.record)
        try:
            limits = cgroups.Limits.from_resources(spec.resources or {}, pids)
            self.cpus = limits.cpus
            self.group.create(replace(limits, cpus=None))  # the CPU limit comes with the task (LIMIT)
            self.watcher = LimitWatcher.watch(self.group, Path(spec.sandbox), spec.resources or {})
        except BaseException:
            self.destroy()  # half-made cgroups and the record go now, not at the next agent start
            raise
        return self

    def wrap(self, argv: list[str], program: str | None = None, user: str | None = None) -> list[str]:
        """The task in its cgroups, under unshare and tini in a new PID namespace if asked.

        `program` replaces argv[0] as what is executed; `user` (a host user name) is
        switched to by `setpriv` after the cgroups are joined (inside the namespaces).
        """
        command = [program or argv[0], *argv[1:]]
        script = command[2] if command[:2] == ["/bin/sh", "-c"] and len(command) == 3 and not user else None
        path = (self.spec.env or {}).get("PATH") or os.environ.get("PATH", "")
        found = os.access(command[0], os.X_OK) if "/" in command[0] else shutil.which(command[0], path=path)
        if not found:  # what Popen would have raised without the wrapper; nothing is left behind
            self.destroy()
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])
        if user:
            command = [SETPRIV, f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups",
                       "--", *command]
        join = _writes((d / "cgroup.procs", "0") for d in self.group.dirs())
        limit = _writes(self.group.cpu_settings(self.cpus) if self.cpus else [])
        if not self.pid_namespace:
            if script is not None:
                return ["/bin/sh", "-c", join + limit + script]
            return ["/bin/sh", "-c", join + limit + EXEC, "dockyard-join", *command]
        if script is not None:
            command = ["/bin/sh", "-c", limit + script]
        elif limit:
            command = ["/bin/sh", "-c", limit + EXEC, "dockyard-limit", *command]
        return ["/bin/sh", "-c", join + EXEC, "dockyard-join", UNSHARE, "--pid", "--fork", "--kill-child",
                "--mount-proc", "--", INIT_BINARY, "-g", "--", *command]

    def annotate(self, info: ExitInfo) -> ExitInfo:
        """The exit with a Mesos limitation reason when a limit, not the task, ended it."""
        if self.pid_namespace and info.exit_code is not None and info.exit_code > 128:
            info = describe_exit(info.exit_code)  # the init's way of saying "killed by signal N"
        return self.watcher.explain(info) if self.watcher is not None else info

    def signal(self, sig: int) -> None:
        if self.pid_namespace and sig != signals.SIGKILL:
            self._await_init()
        self.group.kill(sig)

    def _await_init(self, timeout: float = 5.0) -> None:
        """Until the init forwards signals, if the task's chain is still starting: the kernel
        drops a signal sent to a namespace's init before it handles any. A kill pays for
        this wait, not every launch. (Before the chain joins the cgroups its shell is found
        by the launcher's signal to the process group, and dies of it.)"""
        name = Path(INIT_BINARY).name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            starting = False
            for pid in self.group.procs():
                running = _name(pid)
                if running == name:
                    if init_ready(pid, name):
                        return
                    starting = True
                elif running in ("sh", "unshare"):  # a helper not yet past its exec
                    starting = True
            if not starting:
                return
            time.sleep(0.001)

    def stats(self) -> dict:
        stats = self.group.stats()
        if self.watcher is not None and self.watcher.disk_limit:
            stats["disk_used_bytes"] = self.watcher.disk_used
            stats["disk_limit_bytes"] = self.watcher.disk_limit
        return stats

    def destroy(self) -> None:
        if self.destroyed:
            return
        if self.watcher is not None:
            self.watcher.stop()
        teardown(self.record)
        self.destroyed = True


def _writes(settings: Iterable[tuple[Path, str]]) -> str:
    return "".join(WRITE.format(value=shlex.quote(str(value)), path=shlex.quote(str(path)))
                   for path, value in settings)


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""
