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


def test_a_listener_hears_its_types_inside_publish_and_its_failure_fails_no_publisher() -> None:
    bus = EventBus()
    heard: list[str] = []
    bus.listen(["job_run_updated"], lambda event: heard.append(event["runId"]))
    bus.listen(["job_run_updated"], lambda event: 1 / 0)
    assert bus.subscriber_count == 2  # publishers build events while anyone hears them
    bus.publish("job_run_started", runId="r0")
    event = bus.publish("job_run_updated", runId="r1")
    assert heard == ["r1"] and event["runId"] == "r1"  # before publish returned, on this thread
    bus.unlisten(heard.append)  # not a listener: nothing changes
    assert bus.subscriber_count == 2


def test_the_overview_notes_each_event_as_it_is_published_without_a_reader_thread() -> None:
    import threading

    from scheduler.ui.stream import RecentEvents

    jobs, services = EventBus(), EventBus()
    threads = threading.active_count()
    recent = RecentEvents([(jobs, frozenset({"job_run_updated"})), (services, frozenset({"status_update_event"}))])
    assert threading.active_count() == threads
    jobs.publish("job_run_updated", jobId="j", runId="r1", jobRun={"status": "ACTIVE"}, task={"id": "t1"})
    jobs.publish("job_run_started", jobId="j", runId="r2")  # not a type the overview lists
    services.publish("status_update_event", appId="/a", taskId="a.1", taskStatus="TASK_RUNNING")
    latest = recent.latest()
    assert [(e["type"], e["message"]) for e in latest] == [
        ("status_update_event", "TASK_RUNNING"), ("job_run_updated", "ACTIVE")]
    assert latest[1]["runs"] == ["r1"] and latest[1]["tasks"] == ["t1"]
    recent.stop()
    assert jobs.subscriber_count == 0 and services.subscriber_count == 0
    jobs.publish("job_run_updated", jobId="j", runId="r3")
    assert len(recent.latest()) == 2
