"""The placement pipeline: source -> feasibility filters -> scoring -> selection.

`place()` is pure: requests, agents (their offers) and the tasks already running in,
a `Plan` out. This module alone decides the order of the chain:

1. *Source.* Agents in a fixed order. A fit index (a max-tree over free cpus and
   mem) jumps straight to the next agent that can hold the request, so a nearly
   full cluster is not rescanned for every instance; a per-ask cursor skips agents
   that already said no for good this round (every rejection except GROUP_BY's is
   monotone while free resources only shrink and counts only grow).
2. *Filters* (`feasible.py`), cheapest and most telling first: role, then the static
   constraints (ineligible agents are "filtered", as in Nomad, before anyone calls
   them "exhausted"), the counting constraints, scalar resources, ports. Filters
   that cannot apply to an ask (no constraints, no ports) are left out of its chain.
3. *Scoring* (`scoring.py`): the first `limit` feasible candidates are scored
   (bin-pack by default, spread on request) and the best is taken; ties go to the
   earlier agent (first-fit order).
4. *Reports.* When an ask finds no agent, one full scan explains why (every agent,
   every reason); its remaining identical requests only bump a coalesced count.

Per round, the counts the counting constraints need are computed once from
`placed` and updated by +1 per placement.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from scheduler.placement import refusal, scoring
from scheduler.placement.constraints import Constraint, FieldCounts, Operator, field_value, matches
from scheduler.placement.feasible import (
    AgentSlot,
    Ask,
    CountingConstraintFilter,
    Filter,
    PortFilter,
    Reason,
    Rejection,
    ResourceFilter,
    RoleFilter,
    StaticConstraintFilter,
)
from scheduler.placement.report import PlacementReport
from scheduler.placement.views import AgentView, Assignment, Placed
from scheduler.requests import TaskRequest

DEFAULT_LIMIT = {"binpack": 2, "spread": 4, "firstfit": 1}
STRATEGY_LABEL = "dockyard.strategy"
EXPLAIN_SAMPLE = 128  # agents looked at to explain an ask that fits nowhere (an even sample)
_EPS = 1e-9

_ROLE = RoleFilter()
_STATIC = StaticConstraintFilter()
_COUNTING = CountingConstraintFilter()
_RESOURCES = ResourceFilter()
_PORTS = PortFilter()


@dataclass
class Plan:
    assignments: list[Assignment] = field(default_factory=list)
    reports: dict[str, PlacementReport] = field(default_factory=dict)
    unplaced: list[TaskRequest] = field(default_factory=list)
    decision_seconds: list[float] = field(default_factory=list)  # one per request

    def used_agents(self) -> set[str]:
        return {a.agent_id for a in self.assignments}

    def refuse_seconds(self, waiting: bool = True, *, holding: bool = False) -> float:
        """How long this round's unused offers may be declined for (`refusal.py` says why)."""
        reports = [self.reports[r.owner] for r in self.unplaced if r.owner in self.reports]
        return refusal.refuse_seconds(waiting, reports, holding=holding)


class FitIndex:
    """Max-tree over agents' free cpus and mem: 'first agent at or after i that fits'."""

    def __init__(self, slots: list[AgentSlot]) -> None:
        self.n = len(slots)
        size = 1
        while size < max(self.n, 1):
            size *= 2
        self.size = size
        self.cpu = [-1.0] * (2 * size)
        self.mem = [-1.0] * (2 * size)
        for slot in slots:
            self.cpu[size + slot.index] = slot.cpus
            self.mem[size + slot.index] = slot.mem
        for node in range(size - 1, 0, -1):
            self.cpu[node] = max(self.cpu[2 * node], self.cpu[2 * node + 1])
            self.mem[node] = max(self.mem[2 * node], self.mem[2 * node + 1])

    def update(self, slot: AgentSlot) -> None:
        node = self.size + slot.index
        cpu, mem = self.cpu, self.mem
        cpu[node], mem[node] = slot.cpus, slot.mem
        node //= 2
        while node:
            left, right = 2 * node, 2 * node + 1
            c = cpu[left] if cpu[left] > cpu[right] else cpu[right]
            m = mem[left] if mem[left] > mem[right] else mem[right]
            if cpu[node] == c and mem[node] == m:
                break
            cpu[node], mem[node] = c, m
            node //= 2

    def next_fit(self, start: int, cpus: float, mem: float) -> int:
        """The smallest index >= start whose free cpus and mem cover the need, or -1.

        Walks right from the leaf: a node whose maxima fit is descended (left first);
        one that does not fit is skipped with its whole subtree.
        """
        if start >= self.n:
            return -1
        cpus -= _EPS
        mem -= _EPS
        cpu, memory, size = self.cpu, self.mem, self.size
        node = start + size
        while True:
            if cpu[node] >= cpus and memory[node] >= mem:
                if node >= size:
                    return node - size
                node = 2 * node
                continue
            while node & 1:
                node >>= 1
            if node == 0:
                return -1
            node += 1


