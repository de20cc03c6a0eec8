"""An in-process event bus with Marathon's event types, feeding `/v2/events` (SSE).

Publishers (the core, services, jobs) call `publish` from any thread; each
subscriber gets its own bounded queue, so a slow SSE client drops its own
oldest events instead of slowing the scheduler. Order across types is not
guaranteed, as in Marathon: clients use events to invalidate caches.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

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


def marathon_time(seconds: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Subscription:
    """One subscriber's queue; iterate with `get` (threads) or `aget` (asyncio)."""

    def __init__(self, bus: "EventBus", types: frozenset[str] | None, maxsize: int,
                 match: Callable[[dict], bool] | None = None) -> None:
        self.bus = bus
        self.types = types
        self.match = match
        self.queue: queue.Queue[dict] = queue.Queue(maxsize)
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_event: asyncio.Event | None = None

    def wants(self, event: dict) -> bool:
        return (self.types is None or event["eventType"] in self.types) and (self.match is None or self.match(event))

    def offer(self, event: dict) -> None:
        while True:
            try:
                self.queue.put_nowait(event)
                break
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
        if self._loop is not None and self._async_event is not None:
            self._loop.call_soon_threadsafe(self._async_event.set)

    def get(self, timeout: float | None = None) -> dict | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    async def aget(self, timeout: float | None = None) -> dict | None:
        """The next event, or None after `timeout` seconds (for SSE keep-alives)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._async_event = asyncio.Event()
        assert self._async_event is not None
        while True:
            try:
                return self.queue.get_nowait()
            except queue.Empty:
                pass
            self._async_event.clear()
            if not self.queue.empty():
                continue
            try:
                await asyncio.wait_for(self._async_event.wait(), timeout)
            except asyncio.TimeoutError:
                return None

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []

    def publish(self, event_type: str, **fields: Any) -> dict:
        """Deliver an event to every interested subscriber; returns the event."""
        event = {"eventType": event_type, "timestamp": marathon_time(), **fields}
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            if subscriber.wants(event):
                subscriber.offer(event)
        return event

    def subscribe(self, types: Iterable[str] | None = None, maxsize: int = 10000,
                  match: Callable[[dict], bool] | None = None) -> Subscription:
        """A new subscriber to `types` (all when None) whose events also satisfy `match`."""
        subscription = Subscription(self, frozenset(types) if types else None, maxsize, match)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)
