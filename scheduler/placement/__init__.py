"""Placement: pure functions deciding which agent runs which task, and why not.

Public surface: `place`, `Plan`, `AgentView`, `Placed`, `Assignment`, `Constraint`,
`parse_constraints`, `PlacementReport`, `Reason`, `Rejection`; `refusal` says how long
an offer the plan leaves unused is declined for.
"""
from scheduler.placement.constraints import Constraint, ConstraintError, Operator
from scheduler.placement.constraints import parse as parse_constraints
from scheduler.placement.feasible import Reason, Rejection
from scheduler.placement.pipeline import Plan, place
from scheduler.placement.report import PlacementReport
from scheduler.placement.views import AgentView, Assignment, Placed

__all__ = [
    "AgentView", "Assignment", "Constraint", "ConstraintError", "Operator", "Placed", "Plan",
    "PlacementReport", "Reason", "Rejection", "parse_constraints", "place",
]
