"""Feasibility filters: one small class per question, each saying no with a reason.

Every filter has `check(ask, agent) -> Rejection | None`. `ask` is a request prepared
once per round (`Ask`: needs and constraint counters), `agent` the agent's state in
this round (`AgentSlot`, whose free resources shrink as the pipeline places). Filters
never call each other; `pipeline.py` decides their order.

Reasons are Marathon's `NoOfferMatchReason` names, so `/v2/queue` can dump counters.
A rejection is *filtered* (the agent is not eligible: role, constraint) or
*exhausted* (eligible but short of capacity), as in Nomad; and `resolvable` is False
when waiting will not change the answer (wrong role, attribute mismatch, an agent
smaller than the request).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable, Protocol

from scheduler.placement.constraints import Constraint, FieldCounts, Operator, field_value, matches
from scheduler.placement.views import AgentView
from scheduler.requests import TaskRequest


class Reason(str, Enum):
    UNFULFILLED_ROLE = "UnfulfilledRole"
    UNFULFILLED_CONSTRAINT = "UnfulfilledConstraint"
    INSUFFICIENT_CPUS = "InsufficientCpus"
    INSUFFICIENT_MEMORY = "InsufficientMemory"
    INSUFFICIENT_DISK = "InsufficientDisk"
    INSUFFICIENT_GPUS = "InsufficientGpus"
    INSUFFICIENT_PORTS = "InsufficientPorts"


# Marathon's funnel order for rejectSummary: the order an offer is looked at.
REASON_ORDER = (
    Reason.UNFULFILLED_ROLE,
    Reason.UNFULFILLED_CONSTRAINT,
    Reason.INSUFFICIENT_CPUS,
    Reason.INSUFFICIENT_MEMORY,
    Reason.INSUFFICIENT_DISK,
    Reason.INSUFFICIENT_GPUS,
    Reason.INSUFFICIENT_PORTS,
)
FILTERING_REASONS = frozenset({Reason.UNFULFILLED_ROLE, Reason.UNFULFILLED_CONSTRAINT})
DIMENSION_REASON = {
    "cpus": Reason.INSUFFICIENT_CPUS,
    "mem": Reason.INSUFFICIENT_MEMORY,
    "disk": Reason.INSUFFICIENT_DISK,
    "gpus": Reason.INSUFFICIENT_GPUS,
    "ports": Reason.INSUFFICIENT_PORTS,
}
_EPS = 1e-9


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str = ""  # "mem: want 512, free 256 of 2048"
    resolvable: bool = True  # False: this agent will not change by itself
    dimensions: tuple[str, ...] = ()  # every short dimension, for exhausted counts
    reasons: tuple[Reason, ...] = ()  # every reason (a resource check may find several)

    @property
    def filtered(self) -> bool:
        return self.reason is Reason.UNFULFILLED_CONSTRAINT or self.reason is Reason.UNFULFILLED_ROLE

    def all_reasons(self) -> tuple[Reason, ...]:
        return self.reasons or (self.reason,)


class AgentSlot:
    """One agent during one placement round: free resources that shrink as we place."""

    __slots__ = ("index", "view", "agent_id", "hostname", "attributes", "role", "cpus", "mem",
                 "disk", "gpus", "ports", "port_count", "total_cpus", "total_mem", "total_disk",
                 "total_gpus", "owners")

    def __init__(self, index: int, view: AgentView) -> None:
        # Built for every agent every round: plain assignments, no sorting unless needed.
        self.index = index
        self.view = view
        self.agent_id = view.agent_id
        self.hostname = view.hostname
        self.attributes = view.attributes
        self.role = view.role or "*"
        self.cpus = cpus = view.cpus
        self.mem = mem = view.mem
        self.disk = disk = view.disk
        self.gpus = gpus = view.gpus
        ranges = view.port_ranges
        if len(ranges) == 1:
            begin, end = ranges[0]
            if end >= begin:
                self.ports: list[list[int]] = [[begin, end]]
                self.port_count = end - begin + 1
            else:
                self.ports, self.port_count = [], 0
        else:
            self.ports = []
            count = 0
            for begin, end in sorted(ranges):
                if end >= begin:
                    self.ports.append([begin, end])
                    count += end - begin + 1
            self.port_count = count
        total = view.total_cpus
        self.total_cpus = total if total > cpus else cpus
        total = view.total_mem
        self.total_mem = total if total > mem else mem
        total = view.total_disk
        self.total_disk = total if total > disk else disk
        total = view.total_gpus
        self.total_gpus = total if total > gpus else gpus
        self.owners: dict[str, int] = {}  # tasks per owner placed here (scoring, anti-affinity)

    def has_port(self, port: int) -> bool:
        return any(b <= port <= e for b, e in self.ports)

    def take(self, ask: "Ask") -> list[int]:
        """Consume the ask's resources; returns the host ports it got."""
        self.cpus -= ask.cpus
        self.mem -= ask.mem
        self.disk -= ask.disk
        self.gpus -= ask.gpus
        chosen = list(ask.required_ports)
        for port in chosen:
            self._remove_port(port)
        for _ in range(ask.dynamic_ports):
            begin, end = self.ports[0]
            chosen.append(begin)
            if begin == end:
                self.ports.pop(0)
            else:
                self.ports[0][0] = begin + 1
            self.port_count -= 1
        self.owners[ask.owner] = self.owners.get(ask.owner, 0) + 1
        return chosen

    def _remove_port(self, port: int) -> None:
        for i, (b, e) in enumerate(self.ports):
            if b <= port <= e:
                pieces = [[b, port - 1]] if port > b else []
                if port < e:
                    pieces.append([port + 1, e])
                self.ports[i:i + 1] = pieces
                self.port_count -= 1
                return


