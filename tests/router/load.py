"""A steady HTTP client for the router's tests and its benchmark: every answer and failure counted."""
from __future__ import annotations

import base64
import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


def get(port: int, path: str = "/", host: str | None = None, timeout: float = 5.0,
        auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """One request on a new connection (with HTTP Basic `auth` when given): (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Host": host} if host else {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


@dataclass
class SteadyLoad:
    """About `rate` requests a second, each on a new connection (so a refused connection
    shows), until stopped: the answers by (status, body), when each 200 body was first
    seen (which instance answered, for servers that name themselves), every failure, and
    how long each request took (seconds)."""

    port: int
    rate: float = 100.0
    host: str | None = None
    answers: Counter = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)  # body -> time.time() of its first 200
    failures: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                status, body = get(self.port, host=self.host)
                self.answers[(status, body if status == 200 else "")] += 1
                if status == 200:
                    self.first_seen.setdefault(body, time.time())
                else:
                    self.failures.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(f"{type(error).__name__}: {error}")
            self.durations.append(time.monotonic() - started)
            next_at += interval
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> "SteadyLoad":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(15)

    @property
    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)
