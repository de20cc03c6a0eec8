"""Service ports as Marathon assigns them (GroupManagerImpl.assignDynamicServicePorts, V2Group.validPorts)."""
from __future__ import annotations

import pytest

from framework.errors import SpecError
from scheduler.services.ports import (PortRange, PortRangeExhausted, ServicePorts, assign, requested_ports,
                                      with_ports)


def test_zero_gets_the_lowest_free_port_in_order_not_a_random_one():
    ports = ServicePorts()
    assert ports.assign("/a", [0, 0]) == [10000, 10001]
    assert ports.assign("/b", [0]) == [10002]
    ports.release("/a")
    assert ports.assign("/c", [0, 0, 0]) == [10000, 10001, 10003]


def test_an_app_keeps_its_ports_across_updates_that_post_zeros_again():
    ports = ServicePorts()
    ports.assign("/other", [0])
    first = ports.assign("/web", [0, 0])
    assert ports.assign("/web", [0, 0]) == first
    # one port more: the old two stay, the new one is the next free
    assert ports.assign("/web", [0, 0, 0]) == [*first, 10003]
    # a port fixed in the update is taken out of what the zeros reuse
    assert ports.assign("/web", [10001, 0]) == [10001, 10002]


def test_ports_survive_a_restart_through_to_json():
    ports = ServicePorts(PortRange(12000, 12010))
    ports.assign("/web", [0, 0])
    again = ServicePorts.from_json(ports.to_json())
    assert again.assign("/web", [0, 0]) == [12000, 12001]
    assert again.assign("/api", [0]) == [12002]


def test_from_stored_apps():
    stored = [{"id": "/web", "portDefinitions": [{"port": 10000}, {"port": 10005}]},
              {"id": "/db", "container": {"portMappings": [{"containerPort": 5432, "servicePort": 10001}]}}]
    ports = ServicePorts.from_apps(stored)
    assert ports.owners() == {10000: "/web", 10005: "/web", 10001: "/db"}
    assert ports.assign("/new", [0]) == [10002]


def test_a_taken_fixed_port_is_refused_naming_the_port_and_its_owner():
    ports = ServicePorts()
    ports.assign("/owner", [10101])
    with pytest.raises(SpecError) as refused:
        ports.assign("/thief", [0, 10101], paths=["/portDefinitions(0)/port", "/portDefinitions(1)/port"])
    assert refused.value.field == "/portDefinitions(1)/port"
    assert "Requested service port 10101 conflicts with a service port in app /owner" in refused.value.message
    assert ports.owner(10101) == "/owner" and "/thief" not in ports.assigned
    # the owner itself may keep naming it
    assert ports.assign("/owner", [10101]) == [10101]


def test_a_fixed_port_outside_the_range_is_the_apps_and_zeros_skip_taken_ones():
    ports = ServicePorts(PortRange(10000, 10003))
    assert ports.assign("/fixed", [80, 10001]) == [80, 10001]
    assert ports.assign("/dyn", [0, 0]) == [10000, 10002]


def test_one_app_naming_a_port_twice_is_refused():
    with pytest.raises(SpecError) as refused:
        assign("/a", [10100, 10100], {})
    assert refused.value.field == "/portDefinitions(1)/port" and "unique" in refused.value.message


def test_an_exhausted_range_says_so_and_records_nothing():
    ports = ServicePorts(PortRange(10000, 10002))  # the maximum is excluded, as Marathon's Range(min, max)
    ports.assign("/a", [0, 0])
    with pytest.raises(PortRangeExhausted, match="10000-10002"):
        ports.assign("/b", [0])
    assert "/b" not in ports.assigned


def test_plan_does_not_record():
    ports = ServicePorts()
    assert ports.plan("/a", [0]) == [10000]
    assert ports.assigned == {}


def test_range_must_hold_ports():
    with pytest.raises(ValueError):
        PortRange(20000, 10000)
    with pytest.raises(ValueError):
        PortRange(0, 10)


def test_requested_ports_and_with_ports_read_and_write_the_app_json():
    assert requested_ports({"id": "/a"}) == [("/portDefinitions(0)/port", 0)]
    assert requested_ports({"id": "/a", "container": {"docker": {"image": "x"}}}) == []
    mapped = {"id": "/a", "container": {"docker": {"image": "x"},
                                        "portMappings": [{"containerPort": 80}, {"containerPort": 81,
                                                                                  "servicePort": 10200}]}}
    assert requested_ports(mapped) == [("/container/portMappings(0)/servicePort", 0),
                                       ("/container/portMappings(1)/servicePort", 10200)]
    written = ServicePorts().assign_app(mapped)
    assert [m["servicePort"] for m in written["container"]["portMappings"]] == [10000, 10200]
    assert mapped["container"]["portMappings"][0].get("servicePort") is None  # the input is not changed
    assert with_ports({"id": "/a"}, [10007]) == {"id": "/a", "portDefinitions": [{"port": 10007}]}
    assert with_ports({"id": "/a", "portDefinitions": [{"port": 0, "name": "http"}]}, [10008])[
        "portDefinitions"] == [{"port": 10008, "name": "http"}]


def test_ports_another_apps_router_binds_are_neither_given_nor_granted():
    ports = ServicePorts(PortRange(10000, 10010))
    assert ports.assign("/a", [0, 0], reserved={10000: "/lb", 10002: "/lb"}) == [10001, 10003]
    with pytest.raises(SpecError) as refused:
        ports.assign("/b", [10002], reserved={10002: "/lb"})
    assert refused.value.message == "Requested service port 10002 conflicts with the router port of app /lb"