class Ask:
    """A group of identical requests (same owner and shape), prepared once per round.

    Holds what every filter would otherwise recompute per agent: the needs, the
    constraints split into static and counting ones, and the owner's counters per
    constraint field (updated by +1 on each placement).
    """

    def __init__(self, request: TaskRequest, counts: dict[str, FieldCounts],
                 known_values: dict[str, int]) -> None:
        self.request = request
        self.owner = request.owner
        self.cpus, self.mem, self.disk, self.gpus = request.cpus, request.mem, request.disk, request.gpus
        self.role = request.role or "*"
        self.required_ports = list(request.required_ports)
        self.dynamic_ports = max(request.ports - len(self.required_ports), 0)
        self.port_need = len(self.required_ports) + self.dynamic_ports
        self.constraints: list[Constraint] = list(request.constraints)
        self.counting = [c for c in self.constraints if c.counting]
        self.group_by = any(c.operator is Operator.GROUP_BY for c in self.counting)
        self.counts = counts  # field -> FieldCounts of this owner's tasks
        self.known_values = known_values  # field -> distinct values in the cluster
        self.requests: list[TaskRequest] = []
        # (test on the field value, field getter, resolvable, unresolvable); None: not compiled.
        self.counting_checks: list[tuple[Callable[[str | None], bool], Callable[[AgentSlot], str | None],
                                         Rejection, Rejection]] | None = None

    def compile(self) -> None:
        """Turn the counting constraints into closures over this round's counters (once)."""
        self.counting_checks = [
            (_counting_predicate(c, self.counts.get(c.field), self.known_values.get(c.field, 0)),
             _value_getter(c.field),
             Rejection(Reason.UNFULFILLED_CONSTRAINT, c.text, resolvable=True),
             Rejection(Reason.UNFULFILLED_CONSTRAINT, c.text, resolvable=False))
            for c in self.counting]

    @staticmethod
    def key(request: TaskRequest) -> tuple:
        return (request.owner, request.cpus, request.mem, request.disk, request.gpus,
                request.ports, tuple(request.required_ports), request.role or "*",
                tuple(request.constraints))

    def record(self, agent: AgentSlot) -> None:
        """Count a placement on `agent` in the counters the constraints read."""
        for fieldname, counts in self.counts.items():
            value = _value_getter(fieldname)(agent) if fieldname[0] == "@" else (
                agent.hostname if fieldname == "hostname" else agent.attributes.get(fieldname))
            if value is not None:
                seen = counts.counts
                seen[value] = seen.get(value, 0) + 1


class Filter(Protocol):
    name: str

    def check(self, ask: Ask, agent: AgentSlot) -> Rejection | None: ...


class RoleFilter:
    """Resources reserved for another role are not ours to use."""

    name = "role"

    def check(self, ask: Ask, agent: AgentSlot) -> Rejection | None:
        if agent.role == "*" or agent.role == ask.role:
            return None
        return Rejection(Reason.UNFULFILLED_ROLE,
                         f"agent offers role {agent.role}, request accepts {ask.role}", resolvable=False)


