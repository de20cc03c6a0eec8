"""An in-process event bus, feeding the SSE streams (scheduler/api/sse.py): Marathon's event
types on `/v2/events`, and the jobs manager's own bus on `/v1/events`.

Publishers (the core, services, jobs) call `publish` from any thread; each
subscriber gets its own bounded queue, so a slow SSE client drops its own
oldest events instead of slowing the scheduler. Order across types is not
guaranteed, as in Marathon: clients use events to invalidate caches.

An SSE subscriber also has a budget in bytes (`max_bytes`): events are encoded
once per publish and shared by every subscriber, and one whose unread events
would pass its budget is dropped (`overflowed`; its stream ends) rather than
holding a copy of every large event while its client does not read.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

# Marathon's event types (docs/event-bus.md); publishers should use these names.
EVENT_TYPES = frozenset({
    "event_stream_attached", "event_stream_detached", "api_post_event", "status_update_event",
    "instance_changed_event", "unknown_instance_terminated_event", "instance_health_changed_event",
    "app_terminated_event", "add_health_check_event", "remove_health_check_event",
    "failed_health_check_event", "health_status_changed_event", "unhealthy_task_kill_event",
    "unhealthy_instance_kill_event", "deployment_info", "deployment_step_success",
    "deployment_step_failure", "deployment_success", "deployment_failed", "group_change_success",
    "group_change_failed", "framework_message_event", "subscribe_event", "unsubscribe_event",
    "pod_created_event", "pod_updated_event", "pod_deleted_event",
})


def encode(event: dict) -> bytes:
    """An event's JSON, as its SSE `data:` line carries it."""
    return json.dumps(event, default=str).encode()


def marathon_time(seconds: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Subscription:
    """One subscriber's queue; iterate with `get` (threads) or `aget` (asyncio)."""

    def __init__(self, bus: "EventBus", types: frozenset[str] | None, maxsize: int,
                 match: Callable[[dict], bool] | None = None, max_bytes: int | None = None) -> None:
        self.bus = bus
        self.types = types
        self.match = match
        self.max_bytes = max_bytes
        self.queue: queue.Queue[tuple[dict, bytes | None]] = queue.Queue(maxsize)
        self.dropped = 0
        self.pending_bytes = 0  # encoded size of the events queued, for `max_bytes`
        self.overflowed = False  # dropped as too slow a reader: no more events come
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_event: asyncio.Event | None = None

    def wants(self, event: dict) -> bool:
        return (not self.overflowed and (self.types is None or event["eventType"] in self.types)
                and (self.match is None or self.match(event)))

    def offer(self, event: dict, encoded: bytes | None = None) -> None:
        """Queue an event (`encoded`: its JSON, shared with the other subscribers)."""
        size = len(encoded) if encoded is not None else 0
        with self._lock:
            if self.overflowed:
                return
            if self.max_bytes is not None and self.pending_bytes and self.pending_bytes + size > self.max_bytes:
                self._overflow()
            else:
                while True:
                    try:
                        self.queue.put_nowait((event, encoded))
                        self.pending_bytes += size
                        break
                    except queue.Full:
                        self._take()
                        self.dropped += 1
        self._wake()

    def _overflow(self) -> None:
        """Too slow a reader: forget what it has not read, and hear nothing more."""
        self.overflowed = True
        while self._take() is not None:
            self.dropped += 1
        self.bus.unsubscribe(self)

    def _take(self) -> tuple[dict, bytes | None] | None:
        try:
            item = self.queue.get_nowait()
        except queue.Empty:
            return None
        self.pending_bytes -= len(item[1]) if item[1] is not None else 0
        return item

    def _wake(self) -> None:
        if self._loop is not None and self._async_event is not None:
            self._loop.call_soon_threadsafe(self._async_event.set)

    def get(self, timeout: float | None = None) -> dict | None:
        try:
            event, encoded = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self.pending_bytes -= len(encoded) if encoded is not None else 0
        return event

    async def aget(self, timeout: float | None = None) -> dict | None:
        """The next event, or None after `timeout` seconds (for SSE keep-alives) or once
        `overflowed`."""
        item = await self.aget_encoded(timeout)
        return item[0] if item is not None else None

    async def aget_encoded(self, timeout: float | None = None) -> tuple[dict, bytes] | None:
        """The next event and its JSON (encoded once for every subscriber), or None after
        `timeout` seconds or once `overflowed`."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._async_event = asyncio.Event()
        assert self._async_event is not None
        while not self.overflowed:
            with self._lock:
                item = self._take()
            if item is not None:
                event, encoded = item
                return event, encoded if encoded is not None else encode(event)
            self._async_event.clear()
            if not self.queue.empty() or self.overflowed:
                continue
            try:
                await asyncio.wait_for(self._async_event.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return None

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._listeners: list[tuple[frozenset[str], Callable[[dict], None]]] = []

    def publish(self, event_type: str, **fields: Any) -> dict:
        """Deliver an event to every interested subscriber; returns the event."""
        event = {"eventType": event_type, "timestamp": marathon_time(), **fields}
        with self._lock:
            subscribers = list(self._subscribers)
            listeners = list(self._listeners)
        for types, listener in listeners:
            if event_type in types:
                try:
                    listener(event)
                except Exception:  # a listener's fault must not fail the publisher's change
                    log.exception("event listener failed on %s", event_type)
        encoded: bytes | None = None
        for subscriber in subscribers:
            if subscriber.wants(event):
                if subscriber.max_bytes is not None and encoded is None:
                    encoded = encode(event)  # once, shared: forty readers hold one copy
                subscriber.offer(event, encoded if subscriber.max_bytes is not None else None)
        return event

    def subscribe(self, types: Iterable[str] | None = None, maxsize: int = 10000,
                  match: Callable[[dict], bool] | None = None, max_bytes: int | None = None) -> Subscription:
        """A new subscriber to `types` (all when None) whose events also satisfy `match`;
        with `max_bytes`, dropped once its unread events would take more (see the module)."""
        subscription = Subscription(self, frozenset(types) if types else None, maxsize, match, max_bytes)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def listen(self, types: Iterable[str], listener: Callable[[dict], None]) -> None:
        """Call `listener(event)` inside `publish`, on the publisher's thread, for each event of
        `types`: for a consumer that only notes a few words of each (the UI's latest events),
        which a queue and a reader thread would cost a thread switch per event. It must be quick
        and should not raise (what it raises is logged)."""
        with self._lock:
            self._listeners.append((frozenset(types), listener))

    def unlisten(self, listener: Callable[[dict], None]) -> None:
        with self._lock:
            self._listeners = [(types, known) for types, known in self._listeners if known != listener]

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        """Subscribers and listeners: while there are none, publishers need not build events."""
        with self._lock:
            return len(self._subscribers) + len(self._listeners)
