"""A steady HTTP client for the router's tests and its benchmark: every answer and failure counted."""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


def get(port: int, path: str = "/", host: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """One request on a new connection: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


@dataclass
class SteadyLoad:
    """About `rate` requests a second, each on a new connection (so a refused connection
    shows), until stopped: the answers by (status, body), when each 200 body was first
    seen (which instance answered, for servers that name themselves), and every failure."""

    port: int
    rate: float = 100.0
    host: str | None = None
    answers: Counter = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)  # body -> time.time() of its first 200
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stopping.is_set():
            try:
                status, body = get(self.port, host=self.host)
                self.answers[(status, body if status == 200 else "")] += 1
                if status == 200:
                    self.first_seen.setdefault(body, time.time())
                else:
                    self.failures.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(f"{type(error).__name__}: {error}")
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
