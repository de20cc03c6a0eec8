"""What the placement pipeline reads and writes: plain data, no behaviour.

`AgentView` is one agent's offered (free) resources; `Placed` is a task already
running, needed by the counting constraints; `Assignment` is a decision.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.requests import TaskRequest


@dataclass
class AgentView:
    agent_id: str
    hostname: str
    attributes: dict[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    gpus: float = 0.0
    port_ranges: list[tuple[int, int]] = field(default_factory=list)
    role: str = "*"
    # The agent's whole capacity, for bin-pack scoring and for telling "full now"
    # from "never big enough". Zero means "unknown: use what is offered".
    total_cpus: float = 0.0
    total_mem: float = 0.0
    total_disk: float = 0.0
    total_gpus: float = 0.0


@dataclass
class Placed:
    owner: str
    agent_id: str
    hostname: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Assignment:
    request: TaskRequest
    agent_id: str
    hostname: str
    ports: list[int] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
