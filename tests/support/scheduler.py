"""A `dockyard scheduler` process on loopback, and a small JSON client for its API.

Shared by the jobs and services tests so each starts the scheduler the same way
(one place to change its flags) and talks to it the same way.

    with SchedulerProcess.start(cluster.master_address, workdir, clock=True) as scheduler:
        scheduler.call("POST", "/v1/jobs", {...})
        scheduler.set_clock_offset(60)    # only with clock=True: the hidden --clock-file
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

from .procs import Process, dockyard, free_port, http_ok, wait_for

S = TypeVar("S", bound="SchedulerProcess")
T = TypeVar("T")


class SchedulerProcess:
    """One scheduler process subscribed to a master; stopped (whole process group) by `stop()`."""

    def __init__(self, url: str, process: Process, workdir: Path, clock_file: Path | None = None) -> None:
        self.url = url
        self.process = process
        self.workdir = workdir
        self.clock_file = clock_file

    @classmethod
    def start(cls: type[S], master: str, workdir: Path, *extra: str, clock: bool = False,
              log_name: str = "scheduler.log") -> S:
        """Start it with its data under `workdir` and wait until it has subscribed."""
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        argv = ["scheduler", "--master", master, "--port", str(port), "--data-dir", str(workdir / "data"),
                *extra]
        clock_file = None
        if clock:
            clock_file = workdir / "clock-offset"
            clock_file.write_text("0")
            argv += ["--clock-file", str(clock_file)]
        process = Process(dockyard(*argv), workdir / log_name)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: http_ok(f"{url}/health"), timeout=30, what="scheduler subscribed")
        except TimeoutError as error:
            process.stop()
            raise TimeoutError(f"{error}\n{process.output()[-3000:]}") from None
        return cls(url, process, workdir, clock_file)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload.strip() else None

    def status(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, JSON body) without raising on 4xx/5xx."""
        try:
            return 200, self.call(method, path, body)
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, (json.loads(raw) if raw.strip() else None)

    def wait_until(self, look: Callable[[], T], done: Callable[[T], bool], what: str,
                   timeout: float = 30) -> T:
        """Poll `look()` until `done` holds; on timeout fail with the last look and the scheduler's log."""
        def ready() -> T | None:
            value = look()
            return value if done(value) else None
        try:
            return wait_for(ready, timeout=timeout, what=what)  # type: ignore[return-value]
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {look()}\n{self.process.output()[-4000:]}") from None

    def set_clock_offset(self, seconds: float) -> None:
        """Move the scheduler's clock (real time + offset); needs `clock=True`."""
        if self.clock_file is None:
            raise RuntimeError("started without clock=True: no --clock-file to move")
        self.clock_file.write_text(repr(seconds))

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
