"""Resource arithmetic as the master, agent and placement rely on it."""
from __future__ import annotations

import pytest

from framework.mesos.resources import Resources, attribute_value, parse_attributes

AGENT = "cpus:4;mem:1024;disk:100;ports:[31000-32000]"


def test_parse_and_flat_legacy_shape() -> None:
    res = Resources.parse(AGENT)
    assert res.flat() == {"cpus": 4.0, "mem": 1024.0, "disk": 100.0, "gpus": 0.0,
                          "ports": "[31000-32000]"}
    assert res.scalar("cpus") == 4.0
    assert res.ranges("ports") == [(31000, 32000)]


def test_to_json_round_trip_in_legacy_form() -> None:
    res = Resources.parse(AGENT + ";gpu_models:{a100,h100}")
    as_json = res.to_json()
    cpus = next(r for r in as_json if r["name"] == "cpus")
    assert cpus == {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}, "role": "*"}
    ports = next(r for r in as_json if r["name"] == "ports")
    assert ports["ranges"] == {"range": [{"begin": 31000, "end": 32000}]}
    assert Resources(as_json) == res
    assert res.set_items("gpu_models") == {"a100", "h100"}
    multi = res.to_json(allocation_role="dev")
    assert all(r["allocation_info"] == {"role": "dev"} for r in multi)


def test_task_resources_without_role_are_unreserved() -> None:
    offer = Resources.parse(AGENT)
    task = Resources([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 128}}])
    assert offer.contains(task)
    left = offer - task
    assert left.scalar("cpus") == 3.5 and left.scalar("mem") == 896.0


def test_fixed_point_scalars_cancel_exactly() -> None:
    a = Resources.parse("cpus:0.1") + Resources.parse("cpus:0.2")
    assert (a - Resources.parse("cpus:0.3")).empty
    assert Resources.parse("cpus:0.3").contains(a)


def test_ranges_subtract_split_and_merge() -> None:
    ports = Resources.parse("ports:[31000-31010]")
    used = Resources.parse("ports:[31002-31003,31008-31008]")
    left = ports - used
    assert left.ranges("ports") == [(31000, 31001), (31004, 31007), (31009, 31010)]
    assert (left + used) == ports
    assert ports.contains(used)
    assert not left.contains(used)
    assert left.flat()["ports"] == "[31000-31001, 31004-31007, 31009-31010]"


def test_contains_and_subtraction_respect_roles() -> None:
    res = Resources.parse("cpus:2;mem:100") + Resources.parse("cpus:1", role="dev")
    assert res.scalar("cpus") == 3.0
    assert res.scalar("cpus", role="dev") == 1.0
    assert not res.contains(Resources.parse("cpus:3"))
    assert res.contains(Resources.parse("cpus(dev):1;cpus:2"))
    assert set(res.by_role()) == {"*", "dev"}
    assert res.allocatable_to("ops") == Resources.parse("cpus:2;mem:100")
    assert str(res) == "cpus:2;cpus(dev):1;mem:100"


def test_refined_reservations_read_last_role() -> None:
    res = Resources([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
                      "reservations": [{"type": "STATIC", "role": "a"},
                                       {"type": "DYNAMIC", "role": "a/b"}]}])
    assert res.roles() == {"a/b"}


def test_sets_and_empty() -> None:
    res = Resources.parse("disks:{a,b,c}")
    assert (res - Resources.parse("disks:{a,b,c}")).empty
    assert res.contains(Resources.parse("disks:{b}"))
    assert not res.contains(Resources.parse("disks:{d}"))
    assert Resources().empty and not Resources()
    assert (res - Resources.parse("cpus:1")) == res  # nothing to take away


def test_json_text_is_accepted() -> None:
    res = Resources.parse('[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]')
    assert res.scalar("cpus") == 2.0


@pytest.mark.parametrize("bad", ["cpus", "cpus:x", "ports:[1-2", "cpus:-1"])
def test_bad_text_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        Resources.parse(bad)


def test_resources_are_hashable_values() -> None:
    assert hash(Resources.parse("cpus:1;mem:2")) == hash(Resources.parse("mem:2;cpus:1"))


def test_parse_attributes_types() -> None:
    attrs = parse_attributes("rack:a;zone:z1;level:3;ids:[1-5];tags:{x,y}")
    assert attrs[0] == {"name": "rack", "type": "TEXT", "text": {"value": "a"}}
    assert attrs[2] == {"name": "level", "type": "SCALAR", "scalar": {"value": 3.0}}
    assert attrs[3] == {"name": "ids", "type": "RANGES",
                        "ranges": {"range": [{"begin": 1, "end": 5}]}}
    assert attrs[4]["type"] == "SET"
    assert [attribute_value(a) for a in attrs] == ["a", "z1", "3", "[1-5]", "{x,y}"]
    assert parse_attributes("") == []
    with pytest.raises(ValueError):
        parse_attributes("novalue")
