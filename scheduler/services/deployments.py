"""Deployments: every change to an app is a plan of steps, shown as Marathon shows it.

A deployment has sequential steps, each with one action on one app
(StartApplication, ScaleApplication, RestartApplication, StopApplication). The
service manager advances `current` when the reconciler says the app reached the
step's goal. `original` keeps the app as it was, for rollback (DELETE on the
deployment) — None when the deployment created the app.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

START, SCALE, RESTART, STOP = "StartApplication", "ScaleApplication", "RestartApplication", "StopApplication"


@dataclass
class Deployment:
    app_id: str
    version: str
    actions: list[str]
    original: dict[str, Any] | None = None  # the app definition before (AppDefinition.out())
    target: dict[str, Any] | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    current: int = 0  # index of the step in progress
    status: str = "running"  # running | success | failed | canceled
    started_at: float = 0.0

    @property
    def action(self) -> str | None:
        return self.actions[self.current] if self.current < len(self.actions) else None

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def steps(self) -> list[dict[str, Any]]:
        return [{"actions": [{"action": a, "app": self.app_id}]} for a in self.actions]

    def view(self) -> dict[str, Any]:
        """`GET /v2/deployments` entry."""
        current = self.action
        return {
            "id": self.id, "version": self.version, "affectedApps": [self.app_id], "affectedPods": [],
            "steps": self.steps(),
            "currentActions": ([{"action": current, "app": self.app_id, "readinessCheckResults": []}]
                               if current else []),
            "currentStep": min(self.current + 1, len(self.actions)), "totalSteps": len(self.actions),
        }

    def plan(self) -> dict[str, Any]:
        """The plan object of deployment events (MP's MarathonDeploymentPlan keys only)."""
        def group(app: dict[str, Any] | None) -> dict[str, Any]:
            return {"id": "/", "version": self.version, "apps": [app] if app else [], "groups": [],
                    "dependencies": [], "pods": []}
        return {"id": self.id, "version": self.version, "steps": self.steps(),
                "original": group(self.original), "target": group(self.target)}


def actions_for(before: dict[str, Any] | None, after: dict[str, Any] | None, config_changed: bool) -> list[str]:
    """The steps of a change: create, scale, restart (new config) or stop."""
    if after is None:
        return [STOP]
    if before is None:
        return [START, SCALE]
    if config_changed:
        return [RESTART]
    return [SCALE]
