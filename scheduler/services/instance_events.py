"""The Marathon events an app's instances cause, and the records kept of their failures.

Shapes follow Marathon's event bus (MesosStatusUpdateEvent, InstanceChanged,
HealthStatusChanged, FailedHealthCheck; docs/event-bus.md in Marathon) with only the keys
the `marathon` client reads. A draining instance is announced as an
`instance_changed_event` of a Running instance carrying `"draining": true` (the
router wakes on it; a client that does not know the key ignores it).
"""
from __future__ import annotations

from typing import Any

from scheduler.events import EventBus, marathon_time

CONDITIONS = {"PENDING": "Scheduled", "LAUNCHED": "Provisioned", "TASK_STAGING": "Staging",
              "TASK_STARTING": "Starting", "TASK_RUNNING": "Running", "TASK_KILLING": "Killing",
              "TASK_FINISHED": "Finished", "TASK_FAILED": "Failed", "TASK_KILLED": "Killed",
              "TASK_LOST": "Unreachable", "TASK_ERROR": "Error", "TASK_DROPPED": "Dropped",
              "TASK_GONE": "Gone", "TASK_UNREACHABLE": "Unreachable", "TASK_UNKNOWN": "Unknown"}


def condition(state: str) -> str:
    """Marathon's instance Condition for a task state."""
    return CONDITIONS.get(state, state)


def publish_status(events: EventBus, record: Any, app_id: str, version: str, address: str, now: float) -> None:
    """A task's new status: `status_update_event` and `instance_changed_event`."""
    events.publish("status_update_event", slaveId=record.agent_id or "", taskId=record.task_id,
                   taskStatus=record.state.value, message=record.message or "", appId=app_id,
                   host=record.hostname or "", ipAddresses=[{"ipAddress": address, "protocol": "IPv4"}],
                   ports=list(record.ports), version=version)
    events.publish("instance_changed_event", instanceId=record.task_id, condition=condition(record.state.value),
                   runSpecId=app_id, agentId=record.agent_id or "", host=record.hostname or "",
                   runSpecVersion=version, timestamp=marathon_time(now))


def draining_event(record: Any, drain: Any, version: str, address: str, now: float) -> dict[str, Any]:
    """The `instance_changed_event` of an instance that starts draining (scheduler/services/drain.py)."""
    return {"instanceId": record.task_id, "condition": condition("TASK_RUNNING"), "runSpecId": drain.app_id,
            "agentId": record.agent_id or "", "host": record.hostname or "", "runSpecVersion": version,
            "timestamp": marathon_time(now), "draining": True, "taskId": record.task_id,
            "ipAddresses": [{"ipAddress": address, "protocol": "IPv4"}], "ports": list(record.ports),
            "drainSeconds": round(drain.until - drain.since, 3)}


def last_failure(record: Any, app_id: str, version: str, now: float) -> dict[str, Any]:
    """Marathon's `lastTaskFailure` of an app."""
    return {"appId": app_id, "host": record.hostname or "", "message": failure_message(record),
            "state": record.state.value, "taskId": record.task_id, "instanceId": record.task_id,
            "slaveId": record.agent_id or "", "timestamp": marathon_time(now), "version": version}


def failure_message(record: Any) -> str:
    """The task's message, with the Mesos reason when it says more (an OOM kill says so);
    TaskFailure has no reason field the `marathon` client would accept."""
    message = record.message or ""
    reason = record.reason or ""
    if reason and reason not in ("REASON_COMMAND_EXECUTOR_FAILED", "REASON_EXECUTOR_TERMINATED"):
        label = "out of memory" if reason == "REASON_CONTAINER_LIMITATION_MEMORY" else reason
        return f"{message} ({label}: {reason})" if label != reason else f"{message} ({reason})"
    return message


def health_changed(events: EventBus, state: Any, record: Any, alive: bool, status: dict, now: float,
                   version: str) -> None:
    """A health result: the instance's record in `state.health`, and Marathon's health events."""
    health = state.health.setdefault(record.task_id, {"consecutiveFailures": 0})
    stamp = marathon_time(now)
    before = health.get("alive")
    health["alive"] = alive
    if alive:
        health["consecutiveFailures"] = 0
        health.setdefault("firstSuccess", stamp)
        health["lastSuccess"] = stamp
        state.backoff.reset()  # a healthy run: the next failure starts from backoffSeconds
    else:
        health["consecutiveFailures"] = health.get("consecutiveFailures", 0) + 1
        health["lastFailure"] = stamp
        health["lastFailureCause"] = status.get("message") or "health check failed"
        events.publish("failed_health_check_event", appId=state.app.id, taskId=record.task_id,
                       instanceId=record.task_id, version=version,
                       healthCheck=state.app.healthChecks[0].out() if state.app.healthChecks else {})
    if before != alive:
        events.publish("health_status_changed_event", appId=state.app.id, taskId=record.task_id,
                       instanceId=record.task_id, version=version, alive=alive)
        events.publish("instance_health_changed_event", instanceId=record.task_id,
                       runSpecId=state.app.id, runSpecVersion=version, healthy=alive)
