"""The event bus: typed subscriptions, bounded queues that drop the oldest."""
from __future__ import annotations

import asyncio

from scheduler.events import EventBus


def test_subscribers_get_only_their_types() -> None:
    bus = EventBus()
    everything = bus.subscribe()
    updates = bus.subscribe(["status_update_event"])
    bus.publish("deployment_success", id="d1")
    bus.publish("status_update_event", taskId="t1", taskStatus="TASK_RUNNING")
    assert everything.get(0)["eventType"] == "deployment_success"
    assert everything.get(0)["taskId"] == "t1"
    event = updates.get(0)
    assert event["eventType"] == "status_update_event" and event["timestamp"].endswith("Z")
    assert updates.get(0) is None
    updates.close()
    assert bus.subscriber_count == 1


def test_slow_subscriber_drops_oldest_events() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=2)
    for index in range(5):
        bus.publish("status_update_event", n=index)
    assert [slow.get(0)["n"], slow.get(0)["n"]] == [3, 4] and slow.dropped == 3


def test_async_subscriber_wakes_on_publish_from_another_thread() -> None:
    bus = EventBus()
    subscription = bus.subscribe()

    async def scenario() -> dict | None:
        loop = asyncio.get_running_loop()
        assert await subscription.aget(timeout=0.01) is None
        loop.call_later(0.01, lambda: loop.run_in_executor(None, lambda: bus.publish("subscribe_event")))
        return await subscription.aget(timeout=5)

    event = asyncio.run(scenario())
    assert event is not None and event["eventType"] == "subscribe_event"