def _chain(ask: Ask) -> list[Filter]:
    """The filters that can say no to this ask, in pipeline order (PreFilter skip)."""
    chain: list[Filter] = [_ROLE]
    if any(c.static for c in ask.constraints):
        chain.append(_STATIC)
    if ask.counting:
        chain.append(_COUNTING)
    chain.append(_RESOURCES)
    if ask.port_need:
        chain.append(_PORTS)
    return chain


class Columns:
    """Each agent's value of a constraint field, by position: built once per field per round.

    Static constraints, GROUP_BY groups and distinct-value counts all read these
    instead of asking every agent again.
    """

    def __init__(self, slots: list[AgentSlot]) -> None:
        self.slots = slots
        self.by_field: dict[str, list[str | None]] = {}

    def __call__(self, fieldname: str) -> list[str | None]:
        values = self.by_field.get(fieldname)
        if values is None:
            if fieldname in ("hostname", "@hostname"):
                values = [s.hostname for s in self.slots]
            else:
                key = fieldname[1:] if fieldname.startswith("@") else fieldname
                values = [s.attributes.get(key) for s in self.slots]
            self.by_field[fieldname] = values
        return values


def _fast_chain(chain: list[Filter], ask: Ask, eligible_only: bool) -> list[Filter]:
    """The checks left once the source has done its part (explanations use the full chain).

    Searching only eligible agents answers role and static constraints; every search
    yields only agents with room for the ask's cpus and mem (the fit index), so the
    resource filter is left out when the ask needs no disk or gpus either.
    """
    skip: set[Filter] = {_ROLE, _STATIC} if eligible_only else set()
    if ask.disk <= 0 and ask.gpus <= 0:
        skip.add(_RESOURCES)
    return [f for f in chain if f not in skip]


def _prepare(requests: Iterable[TaskRequest], columns: Columns, placed: Iterable[Placed]) -> list[Ask]:
    """Group identical requests and precompute their constraint counters once."""
    asks: dict[tuple, Ask] = {}
    owner_fields: dict[str, set[str]] = {}
    group_by_fields: set[str] = set()
    for request in requests:
        key = Ask.key(request)
        ask = asks.get(key)
        if ask is None:
            for c in request.constraints:
                if c.counting:
                    owner_fields.setdefault(request.owner, set()).add(c.field)
                    if c.operator is Operator.GROUP_BY:
                        group_by_fields.add(c.field)
            ask = asks[key] = Ask(request, {}, {})
        ask.requests.append(request)
    # Counters per owner, shared by that owner's asks of different shapes.
    counts: dict[str, dict[str, FieldCounts]] = {
        owner: {f: FieldCounts() for f in fields} for owner, fields in owner_fields.items()
    }
    if counts:
        # Tasks per (owner, agent) first: many tasks share an agent, and the field values
        # are looked up once per pair instead of once per task.
        pairs: dict[tuple[str, str], list] = {}
        for task in placed:
            if task.owner in counts:
                pair = pairs.get((task.owner, task.agent_id))
                if pair is None:
                    pairs[(task.owner, task.agent_id)] = [task, 1]
                else:
                    pair[1] += 1
        for (owner, _), (task, tasks) in pairs.items():
            for fieldname, field_counts in counts[owner].items():
                field_counts.add(field_value(fieldname, task.hostname, task.attributes), tasks)
    known = {f: len(set(columns(f)) - {None}) for f in group_by_fields}
    for ask in asks.values():
        ask.counts = counts.get(ask.owner, {})
        ask.known_values = known
        ask.compile()
    return list(asks.values())


def _monotone(rejection: Rejection, ask: Ask) -> bool:
    """Whether the agent stays rejected for this ask for the rest of the round."""
    return not (ask.group_by and rejection.reason is Reason.UNFULFILLED_CONSTRAINT)


def place(requests: list[TaskRequest], agents: list[AgentView], placed: list[Placed],
          strategy: str = "binpack", *, limit: int | None = None,
          explain_sample: int = EXPLAIN_SAMPLE,
          clock: Callable[[], float] = time.perf_counter) -> Plan:
    """Decide where each request runs this round; explain those that cannot run."""
    if strategy not in scoring.STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {scoring.STRATEGIES}")
    default_strategy, default_limit = strategy, limit
    plan = Plan()
    slots = [AgentSlot(i, view) for i, view in enumerate(agents)]
    index = FitIndex(slots)
    columns = Columns(slots)
    asks = _prepare(requests, columns, placed)
    # Asks keep queue order (first come, first placed). Sorting big asks first packed a
    # little more by resources but left more, smaller instances waiting: not worth it.
    eligible: dict[tuple, list[int]] = {}  # (role, static constraints) -> agent positions
    reserved = [s.index for s in slots if s.role != "*"]
    shared: dict[tuple, int] = {}  # stream -> position before which nothing fits it
    grouped: dict[tuple, dict[str, list[int]]] = {}  # (static, field) -> value -> positions
    rotation = 0  # spread: where the next search starts
    for ask in asks:
        report = plan.reports.get(ask.owner)
        if report is None:
            report = plan.reports[ask.owner] = PlacementReport(ask.owner)
        ask_started = clock()
        # An app may ask for its own strategy (label `dockyard.strategy`: spread|binpack).
        strategy = ask.request.labels.get(STRATEGY_LABEL, default_strategy)
        if strategy not in scoring.STRATEGIES:
            strategy = default_strategy
        limit = default_limit or DEFAULT_LIMIT[strategy]
        scorer = scoring.SCORERS[strategy]
        chain = _chain(ask)
        # Role and static constraints depend on the agent alone: answer them once per
        # round for every ask that shares them, and search only the eligible agents.
        static = (ask.role, tuple(c for c in ask.constraints if c.static))
        positions: list[int] | None = None
        if static != ("*", ()):
            positions = eligible.get(static)
            if positions is None:
                positions = eligible[static] = _eligible(ask, slots, columns, reserved)
        fast_chain = _fast_chain(chain, ask, positions is not None)
        stream = (static, ask.cpus, ask.mem)
        cursor = shared.get(stream, 0)
        group_by = next((c for c in ask.counting if c.operator is Operator.GROUP_BY), None)
        value_cursors: dict[str, int] = {}
        failed = False
        for request in ask.requests:
            started = clock()
            if failed:
                report.unplaced += 1
                report.coalesced_failures += 1
                plan.unplaced.append(request)
                plan.decision_seconds.append(clock() - started)
                continue
            candidates: list[tuple[float, int, AgentSlot, dict[str, float]]] = []
            if strategy == "spread":
                search = _wrapped(index, positions, rotation, ask)
                contiguous = False
            elif group_by is not None and strategy != "firstfit":
                # GROUP_BY: only agents whose value has the fewest tasks can say yes, so
                # search those values' agents instead of hearing everyone else say no.
                key = (static, group_by.field)
                groups = grouped.get(key)
                if groups is None:
                    groups = grouped[key] = _by_value(columns(group_by.field), positions)
                search = _grouped(index, groups, ask, group_by, value_cursors)
                contiguous = False
            else:
                start = max(cursor, shared.get(stream, 0))
                search = _stream(index, positions, start, ask)
                contiguous = True
                first = True
            for position in search:
                if contiguous:
                    cursor = position  # everything before it was skipped or refused for good
                    if first:
                        first = False
                        if start <= shared.get(stream, 0):
                            shared[stream] = position  # skipped for lack of cpus/mem alone
                slot = slots[position]
                rejection = None
                for f in fast_chain:
                    rejection = f.check(ask, slot)
                    if rejection is not None:
                        break
                if rejection is None:
                    contiguous = False
                    scores = scorer(ask, slot)
                    candidates.append((scoring.final(scores), -position, slot, scores))
                    if len(candidates) >= limit:
                        break
                else:
                    report.note(rejection)
                    if contiguous and _monotone(rejection, ask):
                        cursor = position + 1
                    else:
                        contiguous = False
            if not candidates:
                failed = True
                _explain(report, chain, ask, slots, explain_sample)
                report.unplaced += 1
                plan.unplaced.append(request)
                plan.decision_seconds.append(clock() - started)
                continue
            # Best score; on a tie the earlier agent (-position is larger). Positions differ,
            # so tuples never compare further than that.
            final, _, chosen, scores = max(candidates) if len(candidates) > 1 else candidates[0]
            report.accept(chosen.agent_id, scores, final)
            report.evaluated += len(candidates) - 1
            ports = chosen.take(ask)
            index.update(chosen)
            ask.record(chosen)
            report.placed += 1
            plan.assignments.append(Assignment(request, chosen.agent_id, chosen.hostname, ports, scores))
            if strategy == "spread":
                rotation = chosen.index + 1
            plan.decision_seconds.append(clock() - started)
        report.seconds += clock() - ask_started
    return plan


def _eligible(ask: Ask, slots: list[AgentSlot], columns: Columns, reserved: list[int]) -> list[int]:
    """Positions of the agents that pass the role and static-constraint filters.

    A static constraint is answered once per distinct value of its field (a cluster
    has a few racks, zones, disk types), not once per agent. `reserved` lists the
    agents offering a role other than "*" (usually none).
    """
    positions: list[int] | None = None
    for c in ask.constraints:
        if not c.static:
            continue
        values = columns(c.field)
        allowed = {v for v in set(values) if matches(c, v, None)}
        if positions is None:
            positions = [i for i, v in enumerate(values) if v in allowed]
        else:
            positions = [i for i in positions if values[i] in allowed]
    if positions is None:
        positions = list(range(len(slots)))
    if reserved:
        role = ask.role
        refused = {i for i in reserved if slots[i].role != role}
        if refused:
            positions = [i for i in positions if i not in refused]
    return positions


