"""A textbook DRF cycle, the baseline and oracle for `bench_master`.

`Allocator.allocate` keeps shares and sort orders up to date incrementally,
which is fast and easy to get subtly wrong. This subclass recomputes every
dominant share and re-sorts roles and frameworks from scratch at each
decision, the way the algorithm is usually described. Both must produce the
very same allocations from the same state; the benchmark checks that every
cycle and reports how much faster the real one is.
"""
from __future__ import annotations

from typing import Iterable

from framework.local.master.allocator import (DRF_NAMES, MIN_CPUS, MIN_MEM, Allocation, Allocator,
                                       _filtered, _share)


class ReferenceAllocator(Allocator):
    """Same state and bookkeeping as `Allocator`; only the cycle is naive."""

    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Allocation]:
        agents = self._cycle_agents(agent_ids)
        if not agents:
            return []
        total = {k: v for k, v in self._total.items() if k in DRF_NAMES and v > 0}
        members: dict[str, list] = {}
        for fw in self._frameworks.values():
            if fw.active:
                for role in fw.roles:
                    if role not in fw.suppressed:
                        members.setdefault(role, []).append(fw)
        results: list[Allocation] = []
        for agent in agents:
            order = sorted(members, key=lambda r: (
                _share(self._role_allocated.get(r, {}), total)
                / self._role_weights.get(r, 1.0), r))
            for role in order:
                if agent.free.empty:
                    break
                available = (agent.free.allocatable_to(role) if agent.reserved_roles
                             else agent.free)
                scalars = available.scalars()
                if scalars.get("cpus", 0.0) < MIN_CPUS and scalars.get("mem", 0.0) < MIN_MEM:
                    continue
                ranked = sorted(members[role], key=lambda f, r=role: (
                    _share(f.allocated.get(r, {}), total), f.framework_id))
                for fw in ranked:
                    key = (fw.framework_id, role)
                    if key in agent.filters and _filtered(agent.filters, key, available, now):
                        continue
                    self._allocate(agent, fw.framework_id, role, available)
                    results.append(Allocation(fw.framework_id, agent.agent_id, role, available))
                    break
        return results
