"""The HAProxy a router runs: started in master-worker mode, reloaded seamlessly, checked first.

Files, all in the router's work directory:

    haproxy.cfg           the configuration HAProxy runs
    haproxy.cfg.new       a candidate being checked (`haproxy -c`)
    haproxy.cfg.rejected  the last candidate HAProxy refused, kept for a person to read
    master.sock           the master CLI (`show proc`, `reload`)
    haproxy.sock          the runtime API of the current worker (level admin)
    haproxy.pid, haproxy.log

A reload asks the master to start a new worker on the new file; the stats socket's
`expose-fd listeners` lets the master hand the listening sockets over (`-x`), so no
connection is refused while the old worker finishes what it serves (at most
`hard-stop-after`). A candidate that fails the check never replaces haproxy.cfg; one
that passes the check but fails to load (a port taken) is put back aside, and the
running workers keep serving the previous file.

HAProxy runs in its own session: it outlives the router (a router restart or crash
leaves traffic flowing), and a new router adopts it through master.sock. `stop()` ends it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from scheduler.router.runtime import HAProxyError, Processes, RuntimeApi, ask, show_proc

log = logging.getLogger(__name__)
SOCKET_PATH_MAX = 90  # sun_path is 108 bytes, and HAProxy binds "<path>.<pid>.tmp" first


def socket_dir(work_dir: Path) -> Path:
    """Where HAProxy's sockets live: the work directory, or, when its path is too long for a
    socket address, a private directory named after it in the system's temp dir (the same one
    for every router of that work directory, so a new router finds a running HAProxy)."""
    if len(str(work_dir / "master.sock")) <= SOCKET_PATH_MAX:
        return work_dir
    digest = hashlib.sha256(str(work_dir).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"dockyard-haproxy-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    found = short.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
        raise HAProxyError(f"{short}, the directory for the sockets of {work_dir}, is not private to this user")
    return short


class InvalidConfig(HAProxyError):
    """HAProxy refused a configuration; it is kept at `kept_at`, the running one stays."""

    def __init__(self, message: str, kept_at: Path) -> None:
        super().__init__(message)
        self.kept_at = kept_at


class HAProxy:
    def __init__(self, work_dir: Path | str, binary: str = "haproxy", timeout: float = 10.0) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.binary = binary
        self.timeout = timeout
        self.config = self.work_dir / "haproxy.cfg"
        self.candidate = self.work_dir / "haproxy.cfg.new"
        self.rejected = self.work_dir / "haproxy.cfg.rejected"
        sockets = socket_dir(self.work_dir)
        self.master_socket = sockets / "master.sock"
        self.admin_socket = sockets / "haproxy.sock"
        self.pid_file = self.work_dir / "haproxy.pid"
        self.log_file = self.work_dir / "haproxy.log"
        self.runtime = RuntimeApi(self.admin_socket)
        self.child: subprocess.Popen | None = None

    # -- what runs ------------------------------------------------------------------------

    def processes(self) -> Processes | None:
        """The master's view, or None when no HAProxy of this work directory answers."""
        if not self.master_socket.exists():
            return None
        try:
            return show_proc(self.master_socket, timeout=2.0)
        except HAProxyError:
            return None

    def running(self) -> bool:
        found = self.processes()
        return found is not None and bool(found.workers)

    # -- applying a configuration ------------------------------------------------------

    def check(self, text: str) -> str | None:
        """Why HAProxy refuses `text` (written to haproxy.cfg.new), or None when it accepts it;
        raises HAProxyError when the check itself could not give an answer."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.candidate, text)
        try:
            result = subprocess.run([self.binary, "-c", "-f", str(self.candidate)], capture_output=True,
                                    text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise HAProxyError(f"cannot run {self.binary} -c: {error}") from None
        if result.returncode == 0:
            return None
        if result.returncode < 0:  # killed (the router is stopping): no verdict on the file
            raise HAProxyError(f"{self.binary} -c was stopped by signal {-result.returncode}")
        return (result.stderr or result.stdout or f"exit status {result.returncode}").strip()

    def apply(self, text: str) -> str:
        """Run `text`: start HAProxy on it, or reload the running one. Answers "started" or
        "reloaded"; raises InvalidConfig (the file kept aside, HAProxy untouched) or HAProxyError."""
        problem = self.check(text)
        if problem is not None:
            os.replace(self.candidate, self.rejected)
            raise InvalidConfig(f"HAProxy refused the new configuration (kept in {self.rejected}): "
                                f"{problem[-2000:]}", self.rejected)
        before = self.processes()
        previous = self.config.read_text() if self.config.exists() else None
        os.replace(self.candidate, self.config)
        try:
            if before is None or not before.workers:
                self._start()
                return "started"
            self._reload(before)
            return "reloaded"
        except HAProxyError:
            self.config.replace(self.rejected)
            if previous is not None:
                _write_private(self.config, previous)
            raise

    def _start(self) -> None:
        with open(self.log_file, "ab") as out:
            self.child = subprocess.Popen(
                [self.binary, "-W", "-S", f"{self.master_socket},mode,600", "-f", str(self.config),
                 "-p", str(self.pid_file)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.work_dir,
                start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                raise HAProxyError(f"HAProxy exited at start (status {self.child.returncode}): {self._log_tail()}")
            if self.running() and self.runtime.alive():
                return
            time.sleep(0.05)
        raise HAProxyError(f"HAProxy did not start within {self.timeout:g} s: {self._log_tail()}")

    def _reload(self, before: Processes) -> None:
        try:
            ask(self.master_socket, "reload", timeout=self.timeout)
        except HAProxyError as error:
            raise HAProxyError(f"HAProxy's master did not take the reload: {error}") from None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            now = self.processes()
            if now is not None and now.reloads > before.reloads:
                if now.failed > before.failed:
                    raise HAProxyError(f"HAProxy could not load the new configuration; the previous one still "
                                       f"serves: {self._log_tail()}")
                if now.workers and not set(now.workers) & set(before.workers) and self.runtime.alive():
                    return
            time.sleep(0.02)
        raise HAProxyError(f"HAProxy's reload did not finish within {self.timeout:g} s: {self._log_tail()}")

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- stopping -------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop this work directory's HAProxy (ours or adopted); False when none ran. A private
        socket directory (`socket_dir`) goes with it."""
        try:
            return self._stop(timeout)
        finally:
            sockets = self.master_socket.parent
            if sockets != self.work_dir:
                shutil.rmtree(sockets, ignore_errors=True)

    def _stop(self, timeout: float) -> bool:
        found = self.processes()
        pid = found.master if found else None
        if pid is None and self.child is not None and self.child.poll() is None:
            pid = self.child.pid
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.child is not None and self.child.pid == pid:
                if self.child.poll() is not None:
                    return True
            elif not _alive(pid):
                return True
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        if self.child is not None and self.child.pid == pid:
            self.child.wait(5)
        return True


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie its parent has not reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _write_private(path: Path, text: str) -> None:
    """Mode 0600 from the start: the configuration may hold the stats page's credentials."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
