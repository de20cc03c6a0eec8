"""What the scheduler keeps of one Marathon app: its definition, versions, instances, backoff
and running deployment (`AppState`), how that is stored and read back, and what cannot be.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from framework.errors import SpecError
from scheduler.services.deployments import Deployment
from scheduler.services.reconcile import Backoff
from scheduler.services.specs import AppDefinition

log = logging.getLogger(__name__)

APPS_KEY = "/services/apps"


@dataclass
class AppState:
    app: AppDefinition
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> definition
    instances: dict[str, str] = field(default_factory=dict)  # task id -> app version
    backoff: Backoff = field(default_factory=Backoff)
    last_failure: dict[str, Any] | None = None
    version_info: dict[str, str] = field(default_factory=dict)
    deleting: bool = False
    frozen: bool = False  # a deployment was force-cancelled: stay where it stopped
    deployment: Deployment | None = None
    waiting_since: str | None = None
    # Not persisted: what this scheduler saw since it started.
    killing: set[str] = field(default_factory=set)
    ready: dict[str, bool] = field(default_factory=dict)
    checked_at: dict[str, float] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> its last Mesos CheckStatusInfo

    def draft(self) -> "AppState":
        """A copy of the stored part, to change and store before the live state adopts it
        (`ServiceManager._commit`). Changes replace `app` with a new definition."""
        return AppState(app=self.app, versions=dict(self.versions), instances=dict(self.instances),
                        backoff=replace(self.backoff), last_failure=self.last_failure,
                        version_info=dict(self.version_info), deleting=self.deleting, frozen=self.frozen,
                        deployment=self.deployment)

    def adopt(self, draft: "AppState") -> None:
        for name in STORED_FIELDS:
            setattr(self, name, getattr(draft, name))

    def to_json(self) -> bytes:
        return json.dumps({
            "app": self.app.model_dump(), "versions": self.versions, "instances": self.instances,
            "backoff": {"delay": self.backoff.delay, "until": self.backoff.until},
            "lastTaskFailure": self.last_failure, "versionInfo": self.version_info,
            "deleting": self.deleting, "frozen": self.frozen,
            "deployment": _deployment_json(self.deployment),
        }).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "AppState":
        data = json.loads(raw)
        app = AppDefinition.model_validate(data["app"])
        return cls(app=app, versions=data.get("versions", {}), instances=data.get("instances", {}),
                   backoff=Backoff(**data.get("backoff", {})), last_failure=data.get("lastTaskFailure"),
                   version_info=data.get("versionInfo", {}), deleting=data.get("deleting", False),
                   frozen=data.get("frozen", False), deployment=_deployment_from(data.get("deployment")))


@dataclass(frozen=True)
class Waiting:
    """An app with instances still to launch: how many, its backoff, since when, and what
    the last offers said (the core's placement report; None before any offer round)."""

    state: AppState
    count: int
    delay_left: float
    since: str
    report: Any


STORED_FIELDS = ("app", "versions", "instances", "backoff", "last_failure", "version_info", "deleting",
                 "frozen", "deployment")


def _deployment_json(deployment: Deployment | None) -> dict[str, Any] | None:
    """A running deployment survives a scheduler restart (or a new leader) with its app."""
    if deployment is None or deployment.finished:
        return None
    return {"id": deployment.id, "appId": deployment.app_id, "version": deployment.version,
            "actions": deployment.actions, "current": deployment.current, "original": deployment.original,
            "target": deployment.target, "startedAt": deployment.started_at, "planId": deployment.plan_id}


def _deployment_from(data: dict[str, Any] | None) -> Deployment | None:
    if not data:
        return None
    return Deployment(app_id=data["appId"], version=data["version"], actions=list(data["actions"]),
                      original=data.get("original"), target=data.get("target"), id=data["id"],
                      current=int(data.get("current", 0)), started_at=float(data.get("startedAt", 0.0)),
                      plan_id=data.get("planId"))


def _key(app_id: str) -> str:
    return f"{APPS_KEY}/{app_id.strip('/').replace('/', ':')}"


def loadable(raw: bytes) -> None:
    """Refuse (SpecError, 422) to store an app a restart could not read back (NaN included:
    Python reads it, no JSON client does)."""
    try:
        json.loads(raw, parse_constant=_not_json)
        AppState.from_json(raw)
    except Exception as error:
        raise SpecError("/", f"the app could not be read back once stored: {error}") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def quarantine(store: Any, key: str, raw: bytes, error: Exception) -> None:
    """A record this scheduler cannot read: skipped, said at ERROR, and a copy kept under
    `/quarantine/...` (the record itself stays: an app created again under its id replaces it)."""
    aside = "/quarantine" + key
    log.error("%s cannot be loaded, skipped (a copy is kept at %s): %s", key, aside, error)
    try:
        if store.get(aside)[0] is None:
            store.put(aside, raw)
    except Exception:
        log.exception("%s could not be copied aside", key)
