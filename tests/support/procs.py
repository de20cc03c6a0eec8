"""Start, wait for and stop real child processes on loopback."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[2]


def worker_ports(resources: str) -> str:
    """`resources` with its task ports in 31000-32767 moved to this pytest-xdist worker's own
    block (worker N: 1000 N lower), so two workers' clusters never hand a task the same host
    port. Unchanged outside xdist and for worker 0."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    shift = 1000 * int(worker[2:]) if worker[2:].isdigit() else 0
    if not shift:
        return resources

    def moved(match: re.Match) -> str:
        low, high = int(match.group(1)), int(match.group(2))
        return f"{low - shift}-{high - shift}" if 31000 <= low and high <= 32767 else match.group(0)

    return re.sub(r"(?<=[\[,])(\d+)-(\d+)", moved, resources) if "ports:" in resources else resources


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05,
             what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # the condition may fail until the service is up
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def http_ok(url: str) -> bool:
    """A plain-HTTP, unauthenticated 2xx (open endpoints of processes started by hand);
    tests/support/security.py `Endpoint.ok` is the same for a secured server."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Process:
    """A child process with its output in a log file, stopped for sure at the end."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")
        merged = dict(os.environ)
        merged.setdefault("PYTHONPATH", str(REPO))
        if env:
            merged.update(env)
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=merged, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """`kill -9` this process alone (its children are left, as in a real crash)."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL of the whole process group after `timeout`."""
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def dockyard(*args: str) -> list[str]:
    """argv for running the dockyard CLI from this checkout with the current interpreter."""
    return [sys.executable, str(REPO / "dockyard.py"), *args]


def raw_server(answer: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    """A one-shot HTTP peer on loopback for answers no real server gives (garbled, cut,
    odd framings): accept one connection, read one request head and body, reply with `answer`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            peer, _ = listener.accept()
            with peer:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += peer.recv(4096)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += peer.recv(4096)
                answer(peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread
