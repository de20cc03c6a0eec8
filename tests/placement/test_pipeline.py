from collections import Counter

from scheduler.placement import Placed, Reason, place
from scheduler.placement import refusal

from tests.placement.helpers import agent, request, requests


def test_binpack_fills_one_agent_before_the_next():
    plan = place(requests(4, cpus=1), [agent(i, cpus=4) for i in range(3)], [])
    assert [a.agent_id for a in plan.assignments] == ["a0"] * 4
    assert plan.assignments[0].scores.keys() == {"binpack"}
    assert len(plan.decision_seconds) == 4


def test_spread_uses_every_agent():
    plan = place(requests(3, cpus=1), [agent(i, cpus=4) for i in range(3)], [], strategy="spread")
    assert sorted(a.agent_id for a in plan.assignments) == ["a0", "a1", "a2"]


def test_binpack_prefers_the_tighter_fit():
    agents = [agent(0, cpus=8, mem=8192), agent(1, cpus=1, mem=1024)]
    plan = place([request(cpus=1, mem=1024)], agents, [])
    assert plan.assignments[0].agent_id == "a1"


def test_unique_hostname_and_existing_tasks():
    agents = [agent(i) for i in range(3)]
    placed = [Placed("app:/web", "a0", "h0", {})]
    plan = place(requests(3, constraints=[["hostname", "UNIQUE"]]), agents, placed)
    assert sorted(a.agent_id for a in plan.assignments) == ["a1", "a2"]
    assert len(plan.unplaced) == 1
    report = plan.reports["app:/web"]
    assert report.placed == 2 and report.unplaced == 1
    assert report.by_reason == {Reason.UNFULFILLED_CONSTRAINT: 3}
    assert report.filtered_by == {"hostname:UNIQUE": 3}
    assert report.resolvable  # a task may go away


def test_group_by_spreads_evenly_over_racks():
    agents = [agent(i, cpus=8, rack="ab"[i % 2]) for i in range(4)]
    plan = place(requests(6, constraints=[["rack", "GROUP_BY"]]), agents, [])
    racks = Counter(agents[int(a.agent_id[1:])].attributes["rack"] for a in plan.assignments)
    assert racks == {"a": 3, "b": 3}


def test_max_per_cluster_is_like_unlike():
    agents = [agent(i, cpus=8, rack=f"r{i}", zone="z1" if i < 2 else "z2") for i in range(4)]
    plan = place(requests(4, constraints=[["zone", "IS", "z2"], ["rack", "MAX_PER", "1"]]), agents, [])
    assert sorted(a.agent_id for a in plan.assignments) == ["a2", "a3"]
    plan = place(requests(3, constraints=[["rack", "LIKE", "r[01]"]]), agents, [])
    assert {a.agent_id for a in plan.assignments} <= {"a0", "a1"}
    plan = place(requests(3, constraints=[["rack", "UNLIKE", "r[01]"]]), agents, [])
    assert {a.agent_id for a in plan.assignments} <= {"a2", "a3"}
    plan = place(requests(3, constraints=[["zone", "CLUSTER"]]), agents, [Placed("app:/web", "a3", "h3", {"zone": "z2"})])
    assert {a.agent_id for a in plan.assignments} <= {"a2", "a3"}


def test_filtered_and_exhausted_are_kept_apart_with_numbers():
    agents = [agent(0, cpus=1, rack="a"), agent(1, cpus=1, rack="b"), agent(2, cpus=8, rack="b")]
    agents[2].cpus = 1  # busy, but big enough in principle
    plan = place([request(cpus=2, constraints=[["rack", "IS", "b"]])], agents, [])
    report = plan.reports["app:/web"]
    assert report.unplaced == 1 and report.explained
    assert report.filtered == 1 and report.filtered_by == {"rack:IS:b": 1}
    assert report.exhausted == 2 and report.exhausted_by == {"cpus": 2}
    assert report.resolvable
    summary = {r["reason"]: r for r in report.reject_summary()}
    assert summary["UnfulfilledConstraint"] == {"reason": "UnfulfilledConstraint", "declined": 1, "processed": 3}
    assert summary["InsufficientCpus"] == {"reason": "InsufficientCpus", "declined": 2, "processed": 2}
    assert "1 filtered (rack:IS:b x1)" in report.explain()


def test_unresolvable_everywhere_suggests_a_long_refusal():
    plan = place([request(cpus=16)], [agent(0), agent(1)], [])
    assert not plan.reports["app:/web"].resolvable
    assert plan.refuse_seconds() == refusal.UNRESOLVABLE_SECONDS


def test_identical_failures_are_coalesced():
    plan = place(requests(5, mem=8192), [agent(0)], [])
    report = plan.reports["app:/web"]
    assert report.unplaced == 5 and report.coalesced_failures == 4
    assert report.evaluated == 1


def test_ports_are_chosen_and_not_reused():
    plan = place(requests(3, cpus=0.1, ports=2), [agent(0, ports=(31000, 31005))], [])
    ports = [p for a in plan.assignments for p in a.ports]
    assert sorted(ports) == list(range(31000, 31006))
    plan = place(requests(2, cpus=0.1, required_ports=[31000]), [agent(0), agent(1)], [])
    assert sorted(a.agent_id for a in plan.assignments) == ["a0", "a1"]
    assert all(a.ports == [31000] for a in plan.assignments)


def test_roles_and_gpus_and_disk():
    agents = [agent(0, role="prod", gpus=1), agent(1, disk=10)]
    plan = place([request(gpus=1, role="prod", owner="app:/g"), request(disk=100, owner="app:/d")], agents, [])
    assert [(a.request.owner, a.agent_id) for a in plan.assignments] == [("app:/g", "a0")]
    assert plan.reports["app:/d"].by_reason == {Reason.UNFULFILLED_ROLE: 1, Reason.INSUFFICIENT_DISK: 1}


def test_large_cluster_explanations_are_sampled():
    agents = [agent(i, cpus=1) for i in range(1000)]
    plan = place([request(cpus=2)], agents, [], explain_sample=100)
    report = plan.reports["app:/web"]
    assert report.sampled and report.evaluated == 100


def test_an_app_can_ask_for_spreading_with_a_label():
    agents = [agent(i, cpus=4) for i in range(3)]
    spread = requests(3, cpus=1, owner="app:/spread")
    for r in spread:
        r.labels["dockyard.strategy"] = "spread"
    plan = place(spread + requests(3, cpus=1, owner="app:/packed"), agents, [])
    by_owner = {}
    for a in plan.assignments:
        by_owner.setdefault(a.request.owner, set()).add(a.agent_id)
    assert len(by_owner["app:/spread"]) == 3 and len(by_owner["app:/packed"]) == 1


def test_static_constraints_and_roles_combine_per_agent():
    # Eligibility is answered per distinct attribute value, then narrowed by role.
    agents = [agent(0, rack="r1"), agent(1, rack="r1", role="prod"), agent(2, rack="r2"),
              agent(3, rack="r1", role="other"), agent(4)]  # a4 has no rack at all
    plan = place(requests(8, cpus=1, role="prod", constraints=[["rack", "LIKE", "r1"]]), agents, [])
    assert {a.agent_id for a in plan.assignments} == {"a0", "a1"}
    plan = place(requests(12, cpus=1, constraints=[["rack", "UNLIKE", "r1"]]), agents, [])
    assert {a.agent_id for a in plan.assignments} == {"a2", "a4"}  # no attribute: UNLIKE matches
