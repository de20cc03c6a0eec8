"""Readiness probes off the services thread: a few workers GET, the services loop reads.

Marathon runs readiness checks from the scheduler. A probe can take up to its
`timeoutSeconds`; run on the services thread, one slow endpoint would stall every
app's deployment. Here the loop only `submit`s a probe (at most one in flight per
task) and reads finished `results`; the workers call `on_result` (the loop's wake)
when one lands.
"""
from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

WORKERS = 16  # probes in flight at once; each is bounded by its own timeout


@dataclass(frozen=True)
class Probe:
    url: str
    timeout: float
    ready_codes: tuple[int, ...] = (200,)


def probe(check: Probe) -> tuple[bool, str]:
    """(ready, what happened) for one GET."""
    request = urllib.request.Request(check.url, headers={"User-Agent": "dockyard-readiness"})
    try:
        with urllib.request.urlopen(request, timeout=check.timeout) as response:
            return response.status in check.ready_codes, f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return error.code in check.ready_codes, f"HTTP {error.code}"
    except (OSError, ValueError) as error:  # refused, timed out, bad URL: not ready, and why
        return False, f"{type(error).__name__}: {error}"


class ReadinessProber:
    """At most one probe in flight per task; results wait until the loop takes them."""

    def __init__(self, on_result: Callable[[], None] = lambda: None, workers: int = WORKERS,
                 run: Callable[[Probe], tuple[bool, str]] = probe) -> None:
        self.on_result = on_result
        self.run = run
        self.lock = threading.Lock()
        self.in_flight: set[str] = set()
        self.results: dict[str, tuple[bool, str]] = {}
        self.workers = workers
        self.threads: list[threading.Thread] = []
        self.queue: "queue.Queue[tuple[str, Probe] | None]" = queue.Queue()
        self.stopped = False

    def submit(self, task_id: str, check: Probe) -> bool:
        """Start a probe of `task_id` unless one is running; True if started."""
        with self.lock:
            if self.stopped or task_id in self.in_flight:
                return False
            self.in_flight.add(task_id)
            # Daemon workers, started as needed: a probe hanging until its timeout
            # never holds up the scheduler's exit.
            if len(self.threads) < min(self.workers, len(self.in_flight)):
                thread = threading.Thread(target=self._work, name=f"readiness-{len(self.threads)}", daemon=True)
                self.threads.append(thread)
                thread.start()
        self.queue.put((task_id, check))
        return True

    def busy(self, task_id: str) -> bool:
        with self.lock:
            return task_id in self.in_flight

    def take(self, task_id: str) -> tuple[bool, str] | None:
        """The finished probe's (ready, detail), once; None while none finished."""
        with self.lock:
            return self.results.pop(task_id, None)

    def forget(self, task_id: str) -> None:
        """The task ended: drop its result (a probe still running lands and is dropped later)."""
        with self.lock:
            self.results.pop(task_id, None)

    def retain(self, task_ids: set[str]) -> None:
        """Drop results of tasks not in `task_ids` (probes that landed after their task ended)."""
        with self.lock:
            for task_id in [t for t in self.results if t not in task_ids]:
                del self.results[task_id]

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            count = len(self.threads)
        for _ in range(count):
            self.queue.put(None)

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            task_id, check = item
            try:
                result = self.run(check)
            except Exception as error:  # a bug in a probe must not leave the task "in flight"
                log.exception("readiness probe of %s failed", task_id)
                result = (False, f"{type(error).__name__}: {error}")
            with self.lock:
                self.in_flight.discard(task_id)
                self.results[task_id] = result
            try:
                self.on_result()
            except Exception:
                log.exception("readiness result callback failed")
