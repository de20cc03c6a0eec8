"""What a router tells the scheduler after each pass, so that an instance is killed only once
no router sends it requests (drain before kill; scheduler/services/drain.py).

`serving(layout, stats)` answers the instances HAProxy may still send requests to (a
server in rotation) or still holds requests for (a draining server with sessions open),
and which of them are only draining. The router posts the first to
`POST /dockyard/v1/routers` and looks again soon while the second is not empty.
"""
from __future__ import annotations

from typing import Iterable

from scheduler.router.model import DRAIN, READY, Layout
from scheduler.router.runtime import ServerStat

REPORT_EVERY = 30.0  # seconds between reports at the most: the scheduler counts a silent router gone


def has_draining(layout: Layout | None) -> bool:
    return layout is not None and any(slot.server is not None and slot.server.state == DRAIN
                                      for slots in layout.slots.values() for slot in slots)


def serving(layout: Layout | None, stats: Iterable[ServerStat] = ()) -> tuple[frozenset[str], frozenset[str]]:
    """(task ids HAProxy sends or holds requests for, the draining ones among them)."""
    if layout is None:
        return frozenset(), frozenset()
    sessions = {(stat.backend, stat.server): stat.sessions for stat in stats}
    ready: set[str] = set()
    holding: set[str] = set()
    for backend, slots in layout.slots.items():
        for slot in slots:
            server = slot.server
            if server is None:
                continue
            if server.state == READY:
                ready.add(server.task_id)
            elif sessions.get((backend, slot.name), 0) > 0:
                holding.add(server.task_id)
    return frozenset(ready | holding), frozenset(holding - ready)
