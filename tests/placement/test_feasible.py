from scheduler.placement.constraints import FieldCounts
from scheduler.placement.feasible import (
    AgentSlot, Ask, CountingConstraintFilter, PortFilter, Reason, ResourceFilter, RoleFilter,
    StaticConstraintFilter,
)

from tests.placement.helpers import agent, request


def ask_for(req, counts=None, known=None):
    return Ask(req, counts or {}, known or {})


def test_resource_filter_reports_every_short_dimension_with_numbers():
    slot = AgentSlot(0, agent(0, cpus=1, mem=256, disk=10, gpus=0))
    rejection = ResourceFilter().check(ask_for(request(cpus=2, mem=512, disk=5, gpus=1)), slot)
    assert rejection.reason is Reason.INSUFFICIENT_CPUS
    assert rejection.dimensions == ("cpus", "mem", "gpus")
    assert rejection.all_reasons() == (Reason.INSUFFICIENT_CPUS, Reason.INSUFFICIENT_MEMORY,
                                       Reason.INSUFFICIENT_GPUS)
    assert "mem: want 512, free 256 of 256" in rejection.detail
    assert not rejection.resolvable  # the agent is smaller than the request
    assert not rejection.filtered


def test_exhausted_but_big_enough_is_resolvable():
    view = agent(0, cpus=4)
    view.cpus = 0.5
    rejection = ResourceFilter().check(ask_for(request(cpus=1)), AgentSlot(0, view))
    assert rejection.reason is Reason.INSUFFICIENT_CPUS and rejection.resolvable
    assert ResourceFilter().check(ask_for(request(cpus=0.5)), AgentSlot(0, view)) is None


def test_role_filter():
    assert RoleFilter().check(ask_for(request(role="prod")), AgentSlot(0, agent(0))) is None
    assert RoleFilter().check(ask_for(request(role="prod")), AgentSlot(0, agent(0, role="prod"))) is None
    rejection = RoleFilter().check(ask_for(request()), AgentSlot(0, agent(0, role="prod")))
    assert rejection.reason is Reason.UNFULFILLED_ROLE and rejection.filtered and not rejection.resolvable


def test_port_filter_counts_and_required_ports():
    slot = AgentSlot(0, agent(0, ports=(31000, 31001)))
    assert PortFilter().check(ask_for(request(ports=2)), slot) is None
    assert PortFilter().check(ask_for(request(ports=3)), slot).reason is Reason.INSUFFICIENT_PORTS
    assert PortFilter().check(ask_for(request(required_ports=[31001])), slot) is None
    assert PortFilter().check(ask_for(request(required_ports=[8080])), slot).reason is Reason.INSUFFICIENT_PORTS


def test_static_and_counting_constraint_filters():
    slot = AgentSlot(0, agent(0, rack="a"))
    is_b = ask_for(request(constraints=[["rack", "IS", "b"]]))
    rejection = StaticConstraintFilter().check(is_b, slot)
    assert rejection.reason is Reason.UNFULFILLED_CONSTRAINT and not rejection.resolvable
    assert rejection.detail == "rack:IS:b"
    unique = ask_for(request(constraints=[["hostname", "UNIQUE"]]), {"hostname": FieldCounts({"h0": 1})})
    rejection = CountingConstraintFilter().check(unique, slot)
    assert rejection.reason is Reason.UNFULFILLED_CONSTRAINT and rejection.resolvable


def test_taking_resources_assigns_ports_and_shrinks_the_agent():
    slot = AgentSlot(0, agent(0, cpus=2, ports=(31000, 31003)))
    ports = slot.take(ask_for(request(cpus=1, ports=2)))
    assert ports == [31000, 31001] and slot.cpus == 1 and slot.port_count == 2
    assert slot.take(ask_for(request(cpus=0.5, required_ports=[31003]))) == [31003]
    assert slot.ports == [[31002, 31002]]
