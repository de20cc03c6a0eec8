"""Isolation for command tasks (no image): host filesystem, own cgroups, and by default a PID namespace.

The host launcher (`executor/host.py`) keeps starting the process; this adds:

    iso = HostIsolation.create(spec, pid_namespace) # cgroup with the task's limits, watched from now on
    argv = iso.wrap(argv)                           # sh JOIN+LIMIT task, or sh JOIN -> unshare -> tini -> sh LIMIT task
    Popen(argv, ...)
    iso.annotate(exit_info)                         # OOM/disk limitation -> Mesos reason; exact exit through the init
    iso.enter_argv(argv, user, cwd)                 # a COMMAND check in the task's PID and mount namespaces
    iso.stats(); iso.signal(sig); iso.destroy()     # cgroup readings; kill all; clean up

The record under `<work_dir>/containers/<id>/state.json` lets `executor/cleanup.py`
remove the cgroup after a crash, like any container.
"""
from __future__ import annotations

import errno
import logging
import os
import pwd
import shlex
import shutil
import signal as signals
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from executor.containers import gpus
from executor.containers.bundle import INIT_BINARY, init_ready
from executor.containers.gpus import GpuClaim
from executor.containers.limits import LimitWatcher
from executor.containers.records import new_container_id, teardown
from executor.containers.state import write_json
from executor.launcher import ExitInfo, LaunchSpec, describe_exit
from framework import cgroups
from framework.errors import ContainerError
from framework.proctree import inner_pid

log = logging.getLogger(__name__)

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"

# The chain a host task runs under, each step exec'ing the next (unshare and tini only
# with the agent's namespaces/pid isolator, on by default):
#   sh     joins the task's cgroups (writing 0 to cgroup.procs moves the writer: cheaper
#          than a Python preexec_fn, which forces a full fork of the executor); from
#          here on every process of the task is in its cgroups, the helpers included.
#          A shell task (`/bin/sh -c SCRIPT`, Mesos's default) that runs as the executor's
#          user is this shell itself: the writes come first on its command line, then
#          SCRIPT, with no exec between (one exec fewer, ~1 ms of CPU a task here). With
#          a namespace this shell also points its stdout at the init's report (REPORT),
#          keeping the task's stdout on fd 3;
#   unshare  a new PID and mount namespace with its own /proc; it blocks SIGTERM and
#          SIGINT itself and dies with its child (--kill-child);
#   tini   PID 1 of the namespace. The kernel drops signals sent to a namespace's init
#          unless it has a handler, so the task must not be init: tini forwards every
#          signal to the task's process group (-g), reaps orphans, and exits with the
#          task's status (128+N when signal N killed it, so `exit 130` would read as
#          SIGINT: with -v it also says on its stdout whether its child exited or was
#          killed, which `annotate` reads). The task starts with default signal
#          dispositions and an empty mask;
#   sh     (the last helper; the first one when there is no namespace) gives the task
#          its stdout back (closing fd 3), writes the CPU limit, then execs the task. At
#          0.01 cpu (1 ms per 100 ms period) the helpers' start-up under the quota would
#          hold the task back a period or more before it even runs; written last, the
#          quota starts full with the task's own exec.
# A failed cgroup write exits 125 before anything of the task runs. The writes set no
# shell variable, so a SCRIPT after them starts as under `sh -c SCRIPT`.
WRITE = 'echo {value} >{path} || exit 125; '
EXEC = 'exec "$@"'
REPORT = "init.out"  # what tini says of its child, in the task's record directory
DIVERT = 'exec 3>&1 >{report}; '
RESTORE = 'exec 1>&3 3>&-; '


