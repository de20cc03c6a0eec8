"""Scoring: each scorer adds a normalised score under its own name; the mean decides.

Scores stay itemised (as in Nomad's rank iterators) so a report can show *why* an
agent won. Bin-packing (default) prefers the agent left fullest after placing, which
keeps whole agents free for big tasks; spreading prefers the emptiest and penalises
agents that already run the same app.
"""
from __future__ import annotations

from typing import Callable

from scheduler.placement.feasible import AgentSlot, Ask

STRATEGIES = ("binpack", "spread", "firstfit")


def _fit(ask: Ask, agent: AgentSlot) -> float:
    """Nomad's ScoreFitBinPack in [0, 1]: 1 = both cpu and mem fully used after placing."""
    cpu_total = agent.total_cpus or 1.0
    mem_total = agent.total_mem or 1.0
    left_cpu = agent.cpus - ask.cpus
    left_mem = agent.mem - ask.mem
    free_cpu = (left_cpu if left_cpu > 0.0 else 0.0) / cpu_total
    free_mem = (left_mem if left_mem > 0.0 else 0.0) / mem_total
    return (20.0 - (10.0 ** free_cpu + 10.0 ** free_mem)) / 18.0


def binpack(ask: Ask, agent: AgentSlot) -> dict[str, float]:
    return {"binpack": _fit(ask, agent)}


def spread(ask: Ask, agent: AgentSlot) -> dict[str, float]:
    colocated = agent.owners.get(ask.owner, 0)
    return {"spread": 1.0 - _fit(ask, agent), "anti-affinity": 1.0 / (1.0 + colocated)}


def firstfit(ask: Ask, agent: AgentSlot) -> dict[str, float]:
    return {}


SCORERS: dict[str, Callable[[Ask, AgentSlot], dict[str, float]]] = {
    "binpack": binpack,
    "spread": spread,
    "firstfit": firstfit,
}


def final(scores: dict[str, float]) -> float:
    """The mean of the itemised scores (Nomad's normalisation step)."""
    if len(scores) == 1:  # bin-pack: one score, the common case
        for value in scores.values():
            return value
    return sum(scores.values()) / len(scores) if scores else 0.0
