"""The plain host launcher: a task is a process group on the host, nothing more.

Used for command tasks without an image. The task gets its own session (so its
process group can be signalled as one), the final environment, the sandbox as
its working directory and `stdout`/`stderr` files there. Mesos CommandInfo
semantics: `shell` (default true) runs `/bin/sh -c value`; otherwise `value` is
the program and `arguments` the full argv. Standard library only: this module is
on the executor's start-up path.
"""
from __future__ import annotations

import functools
import logging
import os
import pwd
import select
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from executor.containers.gpus import GpuClaim, claim as claim_gpus
from executor.launcher import ExitInfo, LaunchSpec, command_env, exit_info
from framework.isolation import Isolators
from framework.proctree import descendants, statistics

log = logging.getLogger(__name__)

# Launches under way at once. A burst of tasks started all together makes every one of
# them late (each fork, exec and cgroup creation competes with all the others); a few at
# a time, in arrival order, starts the first ones at once and the last ones no later.
LAUNCH_SLOTS = threading.BoundedSemaphore(max(2, 2 * (os.cpu_count() or 1)))


def command_argv(command: dict) -> tuple[str, list[str]]:
    """(program, argv) as Mesos execs a CommandInfo: argv[0] comes from `arguments`."""
    value = command.get("value") or ""
    if command.get("shell", True):
        return "/bin/sh", ["sh", "-c", value]
    if not value:
        raise ValueError("CommandInfo with shell=false needs a value")
    return value, list(command.get("arguments") or [value])


class HostProcess:
    """A running host task: its leader's Popen plus the process group it leads."""

    def __init__(self, popen: subprocess.Popen, isolation=None, gpu_claim: GpuClaim | None = None) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.isolation = isolation  # executor.containers.hostiso.HostIsolation, or None
        self.gpu_claim = gpu_claim  # the agent's GPUs this task holds until it is destroyed
        self._exit: ExitInfo | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def wait(self, timeout: float | None = None) -> ExitInfo | None:
        if self._exit is not None:
            return self._exit
        if self._pidfd is not None and timeout is not None:
            ready, _, _ = select.select([self._pidfd], [], [], max(timeout, 0.0))
            if not ready:
                return None
        try:
            status = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._exit = exit_info(status)
        if self.isolation is not None:  # an OOM or disk kill becomes a Mesos limitation reason
            self._exit = self.isolation.annotate(self._exit)
        self._close_pidfd()
        return self._exit

    def signal(self, sig: int) -> None:
        """Signal the process group, and with SIGKILL every descendant that left it."""
        tree = descendants(self.pid) if sig == signal.SIGKILL and self._exit is None else []
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in tree:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if self.isolation is not None:
            self.isolation.signal(sig)  # everything in the task's cgroup

    def enter_argv(self, argv: list[str], user: str | None = None, cwd: str | None = None) -> list[str] | None:
        """How to run `argv` beside the task inside its PID and mount namespaces, as `user`
        (a COMMAND health check); None when the task has no namespace of its own."""
        if self.isolation is None or not self.isolation.pid_namespace:
            return None
        if self._exit is not None or self.popen.poll() is not None:
            raise ProcessLookupError(f"task process {self.pid} has ended")
        return self.isolation.enter_argv(argv, self.pid, user if identity(user) else None, cwd)

    def stats(self) -> dict:
        if self.isolation is not None:
            return self.isolation.stats()
        pids = [self.pid, *descendants(self.pid)] if self._exit is None else []
        return statistics(pids)

    def destroy(self) -> None:
        """Kill whatever is left of the task's processes; reap the leader."""
        if self.isolation is None or self._exit is None:
            # An isolated task that has exited took its PID namespace with it, and the
            # isolation's teardown kills the cgroup anyway: no second walk of it here.
            self.signal(signal.SIGKILL)
        if self._exit is None:
            try:
                self._exit = exit_info(self.popen.wait(10))
            except subprocess.TimeoutExpired:
                pass
        self._close_pidfd()
        if self.isolation is not None:
            self.isolation.destroy()  # cgroup and record
        if self.gpu_claim is not None:
            self.gpu_claim.release()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def identity(user: str | None) -> dict:
    """Popen's arguments that start a process as `user`, with its group and supplementary groups,
    never root's; none when there is nothing to switch (no user, root, or not root ourselves).
    ValueError when the user does not exist here."""
    if not user or os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"user '{user}' does not exist on this agent") from None
    if account.pw_uid == 0:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid,
            "extra_groups": os.getgrouplist(user, account.pw_gid)}