def _by_value(values: list[str | None], positions: list[int] | None) -> dict[str, list[int]]:
    """Agent positions per value of a field (only the eligible ones when given)."""
    out: dict[str, list[int]] = {}
    for position in (positions if positions is not None else range(len(values))):
        value = values[position]
        if value is not None:
            group = out.get(value)
            if group is None:
                out[value] = [position]
            else:
                group.append(position)
    return out


def _grouped(index: FitIndex, groups: dict[str, list[int]], ask: Ask, constraint: Constraint,
             cursors: dict[str, int]) -> Iterator[int]:
    """Agents with room, from the values GROUP_BY accepts now, each value's agents in order."""
    counts = ask.counts.get(constraint.field)
    seen = counts.counts if counts is not None else {}
    minimum = max(int(constraint.value) if constraint.value else 0, ask.known_values.get(constraint.field, 0))
    # matches() for GROUP_BY, once per request instead of once per value: an unused value,
    # or (once every group exists) a value with the fewest tasks.
    fewest = min(seen.values()) if seen and len(seen) >= minimum else -1
    for value, positions in groups.items():
        have = seen.get(value)
        if have is not None and have != fewest:
            continue
        first = True
        for position in _stream(index, positions, cursors.get(value, 0), ask):
            if first:
                cursors[value] = position  # the ones before lacked cpus or mem: for good
                first = False
            yield position


def _stream(index: FitIndex, positions: list[int] | None, start: int, ask: Ask) -> Iterator[int]:
    """Agents at or after `start` (among `positions` if given) with room for cpus and mem."""
    if positions is None:
        return _forward(index, start, ask)
    return _among(index, positions, start, ask)


def _among(index: FitIndex, positions: list[int], start: int, ask: Ask) -> Iterator[int]:
    """`_stream` over a list of eligible positions."""
    cpu, mem, size = index.cpu, index.mem, index.size
    cpus, memory = ask.cpus - _EPS, ask.mem - _EPS
    for i in range(bisect_left(positions, start), len(positions)):
        position = positions[i]
        if cpu[size + position] >= cpus and mem[size + position] >= memory:
            yield position


def _forward(index: FitIndex, start: int, ask: Ask, probe: int = 256) -> Iterator[int]:
    """Agents from `start` on that can hold the ask's cpus and mem, in order.

    Looks at the next leaves directly (cheap where the cluster has room) and asks
    the tree only to jump over a long full stretch.
    """
    cpu, mem, size, n = index.cpu, index.mem, index.size, index.n
    cpus, memory = ask.cpus - _EPS, ask.mem - _EPS
    position = start
    while position < n:
        stop = min(position + probe, n)
        while position < stop:
            if cpu[size + position] >= cpus and mem[size + position] >= memory:
                yield position
            position += 1
        if position < n:
            position = index.next_fit(position, ask.cpus, ask.mem)
            if position < 0:
                return


def _wrapped(index: FitIndex, positions: list[int] | None, start: int, ask: Ask) -> Iterator[int]:
    """Spread: search from `start` to the end, then from the beginning up to `start`."""
    start = start % index.n if index.n else 0
    yield from _stream(index, positions, start, ask)
    for position in _stream(index, positions, 0, ask):
        if position >= start:
            return
        yield position


def _explain(report: PlacementReport, chain: list[Filter], ask: Ask, slots: list[AgentSlot],
             sample: int = 0) -> None:
    """Look at the agents once, with every reason, for an ask that found none.

    Large clusters are sampled evenly (`sample` agents at most; Marathon's
    summary also covers only the last offers): an explanation must not cost
    more than the placements it explains.
    """
    if sample and len(slots) > sample:
        step = len(slots) / sample
        slots = [slots[int(i * step)] for i in range(sample)]
        report.sampled = True
    report.evaluated = report.filtered = report.exhausted = 0
    report.by_reason.clear()
    report.filtered_by.clear()
    report.exhausted_by.clear()
    report.unused.clear()
    report.explained = True
    resolvable = False
    for slot in slots:
        rejection = None
        for f in chain:
            rejection = f.check(ask, slot)
            if rejection is not None:
                break
        if rejection is None:  # only possible for GROUP_BY balancing races
            resolvable = True
            continue
        report.reject(slot.agent_id, slot.hostname, rejection)
        resolvable = resolvable or rejection.resolvable
    report.resolvable = resolvable
