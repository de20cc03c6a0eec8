"""The launch queue: requests waiting for an offer, first come first placed.

Not locked itself: the core's lock guards it, as it guards the records the queue's
requests belong to.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Iterator

from scheduler.core.metrics import PENDING, QUEUE_LATENCY
from scheduler.placement.views import AgentView
from scheduler.requests import TaskRequest

_EPS = 1e-9


class LaunchQueue:
    """Waiting `TaskRequest`s in submission order, with when each was submitted."""

    def __init__(self, max_per_round: int) -> None:
        self.max_per_round = max_per_round
        self._pending: OrderedDict[str, TaskRequest] = OrderedDict()
        self._submitted_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def __iter__(self) -> Iterator[TaskRequest]:
        return iter(self._pending.values())

    def add(self, request: TaskRequest) -> None:
        """Queue a request (again: a resubmitted one keeps its place)."""
        self._pending[request.task_id] = request
        self._submitted_at[request.task_id] = time.monotonic()

    def remove(self, task_id: str) -> TaskRequest | None:
        """Take a request out unlaunched (withdrawn, refused); None when it was not queued."""
        self._submitted_at.pop(task_id, None)
        return self._pending.pop(task_id, None)

    def put_back(self, request: TaskRequest) -> None:
        """Undo `remove` when what it was for did not happen (its place is now the last)."""
        self._pending[request.task_id] = request

    def launched(self, task_id: str) -> None:
        """The request is on its way to Mesos: count how long it waited."""
        self._pending.pop(task_id, None)
        started = self._submitted_at.pop(task_id, None)
        if started is not None:
            QUEUE_LATENCY.observe(time.monotonic() - started)

    def count(self) -> None:
        """Publish the queue's length."""
        PENDING.set(len(self._pending))

    def for_round(self, views: list[AgentView], hopeless_limit: int = 20) -> list[TaskRequest]:
        """The waiting requests worth placing on these offers, in queue order.

        With thousands queued, handing all of them to placement every round costs more
        than it launches: stop once their summed cpus/mem exceed what is offered. Requests
        bigger than any offering agent cannot fit now, but a few still go through so their
        owners learn why (the placement report); they do not count against the budget,
        so they never block smaller requests queued behind them.
        """
        cpus = sum(v.cpus for v in views)
        mem = sum(v.mem for v in views)
        max_cpus = max((v.cpus for v in views), default=0.0)
        max_mem = max((v.mem for v in views), default=0.0)
        out: list[TaskRequest] = []
        hopeless = scanned = 0
        for request in self._pending.values():
            scanned += 1
            if len(out) >= self.max_per_round or scanned > 4 * self.max_per_round:
                break
            if request.cpus > max_cpus + _EPS or request.mem > max_mem + _EPS:
                if hopeless < hopeless_limit:
                    out.append(request)
                    hopeless += 1
                continue
            if request.cpus > cpus + _EPS or request.mem > mem + _EPS:
                continue  # no room left this round; a smaller one behind may still fit
            cpus -= request.cpus
            mem -= request.mem
            out.append(request)
        return out