def as_user(user: str, sandbox: Path) -> dict:
    """`identity(user)`; a sandbox the executor made (owned by root) is given to that user, mode
    0750, as the agent gives an executor's."""
    kwargs = identity(user)
    if kwargs and sandbox.stat().st_uid == 0:
        os.chown(sandbox, kwargs["user"], kwargs["group"])
        os.chmod(sandbox, 0o750)
    return kwargs


@contextmanager
def unblocked_signals() -> Iterator[None]:
    """Fork with an empty signal mask: a task must not inherit signals its launcher blocked.

    The mask is per thread and survives exec, and no shell can unblock a signal, so
    it is cleared in the launching thread around the fork and then put back.
    """
    previous = signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class HostLauncher:
    """Start a task as a host process group in its sandbox."""

    def launch(self, spec: LaunchSpec) -> HostProcess:
        with LAUNCH_SLOTS:
            return self._launch(spec)

    def _launch(self, spec: LaunchSpec) -> HostProcess:
        if any((v.get("source") or {}).get("type") == "SECRET" for v in (spec.container or {}).get("volumes") or []):
            raise ValueError("a secret volume needs a container image (file based secrets are only supported by UCR)")
        spec.sandbox.mkdir(parents=True, exist_ok=True)
        program, argv = command_argv(spec.command)
        env = command_env(spec.env, spec.command)
        user = spec.user or spec.command.get("user")
        switch = bool(user) and os.geteuid() == 0 and user != pwd.getpwuid(0).pw_name
        kwargs = as_user(user, spec.sandbox) if switch else {}
        isolation = None
        gpu_claim = claim_gpus(spec.work_dir, float((spec.resources or {}).get("gpus", 0.0)))
        if gpu_claim is not None:
            env.update(gpu_claim.environment())
        isolators = Isolators.from_env()
        popen = None
        try:
            if isolators.cgroups:
                from executor.containers.hostiso import HostIsolation

                if HostIsolation.available():  # without root or cgroups: unisolated
                    namespace = isolators.pid_namespace and _namespace_possible(Path(spec.work_dir))
                    isolation = HostIsolation.create(spec, namespace,
                                                     user=user if switch else None, gpu_claim=gpu_claim)
                    argv, program = isolation.wrap(argv, program, user if switch else None), None
                    kwargs = {}  # the wrapper switches (setpriv, dockyard-init), once the cgroups are joined
            with open(Path(spec.sandbox) / "stdout", "ab") as out, \
                    open(Path(spec.sandbox) / "stderr", "ab") as err:
                with unblocked_signals():
                    popen = subprocess.Popen(
                        argv, executable=program, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                        cwd=str(spec.sandbox), start_new_session=True, close_fds=True, **kwargs,
                    )
        except BaseException:
            if isolation is not None:  # no process, cgroup or record outlives a failed launch
                if popen is not None:
                    popen.kill()
                    popen.wait()
                isolation.destroy()
            if gpu_claim is not None:
                gpu_claim.release()
            raise
        return HostProcess(popen, isolation, gpu_claim)


@functools.lru_cache(maxsize=None)
def _namespace_possible(work_dir: Path) -> bool:
    """Whether this host can give a task of `work_dir` a PID namespace (building what it takes);
    said once in the log when not, since its tasks then share the host's /proc."""
    from executor.containers.hostiso import HostIsolation

    problem = HostIsolation.namespace_unavailable(work_dir)
    if problem:
        log.warning("no PID namespace for host tasks: %s; they share the host's /proc, where a task can read "
                    "the environment of another of its user", problem)
    return not problem