class StaticConstraintFilter:
    """Constraints answered by the agent alone (IS, LIKE, UNLIKE, CLUSTER:value)."""

    name = "constraints-static"

    def check(self, ask: Ask, agent: AgentSlot) -> Rejection | None:
        for constraint in ask.constraints:
            if constraint.static:
                value = field_value(constraint.field, agent.hostname, agent.attributes)
                if not matches(constraint, value, None):
                    return Rejection(Reason.UNFULFILLED_CONSTRAINT, constraint.text, resolvable=False)
        return None


class CountingConstraintFilter:
    """Constraints that depend on where the app already runs (UNIQUE, MAX_PER, ...)."""

    name = "constraints-counting"

    def check(self, ask: Ask, agent: AgentSlot) -> Rejection | None:
        checks = ask.counting_checks
        if checks is None:
            ask.compile()
            checks = ask.counting_checks or []
        for ok, value_of, resolvable, unresolvable in checks:
            value = value_of(agent)
            if not ok(value):
                # Lacking the attribute entirely will not change by waiting.
                return unresolvable if value is None else resolvable
        return None


class ResourceFilter:
    """Scalars: reports every short dimension with numbers, not just the first."""

    name = "resources"

    def check(self, ask: Ask, agent: AgentSlot) -> Rejection | None:
        if (agent.cpus + _EPS >= ask.cpus and agent.mem + _EPS >= ask.mem
                and agent.disk + _EPS >= ask.disk and agent.gpus + _EPS >= ask.gpus):
            return None  # the common case, kept cheap
        short: list[str] = []
        details: list[str] = []
        resolvable = True
        for dim, want, free, total in (("cpus", ask.cpus, agent.cpus, agent.total_cpus),
                                       ("mem", ask.mem, agent.mem, agent.total_mem),
                                       ("disk", ask.disk, agent.disk, agent.total_disk),
                                       ("gpus", ask.gpus, agent.gpus, agent.total_gpus)):
            if free + _EPS < want:
                short.append(dim)
                details.append(f"{dim}: want {want:g}, free {free:g} of {total:g}")
                if total + _EPS < want:
                    resolvable = False
        reasons = tuple(DIMENSION_REASON[d] for d in short)
        return Rejection(reasons[0], "; ".join(details), resolvable, tuple(short), reasons)


class PortFilter:
    """Enough free host ports, and the exact ones when requirePorts asks for them."""

    name = "ports"

    def check(self, ask: Ask, agent: AgentSlot) -> Rejection | None:
        if ask.port_need == 0:
            return None
        if agent.port_count < ask.port_need:
            return Rejection(Reason.INSUFFICIENT_PORTS,
                             f"ports: want {ask.port_need}, free {agent.port_count}",
                             dimensions=("ports",))
        missing = [p for p in ask.required_ports if not agent.has_port(p)]
        if missing:
            # Resolvable: whoever holds the port now may go away.
            return Rejection(Reason.INSUFFICIENT_PORTS,
                             f"ports: required {','.join(map(str, missing))} not free",
                             dimensions=("ports",))
        return None


def _value_getter(fieldname: str) -> Callable[[AgentSlot], str | None]:
    if fieldname in ("hostname", "@hostname"):
        return lambda agent: agent.hostname
    key = fieldname[1:] if fieldname.startswith("@") else fieldname
    return lambda agent: agent.attributes.get(key)


def _counting_predicate(c: Constraint, counts: FieldCounts | None, known: int) -> Callable[[str | None], bool]:
    """A fast test for the common counting operators; the general rule otherwise."""
    seen = counts.counts if counts is not None else {}
    if c.operator is Operator.UNIQUE:
        return lambda value: value is not None and seen.get(value, 0) == 0
    if c.operator is Operator.MAX_PER:
        limit = int(c.value or "0")
        return lambda value: value is not None and seen.get(value, 0) < limit
    return lambda value: matches(c, value, counts, known)


def static_predicate(c: Constraint) -> Callable[[AgentSlot], bool]:
    """A fast test for a static constraint (IS compares, LIKE/UNLIKE match a regex)."""
    value_of = _value_getter(c.field)
    if c.operator is Operator.IS or c.operator is Operator.CLUSTER:
        wanted = c.value
        if c.field in ("hostname", "@hostname"):
            return lambda agent: agent.hostname == wanted
        key = c.field[1:] if c.field.startswith("@") else c.field
        return lambda agent: agent.attributes.get(key) == wanted
    return lambda agent: matches(c, value_of(agent), None)


def first_rejection(filters: list[Filter], ask: Ask, agent: AgentSlot) -> Rejection | None:
    """Run a chain; the first filter that says no answers (cheap checks come first)."""
    for f in filters:
        rejection = f.check(ask, agent)
        if rejection is not None:
            return rejection
    return None
