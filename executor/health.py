"""Health checks and Mesos checks run next to the task: HTTP, TCP and COMMAND (standard library).

A check is a callable returning `(healthy, reason)`; an exception it raises counts
as unhealthy with the exception as the reason. `HealthChecker` runs one check on
its own thread (grace period, interval, timeout, consecutive failures), reports
every change of health through `report(healthy, reason)` (the executor turns it
into TASK_RUNNING with REASON_TASK_HEALTH_CHECK_STATUS_UPDATED), and, as a link
in the task runner's status-checker chain, answers a kill `Verdict` once the
failures reach the limit (0 = never kill).

Failures during the grace period do not count, until the first success ends it
(Mesos's rule: a slow starter is not killed for being slow).

A Mesos check (TaskInfo.check, Marathon's app `check`) only reports: `MesosChecker`
runs it after its delay, every interval, and sends each new result as a
TASK_RUNNING status with `check_status` (REASON_TASK_CHECK_STATUS_UPDATED), as
Mesos's checker does: an HTTP status code, whether a TCP connection opened, a
command's exit code; no result when it could not tell (a timeout, no answer).

A COMMAND check of a task with an image runs inside the task's container (`runc
exec`), as Mesos runs it; of a command task, on the host in its sandbox, inside the
task's PID and mount namespaces when it has them (the default), so a check reads no
more of /proc than its task. An HTTP or TCP check of a container with its own network
(`none`: loopback only) probes from inside that network namespace, as Mesos's checker
enters the task's; with host networking the host's loopback is the task's.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from executor.task_runner import KILLED, RUNNING, Verdict

log = logging.getLogger(__name__)

Check = Callable[[], "tuple[bool, str]"]
HEALTH_REASON = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"


def http_check(port: int, path: str = "/", scheme: str = "http", timeout: float = 20.0,
               host: str = "127.0.0.1") -> Check:
    """Healthy on a 2xx or 3xx answer within `timeout` seconds."""
    url = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"

    def check() -> tuple[bool, str]:
        request = urllib.request.Request(url, headers={"User-Agent": "dockyard-health"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return 200 <= response.status < 400, f"HTTP {response.status} from {url}"
        except urllib.error.HTTPError as error:
            return 300 <= error.code < 400, f"HTTP {error.code} from {url}"
    return check


def tcp_check(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> Check:
    """Healthy when a TCP connection opens within `timeout` seconds."""
    def check() -> tuple[bool, str]:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"connected to {host}:{port}"
    return check


def command_check(command: str, env: dict[str, str] | None = None, timeout: float = 20.0,
                  cwd: str | None = None, user: str | None = None, task: Callable[[], Any] | None = None) -> Check:
    """Healthy when the shell command exits 0 within `timeout` seconds; run as the task's `user`,
    as Mesos runs a check: a spec's check may do no more than its task.

    With `task` (the running host task, anything with `enter_argv`) the command runs inside
    the task's PID and mount namespaces when it has them, so the check sees the task's
    processes and /proc, never the host's. On a timeout its whole process group is killed.
    """
    from executor.host import identity

    def check() -> tuple[bool, str]:
        argv, switch = ["/bin/sh", "-c", command], identity(user)
        target = task() if task is not None else None
        entered = target.enter_argv(argv, user, cwd) if hasattr(target, "enter_argv") else None
        if entered is not None:
            argv, switch = entered, {}  # nsenter joins as root, then setpriv switches
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True, **switch)
        try:
            _, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.communicate()
            return False, f"command timed out after {timeout:g}s"
        if child.returncode == 0:
            return True, "command exited 0"
        error = stderr.decode(errors="replace").strip()[-200:]
        return False, f"command exited {child.returncode}" + (f": {error}" if error else "")
    return check


def container_command_check(command: str, container: Callable[[], Any], env: dict[str, str] | None = None,
                            timeout: float = 20.0) -> Check:
    """Healthy when the shell command exits 0 inside the task's container, as Mesos runs a
    COMMAND check: `runtime exec` joins its namespaces, root filesystem and cgroup, with the
    task's user, cwd and environment (its config.json) plus `env`, the check's own variables.

    `container()` answers the task's running container (anything with `exec_argv`) when the
    check runs; on a timeout the command is killed inside the container too.
    """
    def check() -> tuple[bool, str]:
        target = container()
        if target is None or not hasattr(target, "exec_argv"):
            return False, "the task's container is not running"
        with tempfile.TemporaryDirectory(prefix="dockyard-check-") as scratch:
            pid_file = Path(scratch) / "pid"
            argv = target.exec_argv(["/bin/sh", "-c", command], env=env or {}, pid_file=pid_file)
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
            try:
                _, stderr = child.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_from_pid_file(pid_file)  # killing `runtime exec` alone leaves the command
                child.kill()
                child.communicate()
                return False, f"command timed out after {timeout:g}s"
        if child.returncode == 0:
            return True, "command exited 0"
        error = stderr.decode(errors="replace").strip()[-200:]
        return False, f"command exited {child.returncode}" + (f": {error}" if error else "")
    return check


CLONE_NEWNET = 0x40000000


def in_network_of(check: Check, pid: Callable[[], int | None]) -> Check:
    """`check` run from inside the network namespace of process `pid()` (the container's).

    The namespace is per thread: the calling thread (a HealthChecker's own) enters it at
    its first call and stays; sockets it opens from then on belong to that namespace.
    """
    import ctypes

    entered = threading.local()  # per thread, and gone with it (thread ids are reused)
    libc = ctypes.CDLL(None, use_errno=True)

    def inside() -> tuple[bool, str]:
        if not getattr(entered, "yes", False):
            target = pid()
            if target is None:
                return False, "the container is not running yet"
            fd = os.open(f"/proc/{target}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    return False, f"cannot enter the container's network: {os.strerror(error)}"
            finally:
                os.close(fd)
            entered.yes = True
        return check()

    return inside


def _kill_from_pid_file(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class HealthChecker:
    """Runs one check on a schedule; a StatusChecker for the task runner's chain."""

    def __init__(self, check: Check, *, report: Callable[[bool, str], None],
                 grace_seconds: float = 300.0, interval_seconds: float = 60.0,
                 delay_seconds: float = 0.0, max_failures: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.check = check
        self.report = report
        self.grace_seconds = grace_seconds
        self.interval_seconds = max(interval_seconds, 0.05)
        self.delay_seconds = delay_seconds
        self.max_failures = max_failures
        self.clock = clock
        self.started_at = clock()
        self.healthy: bool | None = None
        self.failures = 0  # consecutive, counted once the grace period is over
        self.in_grace = True
        self.last_reason = ""
        self.checked = threading.Event()  # set after every check (tests wait on it)
        self._verdict: Verdict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the StatusChecker interface -----------------------------------------------------
    def status(self) -> Verdict | None:
        if self._thread is None:  # the runner polls once the task runs: start checking then
            self.start()
        return self._verdict

    def stop(self) -> None:
        self._stop.set()

    # -- running ----------------------------------------------------------------------------
    def start(self) -> "HealthChecker":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="health-check", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        if self._stop.wait(self.delay_seconds):
            return
        while not self._stop.is_set():
            self.run_once()
            if self._verdict is not None:
                return
            self._stop.wait(self.interval_seconds)

    def run_once(self) -> None:
        """One check: update counters, report a change, decide a kill."""
        try:
            healthy, reason = self.check()
        except Exception as error:  # a check that blows up says "unhealthy", with why
            healthy, reason = False, f"{type(error).__name__}: {error}"
        now = self.clock()
        self.last_reason = reason
        if healthy:
            self.in_grace = False
            self.failures = 0
        elif self.in_grace and now - self.started_at < self.grace_seconds:
            pass  # still starting: does not count
        else:
            self.in_grace = False
            self.failures += 1
        if healthy != self.healthy and (healthy or not self.in_grace):
            self.healthy = healthy
            try:
                self.report(healthy, reason)
            except Exception:
                log.exception("reporting health failed")
        if not healthy and self.max_failures and self.failures >= self.max_failures:
            self._verdict = Verdict(KILLED, f"Task is unhealthy after {self.failures} failed checks: {reason}",
                                    None, False)
        self.checked.set()


def build_check(health_check: dict[str, Any], ports: list[int], env: dict[str, str] | None = None,
                cwd: str | None = None, container: Callable[[], Any] | None = None,
                network_pid: Callable[[], int | None] | None = None, user: str | None = None,
                task: Callable[[], Any] | None = None) -> Check:
    """A Mesos HealthCheck JSON as a check callable (`port_index` resolved against `ports`).

    With `container` (the task runs in one; see `container_command_check`) a COMMAND check
    runs inside it; otherwise on the host, in `cwd` with `env`, as `user`, next to the task
    `task()` and in its namespaces (see `command_check`). With `network_pid` (the container
    has a network of its own) HTTP and TCP checks probe from inside the network namespace
    of that process.
    """
    kind = str(health_check.get("type", "")).upper()
    timeout = float(health_check.get("timeout_seconds", 20.0))

    def port_of(target: dict[str, Any]) -> int:
        port = int(target.get("port") or 0)
        if not port:
            index = int(target.get("port_index", 0))
            if index >= len(ports):
                raise ValueError(f"health check wants port index {index}, the task has {len(ports)} port(s)")
            port = ports[index]
        return port

    if kind in ("HTTP", "TCP"):
        if kind == "HTTP":
            target = health_check.get("http") or {}
            probe = http_check(port_of(target), target.get("path", "/"), target.get("scheme", "http"), timeout)
        else:
            probe = tcp_check(port_of(health_check.get("tcp") or {}), timeout)
        if network_pid is not None:
            return in_network_of(probe, network_pid)
        return probe
    if kind == "COMMAND":
        command = health_check.get("command") or {}
        own = {item["name"]: str(item.get("value", ""))
               for item in (command.get("environment") or {}).get("variables") or []}
        if container is not None:
            return container_command_check(command.get("value", "true"), container, own, timeout)
        return command_check(command.get("value", "true"), {**(env or os.environ), **own}, timeout, cwd, user, task)
    raise ValueError(f"unsupported health check type {kind!r}")


def _where_checks_run(runner: Any) -> dict[str, Any]:
    """Where a task's checks run (the arguments `build_check` and `build_mesos_check` share): a
    task with an image has its COMMAND checks run in its container (runner.process, once started),
    its HTTP and TCP checks in its network when it has one of its own."""
    from executor.containers.launcher import network_mode
    from framework.isolation import has_image

    spec = runner.spec
    container = (lambda: runner.process) if has_image(spec.container) else None
    network_pid = None
    if container is not None and network_mode(spec.container) == "none":
        network_pid = lambda: getattr(runner.process, "pid", 0) or None  # noqa: E731
    return {"ports": list(spec.ports), "env": dict(spec.env), "cwd": str(spec.sandbox), "container": container,
            "network_pid": network_pid, "user": getattr(spec, "user", None) or spec.command.get("user"),
            "task": None if container is not None else (lambda: runner.process)}


def checkers_for(health_check: dict[str, Any] | None, runner: Any) -> list[HealthChecker]:
    """The status checkers a task's HealthCheck asks for, reporting through the runner."""
    if not health_check:
        return []
    check = build_check(health_check, **_where_checks_run(runner))

    def report(healthy: bool, reason: str) -> None:
        if runner.state == RUNNING:
            runner.notify(runner, RUNNING, reason, HEALTH_REASON, healthy)

    return [HealthChecker(
        check, report=report,
        grace_seconds=float(health_check.get("grace_period_seconds", 10.0)),
        interval_seconds=float(health_check.get("interval_seconds", 10.0)),
        delay_seconds=float(health_check.get("delay_seconds", 0.0)),
        max_failures=int(health_check.get("consecutive_failures", 3)),
    )]


# -- Mesos checks (CheckInfo): results reported, never a kill -------------------------------------

CHECK_REASON = "REASON_TASK_CHECK_STATUS_UPDATED"


def http_status(port: int, path: str = "/", timeout: float = 20.0, host: str = "127.0.0.1") -> tuple[bool, Any]:
    """Mesos's HTTP check result: the status code of any answer; none when nothing answered."""
    url = f"http://{host}:{port}{path if path.startswith('/') else '/' + path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "dockyard-check"}),
                                    timeout=timeout) as response:
            return True, {"status_code": response.status}
    except urllib.error.HTTPError as error:
        return True, {"status_code": error.code}
    except OSError:
        return True, {}


def tcp_status(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> tuple[bool, Any]:
    """Mesos's TCP check result: whether a connection opened."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, {"succeeded": True}
    except OSError:
        return True, {"succeeded": False}


def _exit_code(reason: str, healthy: bool) -> dict[str, Any]:
    """A COMMAND check's result from `command_check`'s answer: its exit code; none on a timeout."""
    if healthy:
        return {"exit_code": 0}
    found = re.match(r"command exited (-?\d+)", reason)
    return {"exit_code": int(found.group(1))} if found else {}


def build_mesos_check(check: dict[str, Any], ports: list[int], env: dict[str, str] | None = None,
                      cwd: str | None = None, container: Callable[[], Any] | None = None,
                      network_pid: Callable[[], int | None] | None = None, user: str | None = None,
                      task: Callable[[], Any] | None = None) -> Callable[[], dict[str, Any]]:
    """A Mesos CheckInfo JSON as a callable answering its CheckStatusInfo, run where `build_check`
    runs the same kind of health check. A port given as `port_index` is resolved against `ports`."""
    kind = str(check.get("type", "")).upper()
    timeout = float(check.get("timeout_seconds", 20.0))
    probe: Callable[[], tuple[bool, Any]]
    if kind in ("HTTP", "TCP"):
        target = check.get(kind.lower()) or {}
        port = int(target.get("port") or 0) or (ports[int(target.get("port_index", 0))]
                                               if int(target.get("port_index", 0)) < len(ports) else 0)
        if kind == "HTTP":
            probe = lambda: http_status(port, target.get("path", "/"), timeout)  # noqa: E731
        else:
            probe = lambda: tcp_status(port, timeout)  # noqa: E731
        if network_pid is not None:
            probe = in_network_of(probe, network_pid)
    elif kind == "COMMAND":
        info = (check.get("command") or {}).get("command") or {}
        line = info.get("value", "true") if info.get("shell", True) else shlex.join(info.get("arguments") or [])
        own = {v["name"]: str(v.get("value", "")) for v in (info.get("environment") or {}).get("variables") or []}
        run = (container_command_check(line, container, own, timeout) if container is not None
               else command_check(line, {**(env or os.environ), **own}, timeout, cwd, user, task))

        def exit_code() -> tuple[bool, Any]:
            healthy, reason = run()
            return True, _exit_code(reason, healthy)
        probe = exit_code
    else:
        raise ValueError(f"unsupported check type {kind!r}")

    def status() -> dict[str, Any]:
        try:
            _, result = probe()
        except Exception:  # a check that cannot run has no result
            result = {}
        return {"type": kind, kind.lower(): result if isinstance(result, dict) else {}}
    return status


class MesosChecker:
    """Runs a Mesos check on its own thread (delay, then every interval) and reports each change
    of its result, as Mesos's checker does; a link of the runner's chain that never kills."""

    def __init__(self, check: Callable[[], dict[str, Any]], *, report: Callable[[dict[str, Any]], None],
                 delay_seconds: float = 15.0, interval_seconds: float = 10.0) -> None:
        self.check = check
        self.report = report
        self.delay_seconds = delay_seconds
        self.interval_seconds = max(interval_seconds, 0.05)
        self.last: dict[str, Any] | None = None
        self.checked = threading.Event()  # set after every check (tests wait on it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self) -> Verdict | None:
        if self._thread is None:  # the runner polls once the task runs: start checking then
            self._thread = threading.Thread(target=self._loop, name="check", daemon=True)
            self._thread.start()
        return None

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        if self._stop.wait(self.delay_seconds):
            return
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval_seconds)

    def run_once(self) -> None:
        result = self.check()
        if result != self.last:
            self.last = result
            try:
                self.report(result)
            except Exception:
                log.exception("reporting a check result failed")
        self.checked.set()


def check_checkers(check: dict[str, Any] | None, runner: Any) -> list[MesosChecker]:
    """The checker a task's Mesos CheckInfo asks for, reporting through the runner as TASK_RUNNING
    with `check_status` (REASON_TASK_CHECK_STATUS_UPDATED)."""
    if not check:
        return []
    probe = build_mesos_check(check, **_where_checks_run(runner))

    def report(result: dict[str, Any]) -> None:
        if runner.state == RUNNING:
            runner.notify(runner, RUNNING, None, CHECK_REASON, None, check_status=result)

    return [MesosChecker(probe, report=report, delay_seconds=float(check.get("delay_seconds", 15.0)),
                         interval_seconds=float(check.get("interval_seconds", 10.0)))]
