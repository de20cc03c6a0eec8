"""Deployments: every change to an app is a plan of steps, shown as Marathon shows it.

A deployment has sequential steps, each with one action on one app
(StartApplication, ScaleApplication, RestartApplication, StopApplication). The
service manager advances `current` when the reconciler says the app reached the
step's goal. `original` keeps the app as it was, for rollback (DELETE on the
deployment) — None when the deployment created the app.

A group change is one Marathon deployment over several apps: each app gets its own
`Deployment` (its own steps, its own lock), all sharing the `plan_id` that clients see
(`public_id`); the service manager announces the plan once, and its end once.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from framework.errors import Conflict

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
    plan_id: str | None = None  # the deployment this is a part of (a group change), else None

    @property
    def public_id(self) -> str:
        """The id clients see: the plan's for a part of a group change."""
        return self.plan_id or self.id

    @property
    def action(self) -> str | None:
        return self.actions[self.current] if self.current < len(self.actions) else None

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def steps(self) -> list[dict[str, Any]]:
        return [{"actions": [{"action": a, "app": self.app_id}]} for a in self.actions]

    def plan(self) -> dict[str, Any]:
        """The plan object of deployment events (MP's MarathonDeploymentPlan keys only)."""
        def group(app: dict[str, Any] | None) -> dict[str, Any]:
            return {"id": "/", "version": self.version, "apps": [app] if app else [], "groups": [],
                    "dependencies": [], "pods": []}
        return {"id": self.public_id, "version": self.version, "steps": self.steps(),
                "original": group(self.original), "target": group(self.target)}


def merged_steps(parts: list[Deployment]) -> list[dict[str, Any]]:
    """The steps of a plan over several apps: step n holds each app's n-th action."""
    steps: list[dict[str, Any]] = []
    for part in sorted(parts, key=lambda d: d.app_id):
        for index, action in enumerate(part.actions):
            while len(steps) <= index:
                steps.append({"actions": []})
            steps[index]["actions"].append({"action": action, "app": part.app_id})
    return steps


def plan_json(plan_id: str, version: str, parts: list[Deployment]) -> dict[str, Any]:
    """The plan object of a group change's deployment events (MarathonDeploymentPlan's keys)."""
    def group(apps: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": "/", "version": version, "apps": apps, "groups": [], "dependencies": [], "pods": []}
    return {"id": plan_id, "version": version, "steps": merged_steps(parts),
            "original": group([d.original for d in parts if d.original]),
            "target": group([d.target for d in parts if d.target])}


class AppLocked(Conflict):
    """One deployment per app: a change while one runs is refused unless forced (Marathon's
    AppLockedException); `deployments` names the deployments holding the app."""

    def __init__(self, deployments: list[str]) -> None:
        super().__init__("App is locked by one or more deployments. Override with the option '?force=true'. "
                         "View details at '/v2/deployments/<DEPLOYMENT_ID>'.")
        self.deployments = deployments


def actions_for(before: dict[str, Any] | None, after: dict[str, Any] | None, config_changed: bool) -> list[str]:
    """The steps of a change: create, scale, restart (new config) or stop."""
    if after is None:
        return [STOP]
    if before is None:
        return [START, SCALE]
    if config_changed:
        return [RESTART]
    return [SCALE]
