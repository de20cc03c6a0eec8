"""The allocator alone: DRF order, filters (subset semantics), roles, suppression."""
from __future__ import annotations

from framework.local.master.allocator import Allocator
from framework.mesos.resources import Resources

AGENT = Resources.parse("cpus:4;mem:4096;disk:100;ports:[31000-31100]")


def make(agents: int = 2, frameworks: tuple[str, ...] = ("F0", "F1")) -> Allocator:
    allocator = Allocator(shuffle=False)
    for index in range(agents):
        allocator.add_agent(f"S{index}", AGENT)
    for framework_id in frameworks:
        allocator.add_framework(framework_id, ["*"])
    return allocator


def test_one_offer_per_agent_spread_by_drf() -> None:
    allocations = make().allocate(0.0)
    assert sorted((a.framework_id, a.agent_id) for a in allocations) == [("F0", "S0"),
                                                                         ("F1", "S1")]
    assert all(a.resources == AGENT for a in allocations)


def test_lowest_dominant_share_goes_first() -> None:
    allocator = make(agents=3)
    allocator.add_used("F0", "S2", "*", Resources.parse("cpus:3;mem:100"))
    allocations = allocator.allocate(0.0)
    assert {a.agent_id: a.framework_id for a in allocations}["S0"] == "F1"


def test_filters_hide_only_subsets_of_what_was_refused() -> None:
    allocator = make(agents=1, frameworks=("F0",))
    offer = allocator.allocate(0.0)[0]
    allocator.recover("F0", "S0", "*", offer.resources, refuse_seconds=5, now=0.0)
    assert allocator.allocate(1.0) == []  # filtered
    assert allocator.allocate(5.1)  # expired
    allocator = make(agents=1, frameworks=("F0",))
    allocator.add_used("F0", "S0", "*", Resources.parse("cpus:1;mem:100"))
    offer = allocator.allocate(0.0)[0]
    allocator.recover("F0", "S0", "*", offer.resources, refuse_seconds=5, now=0.0)
    allocator.recover("F0", "S0", "*", Resources.parse("cpus:1;mem:100"))  # a task ended
    again = allocator.allocate(1.0)
    assert again and again[0].resources == AGENT  # more than was refused: offered anyway


def test_refuse_zero_installs_no_filter() -> None:
    allocator = make(agents=1, frameworks=("F0",))
    offer = allocator.allocate(0.0)[0]
    allocator.recover("F0", "S0", "*", offer.resources, refuse_seconds=0, now=0.0)
    assert allocator.allocate(0.1)


def test_suppress_and_revive() -> None:
    allocator = make(agents=1, frameworks=("F0",))
    allocator.suppress("F0")
    assert allocator.allocate(0.0) == []
    allocator.revive("F0")
    offer = allocator.allocate(0.0)[0]
    allocator.recover("F0", "S0", "*", offer.resources, refuse_seconds=100, now=0.0)
    allocator.revive("F0", ["*"])  # clears filters too
    assert allocator.allocate(1.0)


def test_reserved_resources_go_only_to_their_role() -> None:
    allocator = Allocator(shuffle=False)
    allocator.add_agent("S0", Resources.parse("cpus:2;mem:256") +
                        Resources.parse("cpus:1;mem:64", role="ops"))
    allocator.add_framework("dev-fw", ["dev"])
    allocator.add_framework("ops-fw", ["ops"])
    allocations = {a.framework_id: a for a in allocator.allocate(0.0)}
    assert allocations["ops-fw"].resources.scalar("cpus", role="ops") == 1.0
    assert allocations["dev-fw"].resources.roles() == {"*"}
    assert {a.role for a in allocations.values()} == {"dev", "ops"}


def test_nothing_below_the_minimum_is_offered() -> None:
    allocator = Allocator()
    allocator.add_agent("S0", Resources.parse("cpus:0.005;mem:16;ports:[1-2]"))
    allocator.add_framework("F0", ["*"])
    assert allocator.allocate(0.0) == []


def test_inactive_frameworks_and_agents_get_nothing() -> None:
    allocator = make(agents=1, frameworks=("F0",))
    allocator.set_framework_active("F0", False)
    assert allocator.allocate(0.0) == []
    allocator.set_framework_active("F0", True)
    allocator.set_agent_active("S0", False)
    assert allocator.allocate(0.0) == []


def test_removing_a_framework_frees_its_resources() -> None:
    allocator = make(agents=1, frameworks=("F0", "F1"))
    first = allocator.allocate(0.0)[0]
    allocator.remove_framework(first.framework_id)
    again = allocator.allocate(0.0)
    assert [a.framework_id for a in again] == ["F1"] and again[0].resources == AGENT
    assert allocator.allocated("F1")["*"]["cpus"] == 4.0


def test_incremental_cycle_matches_the_textbook_reference() -> None:
    """The fast cycle keeps shares incrementally; a from-scratch DRF must agree exactly."""
    import random

    from bench._allocator_reference import ReferenceAllocator

    def scenario(cls: type[Allocator]) -> list[list[tuple[str, str, str, Resources]]]:
        rng = random.Random(11)
        allocator = cls(seed=3)
        for index in range(30):
            total = Resources.parse(f"cpus:{2 + index % 5};mem:{1024 * (1 + index % 3)};"
                                    "ports:[31000-31010]")
            if index % 4 == 0:
                total = total + Resources.parse("cpus:1;mem:512", role="ops")
            if index % 7 == 0:
                total = total + Resources.parse("cpus:2;mem:256", role="dev")
            allocator.add_agent(f"S{index}", total)
        roles = (["*"], ["dev"], ["ops"], ["dev", "ops"], ["*"], ["ops"])
        for index, fw_roles in enumerate(roles):
            allocator.add_framework(f"F{index}", fw_roles)
        task = Resources.parse("cpus:0.5;mem:100")
        seen = []
        for cycle in range(40):
            made = allocator.allocate(float(cycle))
            seen.append([(a.framework_id, a.agent_id, a.role, a.resources) for a in made])
            for allocation in made:
                launch = rng.random() < 0.3 and allocation.resources.contains(task)
                back = allocation.resources - task if launch else allocation.resources
                allocator.recover(allocation.framework_id, allocation.agent_id, allocation.role,
                                  back, refuse_seconds=rng.choice([0, 0, 2.0, 5.0]),
                                  now=float(cycle))
            if cycle == 10:
                allocator.suppress("F1")
            if cycle == 15:
                allocator.revive("F1")
                allocator.revive("F0", ["*"])
            if cycle == 20:
                allocator.remove_framework("F4")
                allocator.remove_agent("S3")
        return seen

    fast, reference = scenario(Allocator), scenario(ReferenceAllocator)
    assert sum(len(cycle) for cycle in fast) > 100  # the scenario does allocate
    assert fast == reference
