"""The allocator's quota stages and GPU filter on their own (src/master/allocator/mesos/hierarchical.cpp)."""
from __future__ import annotations

from framework.local.master.allocator import Allocator, Quota
from framework.mesos.resources import Resources


def _allocator(*agents: str) -> Allocator:
    allocator = Allocator(shuffle=False)
    for index, text in enumerate(agents):
        allocator.add_agent(f"S{index}", Resources.parse(text))
    return allocator


def test_a_limit_holds_for_the_role_and_its_sub_roles_across_agents() -> None:
    allocator = _allocator("cpus:4;mem:4096", "cpus:4;mem:4096")
    allocator.add_framework("web", ["eng/web"])
    allocator.add_framework("db", ["eng/db"])
    allocator.update_quota("eng", Quota(limits={"cpus": 3.0}))
    given = allocator.allocate(0.0)
    assert sum(a.resources.scalar("cpus") for a in given) == 3.0
    assert allocator.consumed("eng")["cpus"] == 3.0
    assert allocator.allocate(1.0) == []  # at its limit: nothing more until something comes back


def test_unmet_guarantees_come_first_and_keep_their_headroom() -> None:
    allocator = _allocator("cpus:2;mem:1024", "cpus:2;mem:1024")
    allocator.add_framework("other", ["other"])
    allocator.update_quota("dev", Quota(guarantees={"cpus": 3.0}, limits={"cpus": 3.0}))
    # dev has no framework yet: its 3 cpus stay free, `other` gets what is left over them
    assert sum(a.resources.scalar("cpus") for a in allocator.allocate(0.0)) == 1.0
    allocator.add_framework("dev", ["dev"])
    assert sum(a.resources.scalar("cpus") for a in allocator.allocate(1.0) if a.framework_id == "dev") == 3.0


def test_gpu_agents_go_only_to_gpu_aware_frameworks_with_or_without_quota() -> None:
    for quota in (None, Quota(limits={"cpus": 100.0})):
        allocator = _allocator("cpus:4;mem:1024;gpus:1")
        allocator.add_framework("plain", ["*"])
        allocator.update_quota("other", quota)
        assert allocator.allocate(0.0) == []
        allocator.add_framework("aware", ["*"], gpu_aware=True)
        assert [a.framework_id for a in allocator.allocate(1.0)] == ["aware"]
