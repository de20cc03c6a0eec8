"""Drain before kill, the scheduler's side (scheduler/services/drain.py): when a draining
instance may be killed, from the drain label and the routers' reports. Time is given."""
from __future__ import annotations

import pytest

from framework.errors import SpecError
from scheduler.services.drain import (DEFAULT_SECONDS, DRAIN_LABEL, Drains, label_problems, parse_report)

ROUTED = {"HAPROXY_GROUP": "external"}


def test_with_no_router_reporting_an_instance_is_killed_at_once_unless_the_app_names_a_drain():
    drains = Drains()
    assert drains.begin("t1", "/web", ROUTED, now=100.0) is None
    assert drains.begin("t1", "/web", {DRAIN_LABEL: "0"}, now=100.0) is None
    named = drains.begin("t2", "/web", {DRAIN_LABEL: "3"}, now=100.0)
    assert named is not None and (named.since, named.until, named.alone) == (100.0, 103.0, True)
    assert drains.is_draining("t2") and drains.over(102.9) == []
    assert [d.task_id for d in drains.over(103.0)] == ["t2"]
    # killed now, still out of rotation until its end arrives: a router must not take it back
    # between the kill and its TASK_KILLING (it would send requests to a dying instance)
    assert drains.is_draining("t2") and drains.over(104.0) == []
    drains.forget(["t2"])
    assert not drains.is_draining("t2")


def test_a_drain_ends_once_every_present_router_reported_since_it_began_without_the_instance():
    drains = Drains()
    drains.report("r1", "external", frozenset({"t1", "t2"}), 30, now=99.0)
    drains.report("r2", "internal", frozenset(), 30, now=99.0)
    drain = drains.begin("t1", "/web", ROUTED, now=100.0)
    assert drain is not None and drain.until == 100.0 + DEFAULT_SECONDS
    assert drains.over(100.5) == []  # the reports came before the drain began
    assert drains.report("r1", "external", frozenset({"t1", "t2"}), 30, now=100.2) == ["t1"]
    drains.report("r2", "internal", frozenset(), 30, now=100.3)
    assert drains.over(100.5) == []  # r1 still serves it (sessions open)
    drains.report("r1", "external", frozenset({"t2"}), 30, now=100.6)
    assert [d.task_id for d in drains.over(100.7)] == ["t1"]
    assert drains.over(200.0) == []  # answered once


def test_time_is_up_whatever_the_routers_say_and_a_silent_router_stops_counting():
    drains = Drains()
    drains.report("stuck", "external", frozenset({"t1"}), 1, now=100.0)
    drains.begin("t1", "/web", ROUTED, now=100.0)
    drains.report("stuck", "external", frozenset({"t1"}), 1, now=101.0)
    assert drains.over(104.9) == []
    assert [d.task_id for d in drains.over(105.0)] == ["t1"]
    # a router that stopped reporting (2 periods and the slack) holds no drain
    drains.begin("t2", "/web", ROUTED, now=105.0)
    assert [d.task_id for d in drains.over(108.5)] == ["t2"]
    assert drains.routers == {}  # forgotten


def test_a_leaving_router_and_an_instance_that_ended_by_itself():
    drains = Drains()
    drains.report("r1", "external", frozenset({"t1"}), 30, now=100.0)
    drains.begin("t1", "/web", ROUTED, now=100.0)
    drains.begin("t2", "/web", ROUTED, now=100.0)
    drains.forget(["t2"])
    drains.report("r1", "external", frozenset({"t1"}), 0, now=100.1)  # nextReportWithin 0: it leaves
    assert [d.task_id for d in drains.over(100.2)] == ["t1"]
    assert drains.begin("t3", "/web", ROUTED, now=100.3) is None  # nobody to wait for any more


@pytest.mark.parametrize("value, ok", [("5", True), ("0", True), ("2.5", True), ("300", True), ("301", False),
                                       ("-1", False), ("nan", False), ("soon", False), ("inf", False)])
def test_the_drain_label_is_a_number_of_seconds(value, ok):
    problems = label_problems({DRAIN_LABEL: value})
    assert (problems == []) == ok
    if not ok:
        assert problems[0]["path"] == f"/labels/{DRAIN_LABEL}" and value in problems[0]["errors"][0]


@pytest.mark.parametrize("document, path", [
    ([], "/"), ({}, "/id"), ({"id": ""}, "/id"), ({"id": "a\nb"}, "/id"), ({"id": "r", "group": 3}, "/group"),
    ({"id": "r", "serving": "t1"}, "/serving"), ({"id": "r", "serving": [1]}, "/serving"),
    ({"id": "r", "nextReportWithin": -1}, "/nextReportWithin"), ({"id": "r", "nextReportWithin": True},
                                                                  "/nextReportWithin"),
])
def test_a_malformed_report_is_refused_naming_the_field(document, path):
    with pytest.raises(SpecError) as refused:
        parse_report(document)
    assert refused.value.field == path


def test_a_report_read():
    assert parse_report({"id": "host:/w", "group": "external", "serving": ["t1"], "nextReportWithin": 30}) == (
        "host:/w", "external", frozenset({"t1"}), 30.0)
