"""The embedded master's allocator: weighted DRF over roles, then frameworks.

Pure bookkeeping, no I/O and no clock of its own (the caller passes `now`), so
it can be unit-tested and benchmarked alone. It mirrors what a framework can
observe of Mesos's hierarchical allocator: each cycle walks the agents; for each
agent, roles in DRF order, then that role's frameworks in DRF order; the first
framework that wants the agent's free resources for the role gets all of them
(one offer per agent and role). Offered and used resources both count as
allocated, as in Mesos; they return through `recover`.

Two filters of Mesos's allocator (src/master/allocator/mesos/hierarchical.cpp) apply
on top: an agent with `gpus` is offered only to frameworks with the GPU_RESOURCES
capability (`--filter_gpu_resources`, on by default in Mesos), and roles with a quota
(UPDATE_QUOTA) are served in Mesos's two stages: first the roles whose guarantees
are not yet met, up to those guarantees; then everyone, each role within its limits,
and never eating into the headroom the unmet guarantees still need.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from framework.mesos.resources import UNRESERVED, Resources

# Mesos's default --min_allocatable_resources is "cpus:0.01|mem:32": either suffices.
MIN_CPUS = 0.01
MIN_MEM = 32.0
MAX_REFUSE_SECONDS = 365 * 86400.0
DRF_NAMES = ("cpus", "mem", "disk", "gpus")
_NOTHING = Resources()  # immutable, so one shared empty value will do


@dataclass(frozen=True)
class Quota:
    """A role's quota (master.proto QuotaConfig): scalar guarantees and limits by resource name.

    A name without a limit is unlimited; guarantees are what the role is offered before
    anyone else and what other roles may not take while the role has not got it."""

    guarantees: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)


class Allocation(NamedTuple):
    """Resources of one agent given to one framework for one role: becomes one offer.

    A NamedTuple rather than a frozen dataclass: a busy cycle makes a thousand of
    them, and a frozen dataclass's constructor costs several times more.
    """

    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass
class _Filter:
    refused: Resources
    expires: float


@dataclass
class _Agent:
    agent_id: str
    total: Resources
    free: Resources
    reserved_roles: frozenset[str]
    active: bool = True
    has_gpus: bool = False
    allocations: dict[tuple[str, str], Resources] = field(default_factory=dict)
    # (framework_id, role) -> refusal filters. Kept on the agent so that the
    # cycle looks at filters only for agents that have some.
    filters: dict[tuple[str, str], list["_Filter"]] = field(default_factory=dict)


@dataclass
class _Framework:
    framework_id: str
    roles: tuple[str, ...]
    active: bool = True
    suppressed: set[str] = field(default_factory=set)
    gpu_aware: bool = False  # GPU_RESOURCES: may be offered agents that have gpus
    # role -> scalar name -> allocated amount (DRF input)
    allocated: dict[str, dict[str, float]] = field(default_factory=dict)


class Allocator:
    """DRF allocator state; the master drives it from its single event loop."""

    def __init__(self, *, seed: int | None = None, shuffle: bool = True) -> None:
        self._agents: dict[str, _Agent] = {}
        self._frameworks: dict[str, _Framework] = {}
        self._role_allocated: dict[str, dict[str, float]] = {}
        self._role_weights: dict[str, float] = {}
        self._total: dict[str, float] = {}
        self._random = random.Random(seed)
        self._shuffle = shuffle
        self._quotas: dict[str, Quota] = {}

    # -- agents ------------------------------------------------------------------
    def add_agent(self, agent_id: str, total: Resources,
                  used: dict[tuple[str, str], Resources] | None = None) -> None:
        """Add an agent; `used` maps (framework_id, role) to resources its tasks hold."""
        if agent_id in self._agents:
            self.remove_agent(agent_id)
        agent = _Agent(agent_id, total, total, frozenset(total.roles() - {UNRESERVED}),
                       has_gpus=total.scalar("gpus") > 0)
        self._agents[agent_id] = agent
        self._add_total(total, +1)
        for (framework_id, role), resources in (used or {}).items():
            self._allocate(agent, framework_id, role, resources)

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        for (framework_id, role), resources in list(agent.allocations.items()):
            self._account(framework_id, role, resources, -1)
        self._add_total(agent.total, -1)

    def set_agent_active(self, agent_id: str, active: bool) -> None:
        if agent_id in self._agents:
            self._agents[agent_id].active = active

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    # -- frameworks --------------------------------------------------------------
    def add_framework(self, framework_id: str, roles: Iterable[str], *, active: bool = True,
                      suppressed: Iterable[str] = (), gpu_aware: bool = False) -> None:
        existing = self._frameworks.get(framework_id)
        if existing is not None:
            existing.roles = tuple(roles)
            existing.active = active
            existing.suppressed = set(suppressed)
            existing.gpu_aware = gpu_aware
            for role in existing.roles:
                self._role_allocated.setdefault(role, {})
            return
        fw = _Framework(framework_id, tuple(roles), active, set(suppressed), gpu_aware)
        self._frameworks[framework_id] = fw
        for role in fw.roles:
            self._role_allocated.setdefault(role, {})

    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework and free everything it held on every agent."""
        for agent in self._agents.values():
            for key in [k for k in agent.allocations if k[0] == framework_id]:
                resources = agent.allocations.pop(key)
                agent.free = agent.free + resources
                self._account(framework_id, key[1], resources, -1)
        self._frameworks.pop(framework_id, None)
        for agent in self._agents.values():
            for key in [k for k in agent.filters if k[0] == framework_id]:
                del agent.filters[key]

    def set_framework_active(self, framework_id: str, active: bool) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None:
            fw.active = active

    def suppress(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None:
            fw.suppressed |= set(roles or fw.roles)

    def revive(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Unsuppress the roles (all when empty) and drop their filters."""
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        targets = set(roles or fw.roles)
        fw.suppressed -= targets
        for agent in self._agents.values():
            if agent.filters:
                for key in [k for k in agent.filters if k[0] == framework_id and k[1] in targets]:
                    del agent.filters[key]

    # -- quota ---------------------------------------------------------------------
    def update_quota(self, role: str, quota: Quota | None) -> None:
        """Set a role's quota; None (or no guarantees and no limits) is Mesos's default quota."""
        if quota is None or (not quota.guarantees and not quota.limits):
            self._quotas.pop(role, None)
        else:
            self._quotas[role] = quota

    def quotas(self) -> dict[str, Quota]:
        return dict(self._quotas)

    def consumed(self, role: str) -> dict[str, float]:
        """What a role and its sub-roles hold (offered or used): its quota consumption."""
        out: dict[str, float] = {}
        prefix = role + "/"
        for name, amounts in self._role_allocated.items():
            if name == role or name.startswith(prefix):
                for resource, amount in amounts.items():
                    out[resource] = out.get(resource, 0.0) + amount
        return out

    def suppressed_roles(self, framework_id: str) -> set[str]:
        fw = self._frameworks.get(framework_id)
        return set(fw.suppressed) if fw else set()

    # -- resources flowing back --------------------------------------------------
    def recover(self, framework_id: str, agent_id: str, role: str, resources: Resources,
                *, refuse_seconds: float | None = None, now: float = 0.0) -> None:
        """Return resources (declined, unused or freed by a finished task).

        `refuse_seconds` > 0 installs a filter: offers of this agent to this
        framework and role that are a subset of `resources` are withheld until then.
        """
        agent = self._agents.get(agent_id)
        if agent is None or resources.empty:
            return
        key = (framework_id, role)
        held = agent.allocations.get(key)
        if held is None:
            return
        if not held.contains(resources):
            resources = held - (held - resources)  # never give back more than was held
        left = held - resources
        if left.empty:
            del agent.allocations[key]
        else:
            agent.allocations[key] = left
        agent.free = agent.free + resources
        self._account(framework_id, role, resources, -1)
        if refuse_seconds and refuse_seconds > 0:
            refuse_seconds = min(refuse_seconds, MAX_REFUSE_SECONDS)
            new = _Filter(resources, now + refuse_seconds)
            # Drop filters that can no longer matter: expired ones, and ones the new
            # filter covers (refused no more, expiring no later), which could never
            # hide an offer the new one lets through. A busy master declines every
            # cycle, and the garbage collector's pauses grow with what piles up here.
            filters = agent.filters
            kept = [f for f in filters.get(key, ())
                    if f.expires > now and not (f.expires <= new.expires
                                                and resources.contains(f.refused))]
            kept.append(new)
            filters[key] = kept
            for stale in [k for k, fs in filters.items() if all(f.expires <= now for f in fs)]:
                del filters[stale]  # other frameworks' filters that lapsed unseen

    def add_used(self, framework_id: str, agent_id: str, role: str, resources: Resources) -> None:
        """Count resources as allocated without an offer (tasks an agent reports)."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self._allocate(agent, framework_id, role, resources)

    # -- the cycle -----------------------------------------------------------------
    def _cycle_agents(self, agent_ids: Iterable[str] | None) -> list[_Agent]:
        """The active agents with something free (all, or the given ones), in this cycle's
        order; none while no framework is there to offer to."""
        if not self._frameworks:
            return []
        if agent_ids is None:
            agents = [a for a in self._agents.values() if a.active and not a.free.empty]
        else:
            agents = [a for a in (self._agents.get(i) for i in agent_ids)
                      if a is not None and a.active and not a.free.empty]
        if self._shuffle:
            self._random.shuffle(agents)
        return agents

    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Allocation]:
        """Run one allocation cycle over all agents (or the given ones).

        The master's event loop is blocked for the whole cycle, so the hot loop
        keeps DRF shares up to date incrementally (an allocation only adds, so a
        share can only grow by what was added) instead of recomputing them.
        """
        agents = self._cycle_agents(agent_ids)
        if not agents:
            return []
        if self._quotas:
            return self._allocate_with_quota(now, agents)
        total = {k: v for k, v in self._total.items() if k in DRF_NAMES and v > 0}
        role_members: dict[str, list[_Framework]] = {}
        for fw in self._frameworks.values():
            if not fw.active:
                continue
            for role in fw.roles:
                if role not in fw.suppressed:
                    role_members.setdefault(role, []).append(fw)
        if not role_members:
            return []
        # role -> framework_id -> dominant share of that framework within the role
        shares: dict[str, dict[str, float]] = {}
        for role, members in role_members.items():
            role_shares = shares[role] = {}
            for fw in members:
                role_shares[fw.framework_id] = _share(fw.allocated.get(role, {}), total)
            members.sort(key=lambda f, s=role_shares: (s[f.framework_id], f.framework_id))
        weights = self._role_weights
        raw_role_share = {role: _share(self._role_allocated.get(role, {}), total)
                          for role in role_members}
        role_share = {role: raw_role_share[role] / weights.get(role, 1.0)
                      for role in role_members}

        def role_share_key(role: str) -> tuple[float, str]:
            return role_share[role], role

        roles = sorted(role_members, key=role_share_key)
        several_roles = len(roles) > 1
        role_allocated_all = self._role_allocated
        results: list[Allocation] = []
        for agent in agents:
            agent_filters = agent.filters
            reserved = agent.reserved_roles
            agent_id = agent.agent_id
            allocations = agent.allocations
            for role in tuple(roles):  # `roles` is re-sorted as shares change
                free = agent.free
                if free.empty:
                    break
                available = free.allocatable_to(role) if reserved else free
                scalars = available.scalars()
                if (scalars.get("cpus", 0.0) < MIN_CPUS and scalars.get("mem", 0.0) < MIN_MEM):
                    continue  # nothing allocatable (this includes `available` empty)
                members = role_members[role]
                for index, fw in enumerate(members):
                    if agent.has_gpus and not fw.gpu_aware:
                        continue  # hierarchical.cpp: GPU agents only for GPU_RESOURCES frameworks
                    framework_id = fw.framework_id
                    akey = (framework_id, role)
                    if agent_filters and akey in agent_filters and \
                            _filtered(agent_filters, akey, available, now):
                        continue
                    # What `_allocate` does, inlined, keeping DRF shares current on
                    # the way: the shares can only grow by the fractions just added.
                    held = allocations.get(akey)
                    allocations[akey] = available if held is None else held + available
                    # the whole of `free` is the common case: skip the subtraction
                    agent.free = _NOTHING if available is free else free - available
                    role_allocated = role_allocated_all.setdefault(role, {})
                    fw_allocated = fw.allocated.setdefault(role, {})
                    role_shares = shares[role]
                    fw_share = role_shares[framework_id]
                    role_raw = raw_role_share[role]
                    for name, value in scalars.items():
                        left = role_allocated.get(name, 0.0) + value
                        role_allocated[name] = left = left if left > 1e-9 else 0.0
                        mine = fw_allocated.get(name, 0.0) + value
                        fw_allocated[name] = mine = mine if mine > 1e-9 else 0.0
                        cap = total.get(name)
                        if cap:
                            if mine / cap > fw_share:
                                fw_share = mine / cap
                            if left / cap > role_raw:
                                role_raw = left / cap
                    results.append(Allocation(framework_id, agent_id, role, available))
                    role_shares[framework_id] = fw_share
                    _resort(members, index, role_shares)
                    raw_role_share[role] = role_raw
                    role_share[role] = role_raw / weights.get(role, 1.0)
                    if several_roles:
                        _bubble_right(roles, role, role_share)
                    break
        return results

    def _allocate_with_quota(self, now: float, agents: list[_Agent]) -> list[Allocation]:
        """A cycle while some role has a quota (hierarchical.cpp `__allocate`, its two stages).

        Slower than the plain cycle (shares are recomputed per decision), which runs
        whenever no quota is set. Consumption is what a role (and its sub-roles) holds,
        offered or used."""
        members_by_role: dict[str, list[_Framework]] = {}
        for fw in self._frameworks.values():
            if fw.active:
                for role in fw.roles:
                    if role not in fw.suppressed:
                        members_by_role.setdefault(role, []).append(fw)
        if not members_by_role:
            return []
        required = self._required_headroom()
        available = self._available_headroom()
        results: list[Allocation] = []

        def grant(agent: _Agent, fw: _Framework, role: str, resources: Resources) -> None:
            self._allocate(agent, fw.framework_id, role, resources)
            for name, amount in resources.for_role(UNRESERVED).scalars().items():
                available[name] = available.get(name, 0.0) - amount
            results.append(Allocation(fw.framework_id, agent.agent_id, role, resources))

        # Stage 1: roles with unmet guarantees, up to those guarantees (plus what comes with them).
        for agent in agents:
            for role in self._sorted_roles(r for r in members_by_role if self._unmet(r)):
                unmet = self._unmet(role)
                if not unmet or agent.free.empty:
                    continue
                for fw in self._sorted_members(members_by_role[role], role):
                    offer = self._stage_one(agent, fw, role, unmet, required, available, now)
                    if offer is not None:
                        for name, amount in offer.for_role(UNRESERVED).scalars().items():
                            if name in required:
                                required[name] = max(0.0, required[name] - min(amount, unmet.get(name, 0.0)))
                        grant(agent, fw, role, offer)
                        break
        # Stage 2: every role, within its limits, leaving the headroom unmet guarantees need.
        for agent in agents:
            for role in self._sorted_roles(members_by_role):
                if agent.free.empty:
                    break
                for fw in self._sorted_members(members_by_role[role], role):
                    offer = self._stage_two(agent, fw, role, required, available, now)
                    if offer is not None:
                        grant(agent, fw, role, offer)
                        break
        return results

    def _eligible(self, agent: _Agent, fw: _Framework, role: str, offer: Resources, now: float) -> bool:
        """Allocatable (Mesos's minimum), GPU-aware where needed, and not refused by a filter."""
        scalars = offer.scalars()
        if scalars.get("cpus", 0.0) < MIN_CPUS and scalars.get("mem", 0.0) < MIN_MEM:
            return False
        if agent.has_gpus and not fw.gpu_aware:
            return False
        key = (fw.framework_id, role)
        return not (key in agent.filters and _filtered(agent.filters, key, offer, now))

    def _stage_one(self, agent: _Agent, fw: _Framework, role: str, unmet: dict[str, float],
                   required: dict[str, float], available: dict[str, float], now: float) -> Resources | None:
        free = agent.free.allocatable_to(role)
        reserved = free.for_role(role) if role != UNRESERVED else Resources()
        unreserved = free.for_role(UNRESERVED)
        limit = self._limit_headroom(role)
        scalars = unreserved.scalar_part()
        guaranteed = scalars.named(unmet).capped({n: min(unmet[n], limit.get(n, math.inf)) for n in unmet})
        offer = reserved + guaranteed
        if offer.empty:
            return None
        # With resources toward its guarantee come those quota says nothing about: the non-scalar
        # ones (ports), and other scalars as far as the headroom others need allows.
        others = scalars.named(scalars.names() - set(unmet))
        caps = {n: min(available.get(n, 0.0) - required.get(n, 0.0), limit.get(n, math.inf))
                for n in others.names() if n in required or n in limit}
        offer = offer + (unreserved - scalars) + others.capped(caps)
        return offer if self._eligible(agent, fw, role, offer, now) else None

    def _stage_two(self, agent: _Agent, fw: _Framework, role: str, required: dict[str, float],
                   available: dict[str, float], now: float) -> Resources | None:
        free = agent.free.allocatable_to(role) if agent.reserved_roles else agent.free
        reserved = free.for_role(role) if role != UNRESERVED else Resources()
        unreserved = free.for_role(UNRESERVED)
        limit = self._limit_headroom(role)
        surplus = {n: available.get(n, 0.0) - required[n] for n in required if required[n] > 0}
        caps = {n: min(limit.get(n, math.inf), surplus.get(n, math.inf)) for n in set(limit) | set(surplus)}
        offer = reserved + unreserved.capped(caps)
        if offer.empty:
            return None
        return offer if self._eligible(agent, fw, role, offer, now) else None

    def _unmet(self, role: str) -> dict[str, float]:
        """What a role's guarantees still miss, by resource name."""
        quota = self._quotas.get(role)
        if quota is None or not quota.guarantees:
            return {}
        consumed = self.consumed(role)
        return {n: g - consumed.get(n, 0.0) for n, g in quota.guarantees.items() if g - consumed.get(n, 0.0) > 1e-9}

    def _limit_headroom(self, role: str) -> dict[str, float]:
        """How much more a role may hold under its own limits and its ancestors' (hierarchical)."""
        out: dict[str, float] = {}
        parts = role.split("/")
        for depth in range(1, len(parts) + 1):
            ancestor = "/".join(parts[:depth])
            quota = self._quotas.get(ancestor)
            if quota is None:
                continue
            consumed = self.consumed(ancestor)
            for name, limit in quota.limits.items():
                left = max(0.0, limit - consumed.get(name, 0.0))
                out[name] = min(out.get(name, left), left)
        return out

    def _required_headroom(self) -> dict[str, float]:
        """The unreserved scalars all unmet guarantees still need (hierarchical.cpp `requiredHeadroom`)."""
        required: dict[str, float] = {}
        for role in self._quotas:
            for name, amount in self._unmet(role).items():
                required[name] = required.get(name, 0.0) + amount
        return required

    def _available_headroom(self) -> dict[str, float]:
        """Unreserved scalars free on active agents (hierarchical.cpp `availableHeadroom`)."""
        available: dict[str, float] = {}
        for agent in self._agents.values():
            if agent.active:
                for name, amount in agent.free.for_role(UNRESERVED).scalars().items():
                    available[name] = available.get(name, 0.0) + amount
        return available

    def _sorted_roles(self, roles: Iterable[str]) -> list[str]:
        total = {k: v for k, v in self._total.items() if k in DRF_NAMES and v > 0}
        return sorted(roles, key=lambda r: (_share(self._role_allocated.get(r, {}), total)
                                            / self._role_weights.get(r, 1.0), r))

    def _sorted_members(self, members: list[_Framework], role: str) -> list[_Framework]:
        total = {k: v for k, v in self._total.items() if k in DRF_NAMES and v > 0}
        return sorted(members, key=lambda f: (_share(f.allocated.get(role, {}), total), f.framework_id))

    # -- introspection (metrics, tests) ----------------------------------------------
    def total(self) -> dict[str, float]:
        return dict(self._total)

    def allocated(self, framework_id: str) -> dict[str, dict[str, float]]:
        fw = self._frameworks.get(framework_id)
        return {r: dict(v) for r, v in fw.allocated.items()} if fw else {}

    def free(self, agent_id: str) -> Resources:
        agent = self._agents.get(agent_id)
        return agent.free if agent else Resources()

    # -- internals -------------------------------------------------------------------
    def _allocate(self, agent: _Agent, framework_id: str, role: str, resources: Resources) -> None:
        key = (framework_id, role)
        held = agent.allocations.get(key)
        agent.allocations[key] = resources if held is None else held + resources
        agent.free = agent.free - resources
        self._account(framework_id, role, resources, +1)

    def _account(self, framework_id: str, role: str, resources: Resources, sign: int) -> None:
        scalars = resources.scalars()
        _add_scalars(self._role_allocated.setdefault(role, {}), scalars, sign)
        fw = self._frameworks.get(framework_id)
        if fw is not None:
            _add_scalars(fw.allocated.setdefault(role, {}), scalars, sign)

    def _add_total(self, resources: Resources, sign: int) -> None:
        for name, value in resources.scalars().items():
            left = self._total.get(name, 0.0) + sign * value
            self._total[name] = left if left > 1e-9 else 0.0


def _share(allocated: dict[str, float], total: dict[str, float]) -> float:
    """DRF dominant share: the largest fraction of any resource held."""
    best = 0.0
    for name, amount in allocated.items():
        cap = total.get(name)
        if cap:
            fraction = amount / cap
            if fraction > best:
                best = fraction
    return best


def _resort(members: list[_Framework], index: int, shares: dict[str, float]) -> None:
    """Move the framework at `index` (whose share just grew) to its sorted place."""
    fw = members.pop(index)
    key = (shares[fw.framework_id], fw.framework_id)
    position = index
    while position < len(members):
        other = members[position]
        if (shares[other.framework_id], other.framework_id) > key:
            break
        position += 1
    members.insert(position, fw)


def _bubble_right(roles: list[str], role: str, share: dict[str, float]) -> None:
    """Restore (share, name) order after `role`'s share grew: it can only move right."""
    index = roles.index(role)
    key = (share[role], role)
    last = len(roles) - 1
    while index < last:
        following = roles[index + 1]
        if (share[following], following) > key:
            break
        roles[index] = following
        index += 1
    roles[index] = role


def _filtered(filters: dict[tuple[str, str], list[_Filter]], key: tuple[str, str],
              available: Resources, now: float) -> bool:
    """True when a live filter refused a superset of `available`; drops expired ones."""
    current = filters[key]
    for f in current:
        if f.expires <= now:  # rare: copy only when something expired
            current = [f for f in current if f.expires > now]
            if not current:
                del filters[key]
                return False
            filters[key] = current
            break
    for f in current:
        # An agent whose declined offer came back untouched offers the very same
        # resources again (often the very same object): identity or equality (a
        # dict comparison in C) settle the common case without range arithmetic.
        refused = f.refused
        if refused is available or refused == available or refused.contains(available):
            return True
    return False


def _add_scalars(target: dict[str, float], scalars: dict[str, float], sign: int) -> None:
    for name, value in scalars.items():
        left = target.get(name, 0.0) + sign * value
        target[name] = left if left > 1e-9 else 0.0
