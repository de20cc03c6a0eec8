"""Drain before kill through the API of a real scheduler, with no router running: an app that
names `dockyard.drainSeconds` has its instances marked draining that long before their kill
(seen by clients that ask for `embed=apps.draining`, announced on `/v2/events`); a router's
report (any reader may send one) holds or ends a drain; an app that names none is killed at
once when no router reports. The router's own part is in tests/router/test_router_drain.py."""
from __future__ import annotations

from typing import Any

import pytest

from tests.router.cluster import EventLog, epoch
from tests.services.conftest import Marathon
from tests.support.procs import wait_for


def sleeper(app_id: str, instances: int, **labels: str) -> dict[str, Any]:
    return {"id": app_id, "cmd": "sleep 600", "cpus": 0.05, "mem": 16, "instances": instances,
            "labels": labels}


def killed_at(events: EventLog, task_id: str, timeout: float = 30) -> float:
    """When the scheduler heard its task was being killed (its first TASK_KILLING or TASK_KILLED)."""
    found = wait_for(lambda: [e for e in events.of("status_update_event") if e["taskId"] == task_id
                              and e["taskStatus"] in ("TASK_KILLING", "TASK_KILLED")], timeout=timeout,
                     what=f"{task_id} killed")
    return epoch(found[0]["timestamp"])


def drained_at(events: EventLog, task_id: str) -> float | None:
    found = [e for e in events.of("instance_changed_event") if e["instanceId"] == task_id and e.get("draining")]
    return epoch(found[0]["timestamp"]) if found else None


def tasks(marathon: Marathon, app_id: str, draining: bool = False) -> list[dict]:
    embed = "embed=apps.tasks" + ("&embed=apps.draining" if draining else "")
    return [t for a in marathon.call("GET", f"/v2/apps?{embed}")["apps"] if a["id"] == app_id for t in a["tasks"]]


def test_a_named_drain_marks_the_instance_then_kills_it_when_its_time_is_up(marathon: Marathon) -> None:
    marathon.call("POST", "/v2/apps", sleeper("/drain/named", 2, **{"dockyard.drainSeconds": "3"}))
    marathon.wait_deployed("/drain/named")
    with EventLog(marathon, "instance_changed_event", "status_update_event") as events:
        marathon.call("PUT", "/v2/apps/drain/named", {"instances": 1})
        leaving = wait_for(lambda: [t for t in tasks(marathon, "/drain/named", draining=True) if t.get("draining")],
                           timeout=10, what="an instance marked draining")
        assert len(leaving) == 1 and leaving[0]["state"] == "TASK_RUNNING"
        assert all("draining" not in t for t in tasks(marathon, "/drain/named"))  # only for who asks
        victim = leaving[0]["id"]
        announced = wait_for(lambda: [e for e in events.of("instance_changed_event") if e["instanceId"] == victim],
                             timeout=10, what="the drain announced")
        assert announced[0]["condition"] == "Running" and announced[0]["drainSeconds"] == 3.0, announced
        assert announced[0]["ipAddresses"] == leaving[0]["ipAddresses"] and announced[0]["ports"] == leaving[0]["ports"]
        waited = killed_at(events, victim) - epoch(announced[0]["timestamp"])
    assert 2.9 <= waited <= 8, waited  # its 3 s: no router reported to end it sooner
    marathon.wait_deployed("/drain/named")


def test_a_router_report_holds_or_ends_a_drain_and_only_readers_may_send_one(marathon: Marathon, cluster) -> None:
    report = {"id": "test:router", "group": "external", "serving": [], "nextReportWithin": 30}
    assert marathon.as_(None).json("POST", "/dockyard/v1/routers", report)[0] == 401
    status, answer = marathon.as_(cluster.bundle.viewer).json("POST", "/dockyard/v1/routers", report)
    assert (status, answer) == (200, {"draining": []})
    marathon.call("POST", "/v2/apps", sleeper("/drain/routed", 3))
    first = {t["id"] for t in marathon.wait_deployed("/drain/routed")["tasks"]}
    try:
        with EventLog(marathon, "instance_changed_event", "status_update_event") as events:
            marathon.call("PUT", "/v2/apps/drain/routed", {"instances": 2})
            (victim,) = wait_for(lambda: [t["id"] for t in tasks(marathon, "/drain/routed", True) if t.get("draining")],
                                 timeout=10, what="an instance draining for the router")
            began = wait_for(lambda: drained_at(events, victim), timeout=10, what="the drain announced")
            # the router still serves it: the drain goes on
            held = marathon.call("POST", "/dockyard/v1/routers", {**report, "serving": sorted(first)})
            assert held == {"draining": [victim]}
            with pytest.raises(TimeoutError):
                killed_at(events, victim, timeout=1.5)
            # out of its rotation: killed at once, long before the default 5 s
            marathon.call("POST", "/dockyard/v1/routers", {**report, "serving": sorted(first - {victim})})
            assert killed_at(events, victim) - began < 4.5
    finally:
        marathon.call("POST", "/dockyard/v1/routers", {**report, "nextReportWithin": 0})  # the router leaves
    marathon.wait_deployed("/drain/routed")


def test_with_no_router_and_no_drain_named_the_kill_is_immediate(marathon: Marathon) -> None:
    marathon.call("POST", "/v2/apps", sleeper("/drain/none", 2))
    marathon.wait_deployed("/drain/none")
    with EventLog(marathon, "instance_changed_event", "status_update_event") as events:
        marathon.call("DELETE", "/v2/apps/drain/none")
        wait_for(lambda: len({e["taskId"] for e in events.of("status_update_event")
                              if e["taskStatus"] == "TASK_KILLING"}) == 2, timeout=30, what="both killed")
        assert not [e for e in events.of("instance_changed_event") if e.get("draining")]
