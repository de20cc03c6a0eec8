"""How long the master should keep an offer's unused resources from us (`Filters.refuse_seconds`).

One rule for every DECLINE and every ACCEPT's leftovers:

- nothing waits, and the core holds the offer's rest for work that comes next: none,
  so the master offers the rest straight back to be held;
- nothing waits: an hour; the REVIVE that new work sends clears the filter;
- work waits that this offer could take once something changes: a second;
- every waiting task was refused by every agent for a reason no agent loses by itself
  (a constraint, a role, an agent too small): as long as Marathon declines an offer it
  has no use for (its `--decline_offer_duration`, 120 s by default,
  core/launcher/OfferProcessorConfig.scala). A REVIVE still clears it sooner.
"""
from __future__ import annotations

from typing import Iterable, Protocol

HELD_SECONDS = 0.0
IDLE_SECONDS = 3600.0
WAITING_SECONDS = 1.0
UNRESOLVABLE_SECONDS = 120.0


class Explained(Protocol):
    """What a placement report says that the rule reads (scheduler/placement/report.py)."""

    resolvable: bool


def refuse_seconds(waiting: bool, reports: Iterable[Explained] = (), *, holding: bool = False) -> float:
    """The refusal for an offer declined (or left over) while `waiting` says whether work
    still waits; `reports` explain the waiting tasks that found no agent this round;
    `holding`: what is left is to come back to be held."""
    if not waiting:
        return HELD_SECONDS if holding else IDLE_SECONDS
    reports = list(reports)
    if reports and not any(report.resolvable for report in reports):
        return UNRESOLVABLE_SECONDS
    return WAITING_SECONDS
