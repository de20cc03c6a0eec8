"""Drain before kill: an instance leaves every router's rotation before the scheduler kills it.

A kill the scheduler plans (a rolling upgrade or restart replacing an instance, a
scale-down, an app deleted, a task killed through the API) first marks the running
instance draining: its task view says `"draining": true` (to clients that ask for
`embed=apps.draining`), and an `instance_changed_event` with `"draining": true` goes out
on `/v2/events`. Each router following the scheduler takes the instance's servers out
(HAProxy's DRAIN state: no new requests, those in flight finish) and reports which
instances it still sends or holds requests for (`POST /dockyard/v1/routers`, `report`).
The kill goes out once every router present has reported, after the drain began,
that it no longer serves the instance, or when the drain's time is up, whichever
comes first: never later than `dockyard.drainSeconds` (default 5 s).

A router is present while it keeps reporting (each report says when the next comes
at the latest). With no router present the kill goes out at once, unless the app
names `dockyard.drainSeconds` itself: then it always waits that long, for routers
that do not report (marathon-lb reads the same `draining` flag).

Nothing here blocks: the service manager asks `over(now)` on each tick and kills what
it answers. No I/O; the clock is the caller's; a lock guards what the API thread
(reports) and the service thread (drains) share.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from framework.errors import SpecError

DRAIN_LABEL = "dockyard.drainSeconds"
DEFAULT_SECONDS = 5.0
MAX_SECONDS = 300.0
PRESENCE_SLACK = 5.0  # a router is gone once it missed two reports and this long
MAX_REPORT_INTERVAL = 3600.0
MAX_ROUTER_ID = 256


def label_problems(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The drain label, when given, is a number of seconds from 0 (no drain) to MAX_SECONDS."""
    if DRAIN_LABEL not in labels:
        return []
    if _seconds(labels[DRAIN_LABEL]) is None:
        return [{"path": f"/labels/{DRAIN_LABEL}",
                 "errors": [f"'{labels[DRAIN_LABEL][:40]}' is not a number of seconds from 0 to {MAX_SECONDS:g}"]}]
    return []


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and 0 <= value <= MAX_SECONDS else None


def drain_seconds(labels: Mapping[str, str]) -> tuple[float, bool]:
    """(how long an instance of the app may drain at most, whether the app asked for it itself)."""
    named = _seconds(labels.get(DRAIN_LABEL, "")) if DRAIN_LABEL in labels else None
    return (named, True) if named is not None else (DEFAULT_SECONDS, False)


@dataclass(frozen=True)
class Draining:
    task_id: str
    app_id: str
    since: float
    until: float
    alone: bool  # wait until `until` even when no router reports (the app named its drain time)


@dataclass(frozen=True)
class RouterReport:
    """What one router said last: the instances it still sends or holds requests for."""

    router_id: str
    group: str
    serving: frozenset[str]
    received: float
    every: float  # its next report comes within this many seconds

    def present(self, now: float) -> bool:
        return now - self.received <= 2 * self.every + PRESENCE_SLACK


def parse_report(document: Any) -> tuple[str, str, frozenset[str], float]:
    """(router id, group, serving task ids, seconds to its next report) from a report's JSON;
    SpecError (422) naming the field otherwise. `nextReportWithin: 0` says the router leaves."""
    if not isinstance(document, dict):
        raise SpecError("/", "a report is an object")
    router_id, group = document.get("id"), document.get("group", "")
    if not isinstance(router_id, str) or not 0 < len(router_id) <= MAX_ROUTER_ID or not router_id.isprintable():
        raise SpecError("/id", f"the router's id: printable text of 1 to {MAX_ROUTER_ID} characters")
    if not isinstance(group, str) or len(group) > 64:
        raise SpecError("/group", "the router's group: text of at most 64 characters")
    serving = document.get("serving", [])
    if not isinstance(serving, list) or not all(isinstance(t, str) and len(t) <= 512 for t in serving):
        raise SpecError("/serving", "a list of task ids")
    every = document.get("nextReportWithin", 30)
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 <= every <= MAX_REPORT_INTERVAL:
        raise SpecError("/nextReportWithin", f"seconds from 0 to {MAX_REPORT_INTERVAL:g}")
    return router_id, group, frozenset(serving), float(every)


class Drains:
    """The instances draining now and the routers' last reports."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.draining: dict[str, Draining] = {}
        self.killed: set[str] = set()  # drained and killed, not yet ended: still out of rotation
        self.routers: dict[str, RouterReport] = {}

    def begin(self, task_id: str, app_id: str, labels: Mapping[str, str], now: float) -> Draining | None:
        """Start draining a running instance; None when it may be killed at once (no drain time,
        or no router to wait for and the app named none)."""
        seconds, named = drain_seconds(labels)
        with self.lock:
            if seconds <= 0 or not (named or self._present(now)):
                return None
            drain = self.draining.get(task_id) or Draining(task_id, app_id, now, now + seconds, named)
            self.draining[task_id] = drain
            return drain

    def report(self, router_id: str, group: str, serving: frozenset[str], every: float, now: float) -> list[str]:
        """A router's report; answers the instances still draining (it may report again sooner
        when one of them still holds requests there)."""
        with self.lock:
            if every <= 0:
                self.routers.pop(router_id, None)
            else:
                self.routers[router_id] = RouterReport(router_id, group, serving, now, every)
            return sorted(self.draining)

    def over(self, now: float) -> list[Draining]:
        """The drains that end now (each answered once): time is up, or every router present
        reported since it began and serves it no more."""
        with self.lock:
            present = [r for r in self.routers.values() if r.present(now)]
            for gone in [r for r in self.routers.values() if not r.present(now)]:
                del self.routers[gone.router_id]
            ended = [d for d in self.draining.values() if now >= d.until or self._cleared(d, present)]
            for drain in ended:
                del self.draining[drain.task_id]
                self.killed.add(drain.task_id)
            return ended

    def forget(self, task_ids: Iterable[str]) -> None:
        """Instances that ended (by themselves: nothing to kill; or killed after their drain)."""
        with self.lock:
            for task_id in task_ids:
                self.draining.pop(task_id, None)
                self.killed.discard(task_id)

    def is_draining(self, task_id: str) -> bool:
        """Out of rotation: draining, or drained and killed but not yet ended (a task stays
        TASK_RUNNING until its executor answers the kill)."""
        return task_id in self.draining or task_id in self.killed

    def _present(self, now: float) -> bool:
        return any(r.present(now) for r in self.routers.values())

    @staticmethod
    def _cleared(drain: Draining, present: list[RouterReport]) -> bool:
        if not present:
            return not drain.alone
        return all(r.received > drain.since and drain.task_id not in r.serving for r in present)
