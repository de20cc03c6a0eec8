"""Isolation for command tasks (no image): host filesystem, own cgroups, and by default a PID namespace.

The host launcher (`executor/host.py`) keeps starting the process; this adds:

    iso = HostIsolation.create(spec, pid_namespace) # cgroup with the task's limits, watched from now on
    argv = iso.wrap(argv)                           # sh: join, limit, exec; or dockyard-init: namespaces too
    Popen(argv, ...)
    iso.annotate(exit_info)                         # OOM/disk limitation -> Mesos reason
    iso.enter_argv(argv, leader, user, cwd)         # a COMMAND check in the task's PID and mount namespaces
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
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from executor.containers import gpus, hostinit
from executor.containers.gpus import GpuClaim
from executor.containers.limits import LimitWatcher
from executor.containers.records import new_container_id, teardown
from executor.containers.state import write_json
from executor.launcher import ExitInfo, LaunchSpec
from framework import cgroups
from framework.errors import ContainerError

log = logging.getLogger(__name__)

NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"

# How a host task starts.
# Without a PID namespace: a shell that joins the task's cgroups (writing 0 to cgroup.procs
#   moves the writer: cheaper than a Python preexec_fn, which forces a full fork of the
#   executor), writes the CPU limit and execs the task. A shell task (`/bin/sh -c SCRIPT`,
#   Mesos's default) that runs as the executor's user is this shell itself: the writes come
#   first on its command line, then SCRIPT, with no exec between. A failed write exits 125
#   before anything of the task runs; the writes set no shell variable, so SCRIPT starts as
#   under `sh -c SCRIPT`. Another user is switched to by setpriv, once the cgroups are joined.
# With one (the agent's namespaces/pid isolator, on by default): dockyard-init (hostinit.c),
#   which stays outside the task's cgroups, makes the namespaces, forks their init and then
#   the task, which joins the cgroups, writes the CPU limit, switches user and execs. It
#   reaps the task outside the task's CPU quota (a reaper under a quota of 0.01 cpu waits a
#   100 ms period each time it wakes), lifts the quota for the namespace's end, and ends
#   exactly as the task did.
# Either way the CPU limit is written last: at 0.01 cpu (1 ms per 100 ms period) helpers
# starting under the quota would hold the task back a period or more before it even runs.
WRITE = 'echo {value} >{path} || exit 125; '
EXEC = 'exec "$@"'
# The CPU quota lifted, once the task has ended, so that what is left of its namespace dies
# at once (cgroup v1, v2).
UNLIMITED = {"cpu.cfs_quota_us": "-1", "cpu.max": "max"}


class HostIsolation:
    def __init__(self, spec: LaunchSpec, pid_namespace: bool = False, user: str | None = None) -> None:
        self.spec = spec
        self.pid_namespace = pid_namespace
        self.work_dir = Path(spec.work_dir)
        # dockyard-init, when the task gets a PID namespace (built for the agent's work dir)
        self.init_program = hostinit.program(self.work_dir) if pid_namespace else None
        self.id = spec.container_id or new_container_id(self.work_dir, spec.task_id)
        self.dir = self.work_dir / "containers" / self.id
        self.group = cgroups.Cgroup.for_task(self.id)
        self.group.extra = []  # no runtime makes cgroups for it in other hierarchies: none to remove
        self.watcher: LimitWatcher | None = None
        self.cpus: float | None = None  # written by the task's own process before its exec (wrap)
        self.destroyed = False
        self.record = {"id": self.id, "task_id": spec.task_id, "kind": "host", "work_dir": str(self.work_dir),
                       "dir": str(self.dir), "sandbox": str(spec.sandbox), "layers": [],
                       "cgroup": {"paths": self.group.paths, "extra": [str(p) for p in self.group.extra]},
                       # How the agent starts a process beside the task (framework/local/agent/nested.py):
                       # in its namespaces when it has them, as its user (None: the executor's).
                       "pid_namespace": pid_namespace, "user": user}

    @classmethod
    def available(cls) -> bool:
        """Root and cgroups: otherwise host tasks run unisolated."""
        if os.geteuid() != 0:
            return False
        try:
            cgroups.detect()
        except Exception:
            return False
        return True

    @staticmethod
    def namespace_unavailable(work_dir: Path) -> str | None:
        """Why tasks of `work_dir` cannot have a PID namespace here, or None when they can: what
        checks enter it with (util-linux's nsenter), and dockyard-init, built now if need be."""
        if not os.path.exists(NSENTER):
            return f"{NSENTER} is missing (util-linux)"
        try:
            hostinit.program(work_dir)
        except ContainerError as error:
            return str(error)
        return None

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
            self.group.create(replace(limits, cpus=None))  # the CPU limit comes with the task (wrap)
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
        """The task in its cgroups, and in a new PID and mount namespace if asked.

        `program` replaces argv[0] as what is executed; `user` (a host user name) is
        switched to after the cgroups are joined (inside the namespaces).
        """
        command = [program or argv[0], *argv[1:]]
        path = (self.spec.env or {}).get("PATH") or os.environ.get("PATH", "")
        found = os.access(command[0], os.X_OK) if "/" in command[0] else shutil.which(command[0], path=path)
        if not found:  # what Popen would have raised without the wrapper; nothing is left behind
            self.destroy()
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])
        joins = [d / "cgroup.procs" for d in self.group.all_dirs()]
        limits = self.group.cpu_settings(self.cpus) if self.cpus else []
        if self.init_program is not None:
            releases = [(path, UNLIMITED[path.name]) for path, _ in limits if path.name in UNLIMITED]
            options = [*(arg for path in joins for arg in ("--join", str(path))),
                       *(arg for path, value in limits for arg in ("--limit", str(path), str(value))),
                       *(arg for path, value in releases for arg in ("--release", str(path), value))]
            if user:
                account = pwd.getpwnam(user)
                groups = os.getgrouplist(user, account.pw_gid)
                options += ["--user", str(account.pw_uid), str(account.pw_gid), ",".join(map(str, groups))]
            return [str(self.init_program), *options, "--", *command]
        script = command[2] if command[:2] == ["/bin/sh", "-c"] and len(command) == 3 and not user else None
        writes = _writes((path, "0") for path in joins) + _writes(limits)
        if script is not None:
            return ["/bin/sh", "-c", writes + script]
        if user:
            command = _switched(user, command)
        return ["/bin/sh", "-c", writes + EXEC, "dockyard-join", *command]

    def annotate(self, info: ExitInfo) -> ExitInfo:
        """The exit with a Mesos limitation reason when a limit, not the task, ended it."""
        return self.watcher.explain(info) if self.watcher is not None else info

    def enter_argv(self, argv: list[str], leader: int, user: str | None = None, cwd: str | None = None) -> list[str]:
        """`argv` run in the task's PID and mount namespaces (its /proc), in `cwd`, as `user` (a host
        user to switch to, or None), for a task whose dockyard-init, `leader`, is alive: a COMMAND
        check sees what its task sees and no more. ContainerError when the namespace is gone."""
        init = self._init(leader)
        if init is None:
            raise ContainerError("the task's PID namespace is gone")
        if user:
            argv = _switched(user, argv)
        return [NSENTER, f"--target={init}", "--pid", "--mount", *([f"--wd={cwd}"] if cwd else []), "--", *argv]

    def signal(self, sig: int) -> None:
        self.group.kill(sig)

    def _init(self, leader: int, timeout: float = 5.0) -> int | None:
        """The host pid of the namespace's init, waiting while the task is still starting. The
        init joins the task's cgroups once the namespace's /proc is mounted, and the task only
        after it: a cgroup with processes but no init is a namespace that has ended. It is the
        child of `leader` that is PID 1 one level down: a task may make PID namespaces of its
        own, and name their first process as it likes, but entering those as root would run
        the check's helpers in a file system of the task's making."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            procs = self.group.procs()
            for pid in procs:
                status = _status(pid)
                if status.get("PPid") == str(leader) and status.get("NSpid", "").split()[1:] == ["1"]:
                    return pid
            if procs:
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


def _status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as fields (empty when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)
    except OSError:
        return {}
