"""Live pages: one event stream per page, and the latest events the overview lists.

`/ui/events` is the services' event bus (what `/v2/events` streams) and the jobs'
(what `/v1/events` streams) merged into one server-sent stream, each event cut
down to what a page needs to know whether it is concerned: its type and the
apps, tasks, jobs and runs it names. Pages then fetch their own fresh HTML. One
stream rather than the two: a browser opens at most six connections to a host,
and two held per tab would starve the third tab's requests; and a follower's
leader proxy answers the API's streams with a redirect to the leader's address,
another origin a page may not follow, while it passes `/ui/events` on like any
other UI request. The stream keeps the API's bounds (its byte budget per
reader, its write timeout, a keep-alive blank line every 10 seconds).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from typing import Any, AsyncIterator, Iterable

from starlette.requests import Request
from starlette.responses import Response

from scheduler.api.common import request_limits
from scheduler.api.sse import ATTACHED_QUIETLY, KEEPALIVE, KEEPALIVE_SECONDS, EventStream, sse_frame
from scheduler.events import EventBus, Subscription
from scheduler.jobs.manager import JOB_EVENT_TYPES

SERVICE_TYPES = frozenset({
    "status_update_event", "instance_health_changed_event", "health_status_changed_event",
    "failed_health_check_event", "unhealthy_instance_kill_event", "deployment_info", "deployment_success",
    "deployment_failed", "deployment_step_success", "deployment_step_failure", "app_terminated_event",
    "api_post_event",
})
RECENT = 50


def touched(event: dict) -> dict[str, Any]:
    """What an event concerns: `{"type", "apps", "tasks", "jobs", "runs"}` (lists of ids)."""
    apps: set[str] = set()
    for key in ("appId", "runSpecId"):
        if isinstance(event.get(key), str):
            apps.add(event[key])
    definition = event.get("appDefinition")
    if isinstance(definition, dict) and isinstance(definition.get("id"), str):
        apps.add(definition["id"])
    plan = event.get("plan")
    for step in (plan.get("steps") if isinstance(plan, dict) else None) or []:
        for action in step.get("actions") or []:
            if isinstance(action.get("app"), str):
                apps.add(action["app"])
    tasks = {event[key] for key in ("taskId", "instanceId") if isinstance(event.get(key), str)}
    task = event.get("task")
    if isinstance(task, dict) and isinstance(task.get("id"), str):
        tasks.add(task["id"])
    return {"type": event.get("eventType", ""), "apps": sorted(apps), "tasks": sorted(tasks),
            "jobs": [event["jobId"]] if isinstance(event.get("jobId"), str) else [],
            "runs": [event["runId"]] if isinstance(event.get("runId"), str) else []}


def buses(ctx: Any) -> list[tuple[EventBus, frozenset[str]]]:
    found = [(ctx.events, SERVICE_TYPES)]
    if ctx.jobs is not None:
        found.append((ctx.jobs.events, JOB_EVENT_TYPES))
    return found


def ui_events(request: Request, ctx: Any) -> Response:
    """The merged stream for one page."""
    budget = request_limits(request).event_stream_bytes
    subscriptions = [bus.subscribe(types, max_bytes=budget) for bus, types in buses(ctx)]
    return EventStream(_frames(subscriptions))


async def _frames(subscriptions: list[Subscription]) -> AsyncIterator[bytes]:
    waits: dict[asyncio.Future, Subscription] = {}
    try:
        yield ATTACHED_QUIETLY
        while True:
            for subscription in subscriptions:
                if subscription not in waits.values():
                    waits[asyncio.ensure_future(subscription.aget(KEEPALIVE_SECONDS))] = subscription
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            quiet = True
            for future in done:
                subscription = waits.pop(future)
                if subscription.overflowed:
                    return  # too slow a reader: its page reconnects and refreshes
                event = future.result()
                if event is not None:
                    quiet = False
                    yield b"".join(sse_frame("change", json.dumps(touched(event)).encode()))
            if quiet:
                yield KEEPALIVE
    finally:
        for future in waits:
            future.cancel()
        for subscription in subscriptions:
            subscription.close()


class RecentEvents:
    """The latest events of both buses, newest first, for the overview. Noted as each is published
    (a bus listener): a reader thread per bus would be woken on every task's every status."""

    def __init__(self, sources: Iterable[tuple[EventBus, frozenset[str]]], keep: int = RECENT) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        sources = list(sources)
        self._buses = [bus for bus, _ in sources]
        for bus, types in sources:
            bus.listen(types, self._note)

    def _note(self, event: dict) -> None:
        entry = {**touched(event), "at": time.time(), "message": _summary(event)}
        with self._lock:
            self.events.appendleft(entry)

    def latest(self, count: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)[:count]

    def stop(self) -> None:
        for bus in self._buses:
            bus.unlisten(self._note)


def _summary(event: dict) -> str:
    """A few words on an event beyond its type."""
    parts = [str(event[key]) for key in ("taskStatus", "status", "message", "reason") if event.get(key)]
    if "alive" in event:
        parts.append("healthy" if event["alive"] else "unhealthy")
    if isinstance(event.get("jobRun"), dict) and event["jobRun"].get("status"):
        parts.append(str(event["jobRun"]["status"]))
    return " ".join(parts)[:300]


def recent_events(ctx: Any) -> RecentEvents:
    """The scheduler's one recorder (started with the UI's routes)."""
    recorder = ctx.extras.get("ui_recent_events")
    if recorder is None:
        recorder = ctx.extras["ui_recent_events"] = RecentEvents(buses(ctx))
    return recorder
