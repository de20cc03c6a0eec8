"""Why (not) placed: one `PlacementReport` per owner per round.

Shaped like Nomad's AllocMetric (evaluated, filtered by constraint, exhausted by
dimension, top scores, time, coalesced failures) and rendered as Marathon's
`processedOffersSummary` for `/v2/queue`, where each reason is a step of a funnel:
`processed` offers reached that check and `declined` were refused by it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scheduler.placement.feasible import REASON_ORDER, Reason, Rejection

MAX_TOP_SCORES = 5
MAX_UNUSED = 10


@dataclass
class PlacementReport:
    owner: str
    evaluated: int = 0  # agents looked at
    filtered: int = 0  # not eligible (role, constraint)
    exhausted: int = 0  # eligible but short of capacity
    by_reason: dict[str, int] = field(default_factory=dict)  # first reason per agent
    filtered_by: dict[str, int] = field(default_factory=dict)  # constraint/role detail
    exhausted_by: dict[str, int] = field(default_factory=dict)  # dimension -> agents short
    placed: int = 0
    unplaced: int = 0  # requests that found no agent
    coalesced_failures: int = 0  # of those, ones not re-evaluated (same shape failed)
    resolvable: bool = True  # False: no rejection would go away by itself
    top_scores: list[dict[str, Any]] = field(default_factory=list)
    unused: list[dict[str, Any]] = field(default_factory=list)  # last refused agents
    seconds: float = 0.0
    explained: bool = False  # a full scan ran (set when something could not be placed)
    sampled: bool = False  # the scan covered an even sample of a large cluster

    def reject(self, agent_id: str, hostname: str, rejection: Rejection) -> None:
        self.evaluated += 1
        reason = rejection.reason
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if reason is Reason.UNFULFILLED_CONSTRAINT or reason is Reason.UNFULFILLED_ROLE:
            self.filtered += 1
            key = rejection.detail if reason is Reason.UNFULFILLED_CONSTRAINT else "role"
            self.filtered_by[key] = self.filtered_by.get(key, 0) + 1
        else:
            self.exhausted += 1
            for dim in rejection.dimensions:
                self.exhausted_by[dim] = self.exhausted_by.get(dim, 0) + 1
        if len(self.unused) < MAX_UNUSED:
            self.unused.append({"agentId": agent_id, "hostname": hostname,
                                "reason": [r.value for r in rejection.all_reasons()],
                                "detail": rejection.detail})

    def note(self, rejection: Rejection) -> None:
        """The fast path's bookkeeping: counts only (a failed ask gets a full explanation)."""
        self.evaluated += 1
        reason = rejection.reason
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1

    def accept(self, agent_id: str, scores: dict[str, float], final: float) -> None:
        self.evaluated += 1
        top = self.top_scores
        if len(top) >= MAX_TOP_SCORES and final <= top[-1]["score"]:
            return
        # Insert in place (best first; equal scores keep arrival order), then trim.
        at = len(top)
        while at and top[at - 1]["score"] < final:
            at -= 1
        top.insert(at, {"agentId": agent_id, "score": final, "scores": scores})
        del top[MAX_TOP_SCORES:]

    def reject_summary(self) -> list[dict[str, Any]]:
        """Marathon's rejectSummaryLastOffers: a funnel in check order."""
        processed = self.evaluated
        out = []
        for reason in REASON_ORDER:
            declined = self.by_reason.get(reason, 0)
            out.append({"reason": reason.value, "declined": declined, "processed": processed})
            processed -= declined
        return out

    def processed_offers_summary(self, last_used_at: str | None = None,
                                 last_unused_at: str | None = None) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "processedOffersCount": self.evaluated,
            "unusedOffersCount": self.evaluated - self.placed if self.evaluated else 0,
            "rejectSummaryLastOffers": self.reject_summary(),
            "rejectSummaryLaunchAttempt": self.reject_summary(),
        }
        if last_unused_at:
            summary["lastUnusedOfferAt"] = last_unused_at
        if last_used_at:
            summary["lastUsedOfferAt"] = last_used_at
        return summary

    def explain(self) -> str:
        """One line for people: what stopped this owner's tasks from being placed."""
        if not self.unplaced:
            return f"{self.owner}: placed {self.placed}"
        parts = [f"{self.owner}: {self.unplaced} not placed; {self.evaluated} agents evaluated"]
        if self.filtered:
            detail = ", ".join(f"{k} x{v}" for k, v in sorted(self.filtered_by.items()))
            parts.append(f"{self.filtered} filtered ({detail})")
        if self.exhausted:
            detail = ", ".join(f"{k} x{v}" for k, v in sorted(self.exhausted_by.items()))
            parts.append(f"{self.exhausted} exhausted ({detail})")
        if not self.resolvable:
            parts.append("no agent will change by itself")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner, "evaluated": self.evaluated, "filtered": self.filtered,
            "exhausted": self.exhausted, "byReason": {str(k.value if isinstance(k, Reason) else k): v for k, v in self.by_reason.items()},
            "filteredBy": dict(self.filtered_by), "exhaustedBy": dict(self.exhausted_by),
            "placed": self.placed, "unplaced": self.unplaced,
            "coalescedFailures": self.coalesced_failures, "resolvable": self.resolvable,
            "topScores": [{"agentId": e["agentId"], "score": round(e["score"], 4),
                           "scores": {k: round(v, 4) for k, v in e["scores"].items()}}
                          for e in self.top_scores], "unused": list(self.unused),
            "seconds": round(self.seconds, 6), "sampled": self.sampled, "explanation": self.explain(),
        }


def reasons_of(report: PlacementReport) -> set[Reason]:
    return {Reason(name) for name in report.by_reason}  # keys are Reason members