class HostIsolation:
    def __init__(self, spec: LaunchSpec, pid_namespace: bool = False, user: str | None = None) -> None:
        self.spec = spec
        self.pid_namespace = pid_namespace
        self.work_dir = Path(spec.work_dir)
        self.id = spec.container_id or new_container_id(self.work_dir, spec.task_id)
        self.dir = self.work_dir / "containers" / self.id
        self.group = cgroups.Cgroup.for_task(self.id)
        self.group.extra = []  # no runtime makes cgroups for it in other hierarchies: none to remove
        self.watcher: LimitWatcher | None = None
        self.cpus: float | None = None  # written by the last helper (see LIMIT)
        self.destroyed = False
        self.record = {"id": self.id, "task_id": spec.task_id, "kind": "host", "work_dir": str(self.work_dir),
                       "dir": str(self.dir), "sandbox": str(spec.sandbox), "layers": [],
                       "cgroup": {"paths": self.group.paths, "extra": [str(p) for p in self.group.extra]},
                       # How the agent starts a process beside the task (framework/local/nested.py):
                       # in its namespaces when it has them, as its user (None: the executor's).
                       "pid_namespace": pid_namespace, "user": user}

    @classmethod
    def available(cls, pid_namespace: bool = False) -> bool:
        """Root and cgroups (and for a PID namespace unshare, nsenter and tini): otherwise host tasks run
        unisolated."""
        if os.geteuid() != 0:
            return False
        if pid_namespace and cls.missing_for_namespace():
            return False
        try:
            cgroups.detect()
        except Exception:
            return False
        return True

    @staticmethod
    def missing_for_namespace() -> list[str]:
        """The programs a PID namespace needs that this host lacks (util-linux's, Debian's tini)."""
        return [path for path in (UNSHARE, NSENTER, INIT_BINARY) if not os.path.exists(path)]

    @classmethod
    def create(cls, spec: LaunchSpec, pid_namespace: bool = False, pids: int = 4096,
               user: str | None = None, gpu_claim: GpuClaim | None = None) -> "HostIsolation":
        """The task's cgroups, watched; with a `gpu_claim` (the agent has GPUs) also a devices
        cgroup that lets the task open its own GPUs and no other (cgroup v1 only)."""
        self = cls(spec, pid_namespace, user)
        devices = self._devices_cgroup() if gpu_claim is not None else None
        if devices is not None:  # in the record before it exists: clean-up removes it after a crash
            self.group.extra = [devices]
            self.record["cgroup"]["extra"] = [str(devices)]
        write_json(self.dir / "state.json", self.record)
        try:
            if devices is not None and gpu_claim is not None:
                gpus.restrict(devices, gpu_claim)
            limits = cgroups.Limits.from_resources(spec.resources or {}, pids)
            self.cpus = limits.cpus
            self.group.create(replace(limits, cpus=None))  # the CPU limit comes with the task (LIMIT)
            self.watcher = LimitWatcher.watch(self.group, Path(spec.sandbox), spec.resources or {})
        except BaseException:
            self.destroy()  # half-made cgroups and the record go now, not at the next agent start
            raise
        return self

    def _devices_cgroup(self) -> Path | None:
        """Where the task's devices cgroup goes; None (GPUs not isolated, said in the log) without
        a cgroup v1 devices controller, as on a cgroup v2 host."""
        directory = gpus.devices_cgroup(f"{cgroups.own_cgroup('devices')}/{cgroups.SUBTREE}", self.id)
        if directory is None:
            log.warning("no cgroup v1 devices controller: task %s may open every GPU of this agent",
                        self.spec.task_id)
        return directory

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
            command = _switched(user, command)
        join = _writes((d / "cgroup.procs", "0") for d in self.group.all_dirs())
        limit = _writes(self.group.cpu_settings(self.cpus) if self.cpus else [])
        if not self.pid_namespace:
            if script is not None:
                return ["/bin/sh", "-c", join + limit + script]
            return ["/bin/sh", "-c", join + limit + EXEC, "dockyard-join", *command]
        if script is not None:
            command = ["/bin/sh", "-c", RESTORE + limit + script]
        else:
            command = ["/bin/sh", "-c", RESTORE + limit + EXEC, "dockyard-limit", *command]
        divert = DIVERT.format(report=shlex.quote(str(self.dir / REPORT)))
        return ["/bin/sh", "-c", join + divert + EXEC, "dockyard-join", UNSHARE, "--pid", "--fork", "--kill-child",
                "--mount-proc", "--", INIT_BINARY, "-v", "-g", "--", *command]

    def annotate(self, info: ExitInfo) -> ExitInfo:
        """The exit with a Mesos limitation reason when a limit, not the task, ended it."""
        if self.pid_namespace and info.exit_code is not None and info.exit_code > 128 and not self._exited():
            info = describe_exit(info.exit_code)  # the init's way of saying "killed by signal N"
        return self.watcher.explain(info) if self.watcher is not None else info

    def _exited(self) -> bool:
        """Whether the init saw its child exit (rather than die of a signal), by its report.
        Without one (its TINI_VERBOSITY silenced it) a status above 128 reads as a signal."""
        try:
            return "Main child exited normally" in (self.dir / REPORT).read_text(errors="replace")
        except OSError:
            return False

    def enter_argv(self, argv: list[str], user: str | None = None, cwd: str | None = None) -> list[str]:
        """`argv` run in the task's PID and mount namespaces (its /proc), in `cwd`, as `user` (a host
        user to switch to, or None), for a task whose chain is alive: a COMMAND check sees what
        its task sees and no more. ContainerError when the namespace is gone with its init."""
        init = self._await_init(joining=True)
        if init is None:
            raise ContainerError("the task's PID namespace is gone")
        if user:
            argv = _switched(user, argv)
        return [NSENTER, f"--target={init}", "--pid", "--mount", *([f"--wd={cwd}"] if cwd else []), "--", *argv]

    def signal(self, sig: int) -> None:
        if self.pid_namespace and sig != signals.SIGKILL:
            self._await_init()
        self.group.kill(sig)

    def _await_init(self, timeout: float = 5.0, joining: bool = False) -> int | None:
        """The host pid of the namespace's init once it forwards signals, waiting while the
        task's chain is still starting: the kernel drops a signal sent to a namespace's init
        before it handles any, and until the init runs its /proc may not be mounted yet. A
        kill or a check pays for this wait, not every launch. None when there is no init to
        wait for. `joining`: the chain is alive, so a cgroup without processes means its first
        shell has not joined yet (a kill finds that shell by the launcher's signal to the
        process group instead, and it dies of it)."""
        name = Path(INIT_BINARY).name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            procs = self.group.procs()
            starting = joining and not procs
            for pid in procs:
                running = _name(pid)
                if running == name and inner_pid(pid) == 1:
                    if init_ready(pid, name):
                        return pid
                    starting = True
                elif running in ("sh", "unshare"):  # a helper not yet past its exec
                    starting = True
            if not starting:
                return None
            time.sleep(0.001)
        return None

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


def _switched(user: str, argv: list[str]) -> list[str]:
    """`argv` run as host user `user`, with its group and supplementary groups (setpriv)."""
    return [SETPRIV, f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups", "--", *argv]


def _writes(settings: Iterable[tuple[Path, str]]) -> str:
    return "".join(WRITE.format(value=shlex.quote(str(value)), path=shlex.quote(str(path)))
                   for path, value in settings)


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""
