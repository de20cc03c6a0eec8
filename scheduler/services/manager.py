"""The service manager: Marathon apps kept at their target through the core.

It owns app definitions (and their versions), deployments and per-app backoff.
Decisions come from the pure `reconcile()`; this class only gathers its inputs
(the core's task records), applies its diff (`core.submit`, `core.kill`) and
tells the event bus. One thread ticks when something changed (a status, an API
call, a readiness result) or at the latest every `TICK_SECONDS` (backoff expiry,
readiness checks due). Readiness GETs run on `ReadinessProber` workers, never on
this thread.
"""
from __future__ import annotations

import json
import logging
import posixpath
import socket
import threading
import time
import urllib.error
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from framework.errors import DockyardError, SpecError, StoreError
from scheduler.events import marathon_time
from scheduler.services import deployments as dep
from scheduler.services.deployments import Deployment
from scheduler.services.instances import new_task_id, owner_of, task_request
from scheduler.services.readiness import Probe, ReadinessProber
from scheduler.services.reconcile import FAILURE_STATES, Backoff, Instance, healthy_and_ready, reconcile
from scheduler.secrets.refs import sources
from scheduler.services.specs import AppDefinition, parse_app

log = logging.getLogger(__name__)

APPS_KEY = "/services/apps"
TICK_SECONDS = 0.5
MAX_VERSIONS = 50


class NotFound(DockyardError):
    """Rendered as 404 (by name, see scheduler.api.common.render_error)."""


class Conflict(DockyardError):
    """Rendered as 409; `deployments` lists the deployments holding the lock."""

    def __init__(self, message: str, deployments: list[str] | None = None) -> None:
        super().__init__(message)
        self.deployments = deployments or []


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


STORED_FIELDS = ("app", "versions", "instances", "backoff", "last_failure", "version_info", "deleting",
                 "frozen", "deployment")


def _deployment_json(deployment: Deployment | None) -> dict[str, Any] | None:
    """A running deployment survives a scheduler restart (or a new leader) with its app."""
    if deployment is None or deployment.finished:
        return None
    return {"id": deployment.id, "appId": deployment.app_id, "version": deployment.version,
            "actions": deployment.actions, "current": deployment.current, "original": deployment.original,
            "target": deployment.target, "startedAt": deployment.started_at}


def _deployment_from(data: dict[str, Any] | None) -> Deployment | None:
    if not data:
        return None
    return Deployment(app_id=data["appId"], version=data["version"], actions=list(data["actions"]),
                      original=data.get("original"), target=data.get("target"), id=data["id"],
                      current=int(data.get("current", 0)), started_at=float(data.get("startedAt", 0.0)))


def _key(app_id: str) -> str:
    return f"{APPS_KEY}/{app_id.strip('/').replace('/', ':')}"


def _is_ip(text: str) -> bool:
    try:
        socket.inet_aton(text)
        return True
    except OSError:
        return False


class ServiceManager:
    def __init__(self, ctx: Any, clock: Callable[[], float] | None = None) -> None:
        self.ctx = ctx
        self.core = ctx.core
        self.store = ctx.store
        self.events = ctx.events
        self.clock = clock or ctx.clock or time.time
        self.apps: dict[str, AppState] = {}
        self.deployments: dict[str, Deployment] = {}
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.readiness = ReadinessProber(on_result=self.wake.set)
        self.core.add_owner("app:", self._on_status)

    # -- lifecycle ----------------------------------------------------------------------

    def load(self) -> None:
        with self.lock:
            for name in self.store.children(APPS_KEY):
                raw, _ = self.store.get(f"{APPS_KEY}/{name}")
                if raw:
                    try:
                        state = AppState.from_json(raw)
                    except Exception as error:  # one unreadable app must not stop the scheduler starting
                        quarantine(self.store, f"{APPS_KEY}/{name}", raw, error)
                        continue
                    self.apps[state.app.id] = state
                    if state.deployment is not None:
                        self.deployments[state.deployment.id] = state.deployment

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="services", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(5)
        self.readiness.stop()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(TICK_SECONDS)
            self.wake.clear()
            try:
                self.tick()
            except Exception:  # one bad app must not stop the others
                log.exception("services tick failed")

    def _persist(self, state: AppState) -> None:
        self.store.put(_key(state.app.id), state.to_json())

    # -- queries ------------------------------------------------------------------------

    def get(self, app_id: str) -> AppState:
        state = self.apps.get(app_id)
        if state is None or state.deleting:  # gone for clients at once, as in Marathon
            raise NotFound(f"App '{app_id}' does not exist")
        return state

    def records(self, app_id: str, live_only: bool = True) -> list[Any]:
        owner = owner_of(app_id)
        return [r for r in self.core.tasks(owner) if r.owner == owner and (not live_only or not r.terminal)]

    def instances(self, state: AppState) -> list[Instance]:
        out = []
        for record in self.records(state.app.id):
            version = state.instances.get(record.task_id)
            if version is None:
                continue
            out.append(Instance(task_id=record.task_id, version=version, state=record.state.value,
                                healthy=record.healthy, ready=state.ready.get(record.task_id, False),
                                started_at=record.started_at, created_at=record.created_at,
                                killing=record.task_id in state.killing,
                                inactive=self._inactive(state.app, record)))
        return out

    def _inactive(self, app: Any, record: Any) -> bool:
        """UNREACHABLE for longer than the app's inactiveAfterSeconds: start a replacement.

        If it comes back RUNNING it counts again, and the surplus is scaled down (issue 6)."""
        if record.state.value not in ("TASK_UNREACHABLE", "TASK_UNKNOWN") or not record.history:
            return False
        since = record.history[-1][1]
        return self.clock() - since >= app.unreachableStrategy.inactiveAfterSeconds

    # -- changes (the API calls these) --------------------------------------------------------

    def _new_version(self, state: AppState | None) -> str:
        version = marathon_time(self.clock())
        if state is not None and version <= (state.app.version or ""):
            version = marathon_time(self.clock() + 0.001)
        return version

    def _check_lock(self, state: AppState, force: bool) -> None:
        """One deployment per app: 409 unless forced (`_commit` then cancels the old one)."""
        current = state.deployment
        if current is not None and not current.finished and not force:
            raise Conflict("App is locked by one or more deployments. Override with the option "
                           "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
                           [current.id])

    def check_dependencies(self, proposed: dict[str, list[str]]) -> None:
        """Refuse (422 on `/dependencies`) what would make the apps' dependencies a cycle, as
        Marathon refuses a group whose dependency graph is cyclic: such apps would wait forever.
        `proposed`: app id -> its new `dependencies` as written (relative ones allowed)."""
        with self.lock:
            graph = {app_id: dependency_ids(state.app) for app_id, state in self.apps.items()
                     if not state.deleting}
        graph.update({app_id: absolute_ids(app_id, deps) for app_id, deps in proposed.items()})
        cycle = _find_cycle(graph)
        if cycle:
            raise SpecError("/dependencies", "Dependency graph has cyclic dependencies: " + " -> ".join(cycle))

    def check_secrets(self, app: AppDefinition) -> None:
        """Each secret the app defines exists and its caller may reference it (scheduler/secrets)."""
        secrets = getattr(self.ctx, "secrets", None)
        if secrets is not None:
            secrets.check(sources(app), lambda name: f"/secrets/{name}/source")

    def create(self, app: AppDefinition) -> tuple[AppState, Deployment]:
        self.check_dependencies({app.id: app.dependencies})
        self.check_secrets(app)
        with self.lock:
            existing = self.apps.get(app.id)
            if existing is not None and not (existing.deleting and existing.deployment is None):
                raise Conflict(f"An app with id [{app.id}] already exists.")
            app.version = self._new_version(None)
            draft = AppState(app=app, versions={app.version: app.model_dump()})
            draft.version_info = {"lastScalingAt": app.version, "lastConfigChangeAt": app.version}
            deployment = self._deploy(draft, None, app.out(), dep.actions_for(None, app.out(), True))
            return self._commit(None, draft), deployment

    def update(self, app_id: str, document: dict[str, Any], *, partial: bool = True,
               force: bool = False) -> tuple[AppState, Deployment, bool]:
        """PUT/PATCH an app (a `{"version": v}` body rolls back); creates it when absent."""
        with self.lock:
            state = self.apps.get(app_id)
            if state is None or (state.deleting and state.deployment is None):
                app = parse_app(document, app_id=app_id)
                app.id = app_id
                state, deployment = self.create(app)
                return state, deployment, True
            if set(document) == {"version"}:
                version = document["version"]
                if version not in state.versions:
                    raise NotFound(f"App '{app_id}' does not exist in version {version}")
                app = AppDefinition.model_validate(state.versions[version])
            else:
                app = parse_app(document, base=state.app if partial else None, app_id=app_id)
            app.id = app_id
            self.check_dependencies({app_id: app.dependencies})
            return (state, *self._change(state, app, force), False)  # type: ignore[return-value]

    def scale(self, app_id: str, instances: int, force: bool = False) -> Deployment:
        with self.lock:
            state = self.get(app_id)
            app = state.app.model_copy(update={"instances": max(instances, 0)})
            return self._change(state, app, force)[0]

    def _change(self, state: AppState, app: AppDefinition, force: bool) -> tuple[Deployment]:
        self._check_lock(state, force)
        self.check_secrets(app)
        draft = state.draft()
        before = state.app.out()
        config_changed = not app.config_equal(state.app)
        if config_changed:
            app.version = self._new_version(state)
            draft.version_info["lastConfigChangeAt"] = app.version
            draft.backoff.reset()  # a new version starts with a clean slate (Marathon)
        else:
            app.version = self._scaled_version(draft)
        draft.version_info["lastScalingAt"] = app.version
        draft.app = app
        draft.versions[app.version] = app.model_dump()
        self._trim_versions(draft)
        draft.frozen = False
        deployment = self._deploy(draft, before, app.out(), dep.actions_for(before, app.out(), config_changed))
        self._commit(state, draft)
        return (deployment,)

    def _scaled_version(self, draft: AppState) -> str:
        """Scaling makes a new app version, but running instances stay current: relabel them."""
        version = self._new_version(draft)
        for task_id, old in list(draft.instances.items()):
            if old == draft.app.version:
                draft.instances[task_id] = version
        return version

    def _trim_versions(self, state: AppState) -> None:
        while len(state.versions) > MAX_VERSIONS:
            del state.versions[min(state.versions)]

    def restart(self, app_id: str, force: bool = False) -> Deployment:
        with self.lock:
            state = self.get(app_id)
            self._check_lock(state, force)
            draft = state.draft()
            app = state.app.model_copy(update={"version": self._new_version(state)})
            draft.version_info["lastConfigChangeAt"] = app.version
            draft.app = app
            draft.versions[app.version] = app.model_dump()
            self._trim_versions(draft)
            draft.frozen = False
            deployment = self._deploy(draft, state.app.out(), app.out(), [dep.RESTART])
            self._commit(state, draft)
        return deployment

    def delete(self, app_id: str, force: bool = False) -> Deployment:
        with self.lock:
            state = self.get(app_id)
            self._check_lock(state, force)
            draft = state.draft()
            draft.deleting = True
            deployment = self._deploy(draft, state.app.out(), None, [dep.STOP])
            self._commit(state, draft)
        return deployment

    def kill_tasks(self, task_ids: list[str], scale: bool = False, force: bool = False) -> list[Any]:
        """Kill tasks (they are replaced), or with `scale` lower the app's count first."""
        with self.lock:
            records = []
            by_app: dict[str, list[str]] = {}
            for task_id in task_ids:
                record = self.core.get(task_id)
                if record is None or not record.owner.startswith("app:"):
                    raise NotFound(f"Task '{task_id}' does not exist")
                by_app.setdefault(record.owner[4:], []).append(task_id)
                records.append(record)
            deployments = []
            for app_id, ids in by_app.items():
                state = self.get(app_id)
                if scale:
                    live = [t for t in ids if not self.core.get(t).terminal]
                    deployments.append(self.scale(app_id, state.app.instances - len(live), force=force))
                for task_id in ids:
                    state.killing.add(task_id)
                    self.core.kill(task_id)
        self.wake.set()
        return deployments if scale else records

    def reset_delay(self, app_id: str) -> None:
        with self.lock:
            state = self.get(app_id)
            if state.backoff.until <= self.clock():
                raise NotFound(f"There is no delay for app '{app_id}'")
            draft = state.draft()
            draft.backoff.reset()
            self._commit(state, draft)

    def cancel(self, deployment_id: str, force: bool = False) -> Deployment | None:
        """DELETE /v2/deployments/{id}: roll back (a new deployment), or with force just stop."""
        with self.lock:
            deployment = self.deployments.get(deployment_id)
            if deployment is None:
                raise NotFound(f"DeploymentPlan {deployment_id} does not exist")
            state = self.apps[deployment.app_id]
            draft = state.draft()
            draft.deployment = None  # `_commit` cancels it
            rollback: Deployment | None = None
            if force:
                draft.frozen = True
            elif deployment.original is None:  # it created the app: rolling back removes it
                draft.deleting = True
                rollback = self._deploy(draft, deployment.target, None, [dep.STOP])
            else:
                app = parse_app(deployment.original)
                app.version = deployment.original.get("version")
                draft.app = app
                draft.deleting = False
                rollback = self._deploy(draft, deployment.target, app.out(), [dep.RESTART])
            self._commit(state, draft)
        return rollback

    def _deploy(self, draft: AppState, before: dict | None, after: dict | None, actions: list[str]) -> Deployment:
        """The deployment of a change being prepared; `_commit` starts and announces it."""
        version = (after or before or {}).get("version") or marathon_time(self.clock())
        deployment = Deployment(app_id=draft.app.id, version=version, actions=actions, original=before,
                                target=after, started_at=self.clock())
        draft.deployment = deployment
        return deployment

    def _commit(self, live: AppState | None, draft: AppState) -> AppState:
        """Store a changed app, then make it live and announce it. Storing comes first, so a
        change the store refuses (StoreError, answered 503) leaves the app, its deployments
        and the event stream as they were. A deployment the change replaces is cancelled.
        What is stored must load again: a change that would not is refused (422)."""
        loadable(draft.to_json())
        self._persist(draft)
        old = live.deployment if live is not None else None
        if live is None:
            self.apps[draft.app.id] = live = draft
        else:
            live.adopt(draft)
        new = live.deployment
        if old is not None and old is not new and not old.finished:
            self._announce_end(old, "canceled")
        if new is not None and new is not old:
            self.deployments[new.id] = new
            self.events.publish("deployment_info", plan=new.plan(),
                                currentStep={"actions": [{"action": new.actions[0], "app": live.app.id}]})
        self.wake.set()
        return live

    def _finish(self, state: AppState, deployment: Deployment, status: str) -> None:
        if state.deployment is deployment:
            state.deployment = None
            if self.apps.get(state.app.id) is state:
                self._persist(state)
        self._announce_end(deployment, status)

    def _announce_end(self, deployment: Deployment, status: str) -> None:
        deployment.status = status
        self.deployments.pop(deployment.id, None)
        if status == "success":
            self.events.publish("deployment_success", id=deployment.id, plan=deployment.plan())
        else:
            self.events.publish("deployment_failed", id=deployment.id, plan=deployment.plan())

    # -- the loop -----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        with self.lock:
            states = list(self.apps.values())
        probed: set[str] = set()
        for state in states:
            probed |= self._check_readiness(state, now)
            with self.lock:
                self._tick_app(state, now)
        self.readiness.retain(probed)

    def _tick_app(self, state: AppState, now: float) -> None:
        instances = self.instances(state)
        if state.frozen and not state.deleting:
            return
        diff = reconcile(state.app, instances, state.backoff, now, stopping=state.deleting)
        deployment = state.deployment
        if (deployment is not None and not deployment.finished and deployment.action != dep.STOP
                and not diff.done and (diff.start or diff.stop) and self.waiting_for(state)):
            # Marathon's group dependencies order deployments: nothing starts or stops
            # until every app this one depends on is deployed, healthy and ready.
            diff.start, diff.stop = 0, []
        for task_id in diff.stop:
            state.killing.add(task_id)
            self.core.kill(task_id)
        if diff.start:
            requests = [task_request(state.app) for _ in range(diff.start)]
            for request in requests:
                state.instances[request.task_id] = state.app.version or ""
            try:
                self._persist(state)  # know the instance before the core does
            except StoreError:
                for request in requests:
                    del state.instances[request.task_id]
                raise
            for request in requests:
                self.core.submit(request)
        pending = sum(1 for i in instances if i.state == "PENDING") + (
            state.app.instances - len([i for i in instances if i.live]) if diff.wait_until else 0)
        if pending > 0 and state.waiting_since is None:
            state.waiting_since = marathon_time(now)
        elif pending <= 0:
            state.waiting_since = None
        if deployment is None or deployment.finished:
            if state.deleting and diff.done:
                self._remove(state)
            return
        action = deployment.action
        if action == dep.START or (action in (dep.SCALE, dep.RESTART, dep.STOP) and diff.done):
            self.events.publish("deployment_step_success", plan=deployment.plan(),
                                currentStep={"actions": [{"action": action, "app": state.app.id}]})
            deployment.current += 1
            self._persist(state)
            if deployment.current >= len(deployment.actions):
                self._finish(state, deployment, "success")
                if state.deleting:
                    self._remove(state)
            else:
                self.wake.set()

    def waiting_for(self, state: AppState) -> list[str]:
        """The app's `dependencies` (absolute ids) not yet at their target: their deployment
        finished and `instances` of them running, healthy and ready. A missing one counts."""
        waiting = []
        for dependency in dependency_ids(state.app):
            other = self.apps.get(dependency)
            if other is None or other.deleting or (other.deployment is not None and not other.deployment.finished):
                waiting.append(dependency)
                continue
            up = [i for i in self.instances(other) if healthy_and_ready(other.app, i)]
            if len(up) < other.app.instances:
                waiting.append(dependency)
        return waiting

    def _remove(self, state: AppState) -> None:
        if self.apps.get(state.app.id) is state:
            self.store.delete(_key(state.app.id))
            del self.apps[state.app.id]
            self.events.publish("app_terminated_event", appId=state.app.id)

    def _check_readiness(self, state: AppState, now: float) -> set[str]:
        """Marathon runs readiness checks from the scheduler: HTTP GET on the task's port.

        The GETs run on the prober's workers; here results are read and due probes
        submitted, so a slow endpoint delays no other app. Answers the ids of running tasks.
        """
        if not state.app.readinessChecks:
            return set()
        check = state.app.readinessChecks[0]
        names = [p.name for p in state.app.port_definitions()]
        index = names.index(check.portName) if check.portName in names else 0
        running = set()
        for record in self.records(state.app.id):
            if record.state.value != "TASK_RUNNING":
                continue
            running.add(record.task_id)
            result = self.readiness.take(record.task_id)
            if result is not None:
                state.ready[record.task_id] = result[0]
                if result[0]:
                    self.wake.set()
            if state.ready.get(record.task_id) or self.readiness.busy(record.task_id):
                continue
            if now - state.checked_at.get(record.task_id, 0.0) < check.intervalSeconds:
                continue
            if index >= len(record.ports):
                continue
            state.checked_at[record.task_id] = now
            state.ready.setdefault(record.task_id, False)
            # The agent's address, not its hostname: `dockyard up` names agents agent1, agent2, ...
            url = f"{check.protocol.lower()}://{self.address_of(record)}:{record.ports[index]}{check.path}"
            self.readiness.submit(record.task_id, Probe(url, float(check.timeoutSeconds),
                                                        tuple(check.httpStatusCodesForReady)))
        return running

    # -- statuses from the core ------------------------------------------------------------------

    def _on_status(self, record: Any, status: dict) -> None:
        app_id = record.owner[4:]
        now = self.clock()
        with self.lock:
            state = self.apps.get(app_id)
            if state is None:
                return
            version = state.instances.get(record.task_id, state.app.version)
            self.events.publish(
                "status_update_event", slaveId=record.agent_id or "", taskId=record.task_id,
                taskStatus=record.state.value, message=record.message or "", appId=app_id,
                host=record.hostname or "", ipAddresses=[{"ipAddress": self.address_of(record), "protocol": "IPv4"}],
                ports=list(record.ports), version=version)
            self.events.publish(
                "instance_changed_event", instanceId=record.task_id, condition=_condition(record.state.value),
                runSpecId=app_id, agentId=record.agent_id or "", host=record.hostname or "",
                runSpecVersion=version, timestamp=marathon_time(now))
            if "healthy" in status:
                self._health_changed(state, record, bool(status["healthy"]), status, now, version)
            if record.terminal:
                requested = record.task_id in state.killing
                state.killing.discard(record.task_id)
                state.instances.pop(record.task_id, None)
                state.ready.pop(record.task_id, None)
                state.checked_at.pop(record.task_id, None)
                self.readiness.forget(record.task_id)
                health = state.health.pop(record.task_id, None)
                if record.healthy is False and not requested:
                    self.events.publish("unhealthy_instance_kill_event", appId=app_id, taskId=record.task_id,
                                        instanceId=record.task_id, version=version,
                                        reason=record.message or "unhealthy", host=record.hostname or "",
                                        slaveId=record.agent_id or "")
                if record.state.value in FAILURE_STATES or (record.state.value == "TASK_KILLED" and not requested):
                    state.last_failure = {
                        "appId": app_id, "host": record.hostname or "", "message": _failure_message(record),
                        "state": record.state.value, "taskId": record.task_id, "instanceId": record.task_id,
                        "slaveId": record.agent_id or "", "timestamp": marathon_time(now), "version": version,
                    }
                if record.state.value in FAILURE_STATES:
                    ran = (now - record.started_at) if record.started_at else None
                    state.backoff.failed(state.app, now, ran, bool(health and health.get("lastSuccess")))
                self._persist(state)
            elif record.state.value == "TASK_RUNNING" and self._expunged(state.app, record, now):
                # Marathon: an instance unreachable past expungeAfterSeconds was replaced for
                # good, and is killed if it ever comes back.
                state.killing.add(record.task_id)
                self.core.kill(record.task_id)
        self.wake.set()

    @staticmethod
    def _expunged(app: Any, record: Any, now: float) -> bool:
        """Back RUNNING after being unreachable for at least the app's expungeAfterSeconds."""
        if len(record.history) < 2 or record.history[-2][0] not in ("TASK_UNREACHABLE", "TASK_UNKNOWN"):
            return False
        strategy = app.unreachableStrategy
        away = now - record.history[-2][1]
        return away >= max(strategy.expungeAfterSeconds, strategy.inactiveAfterSeconds)

    def _health_changed(self, state: AppState, record: Any, alive: bool, status: dict, now: float,
                        version: str) -> None:
        health = state.health.setdefault(record.task_id, {"consecutiveFailures": 0})
        stamp = marathon_time(now)
        before = health.get("alive")
        health["alive"] = alive
        if alive:
            health["consecutiveFailures"] = 0
            health.setdefault("firstSuccess", stamp)
            health["lastSuccess"] = stamp
            state.backoff.reset()  # a healthy run: the next failure starts from backoffSeconds
        else:
            health["consecutiveFailures"] = health.get("consecutiveFailures", 0) + 1
            health["lastFailure"] = stamp
            health["lastFailureCause"] = status.get("message") or "health check failed"
            self.events.publish("failed_health_check_event", appId=state.app.id, taskId=record.task_id,
                                instanceId=record.task_id, version=version,
                                healthCheck=state.app.healthChecks[0].out() if state.app.healthChecks else {})
        if before != alive:
            self.events.publish("health_status_changed_event", appId=state.app.id, taskId=record.task_id,
                                instanceId=record.task_id, version=version, alive=alive)
            self.events.publish("instance_health_changed_event", instanceId=record.task_id,
                                runSpecId=state.app.id, runSpecVersion=version, healthy=alive)

    # -- views (Marathon JSON) -----------------------------------------------------------------

    def address_of(self, record: Any) -> str:
        """The agent's IP (marathon-lb reads ipAddresses[0]): from the agent's URL, no DNS."""
        agent = self.core.agent(record.agent_id) if record.agent_id else None
        url = (agent or {}).get("url") or ""
        host = url.split("://", 1)[-1].rsplit(":", 1)[0] if url else ""
        if host and _is_ip(host):
            return host
        return record.hostname or ""

    def task_view(self, record: Any, state: AppState | None = None) -> dict[str, Any]:
        app_id = record.owner[4:]
        state = state or self.apps.get(app_id)
        version = (state.instances.get(record.task_id) if state else None) or (state.app.version if state else "")
        value = record.state.value
        if value in ("PENDING", "LAUNCHED"):
            value = "TASK_STAGING"
        results = []
        if state is not None and state.app.healthChecks and record.task_id in state.health:
            health = state.health[record.task_id]
            results.append({"alive": bool(health.get("alive")),
                            "consecutiveFailures": health.get("consecutiveFailures", 0),
                            "firstSuccess": health.get("firstSuccess"), "lastSuccess": health.get("lastSuccess"),
                            "lastFailure": health.get("lastFailure"),
                            "lastFailureCause": health.get("lastFailureCause"),
                            "instanceId": record.task_id})
        agent = self.core.agent(record.agent_id) if record.agent_id else None
        definition = state.app if state else None
        service_ports = [p.port for p in definition.port_definitions()] if definition else []
        return {
            "id": record.task_id, "appId": app_id, "host": record.hostname or "",
            "ports": list(record.ports), "servicePorts": service_ports[:len(record.ports)] or service_ports,
            "slaveId": record.agent_id or "",
            "stagedAt": marathon_time(record.launched_at or record.created_at),
            "startedAt": marathon_time(record.started_at) if record.started_at else None,
            "version": version, "state": value,
            "ipAddresses": [{"ipAddress": self.address_of(record), "protocol": "IPv4"}] if record.hostname else [],
            "healthCheckResults": results,
            "localVolumes": [],
            **({"region": agent["attributes"].get("region")} if agent and agent.get("attributes", {}).get("region") else {}),
            **({"zone": agent["attributes"].get("zone")} if agent and agent.get("attributes", {}).get("zone") else {}),
        }

    def app_view(self, state: AppState, embed: set[str], *, single: bool = False) -> dict[str, Any]:
        data = state.app.out()
        records = self.records(state.app.id)
        running = [r for r in records if r.state.value == "TASK_RUNNING"]
        data["tasksStaged"] = sum(1 for r in records if r.state.value in ("PENDING", "LAUNCHED", "TASK_STAGING",
                                                                           "TASK_STARTING"))
        data["tasksRunning"] = len(running)
        if state.app.healthChecks:
            data["tasksHealthy"] = sum(1 for r in running if r.healthy is True)
            data["tasksUnhealthy"] = sum(1 for r in running if r.healthy is False)
        else:
            data["tasksHealthy"] = data["tasksUnhealthy"] = 0
        data["deployments"] = [{"id": state.deployment.id}] if state.deployment and not state.deployment.finished else []
        data["versionInfo"] = dict(state.version_info)
        if single or "tasks" in embed:
            data["tasks"] = [self.task_view(r, state) for r in records]
        if single or "lastTaskFailure" in embed:
            if state.last_failure:
                data["lastTaskFailure"] = state.last_failure
        if "readiness" in embed:
            data["readinessCheckResults"] = [
                {"name": state.app.readinessChecks[0].name, "taskId": t, "ready": ok, "lastResponse": None}
                for t, ok in state.ready.items()] if state.app.readinessChecks else []
        if "taskStats" in embed:
            data["taskStats"] = {}
        return data

    def queue_view(self, last_unused: bool = False) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        with self.lock:
            states = list(self.apps.values())
        for state in states:
            if state.deleting:
                continue
            live = [i for i in self.instances(state) if i.live]
            pending = [i for i in live if i.state == "PENDING"]
            missing = max(state.app.instances - len(live), 0)
            count = len(pending) + missing
            if count <= 0:
                continue
            report = self.core.placement_report(owner_of(state.app.id))
            time_left = state.backoff.time_left(now)
            item: dict[str, Any] = {
                "app": self.app_view(state, set()), "count": count,
                "delay": {"timeLeftSeconds": round(time_left, 3), "overdue": time_left <= 0},
                "since": state.waiting_since or marathon_time(now),
                "processedOffersSummary": (report.processed_offers_summary()
                                           if report is not None else _empty_summary()),
            }
            if last_unused:
                item["lastUnusedOffers"] = [
                    {"offer": {"id": "", "agentId": u["agentId"], "hostname": u["hostname"], "resources": [],
                               "attributes": []}, "reason": u["reason"], "timestamp": marathon_time(now)}
                    for u in (report.unused if report is not None else [])]
            out.append(item)
        return out

    def plan_preview(self, app: AppDefinition) -> dict[str, Any]:
        """`app deploy --dry-run`: where the instances would go now, and why not."""
        from scheduler.placement import Placed, place

        requests = [task_request(app) for _ in range(app.instances)]
        agents = self._agent_views()
        # The app's own instances are what a rolling update replaces: constraints such as
        # UNIQUE are checked against everything else, not against the old version.
        own = owner_of(app.id)
        placed = [Placed(r.owner, r.agent_id or "", r.hostname or "",
                         (self.core.agent(r.agent_id) or {}).get("attributes", {}) if r.agent_id else {})
                  for r in self.core.tasks("") if not r.terminal and r.agent_id and r.owner != own]
        plan = place(requests, agents, placed)
        return {
            "app": app.out(), "agents": len(agents),
            "assignments": [{"taskId": a.request.task_id, "agentId": a.agent_id, "host": a.hostname,
                             "ports": a.ports, "scores": {k: round(v, 4) for k, v in a.scores.items()}}
                            for a in plan.assignments],
            "unplaced": len(plan.unplaced),
            "reports": {owner: report.to_json() for owner, report in plan.reports.items()},
        }

    def _agent_views(self) -> list[Any]:
        """Free resources per agent from the master's `/state` (what offers would say), read as
        the scheduler (its principal; TLS verified with its CA)."""
        from framework.security.peer import Peer
        from scheduler.placement import AgentView

        master = str(getattr(self.ctx.config, "master", "") or "")
        if master.startswith("zk://"):  # the leading master, as the driver found it
            master = str(getattr(getattr(self.ctx, "driver", None), "master", None) or "")
        if not master:
            return []
        security = getattr(self.ctx.config, "security", None)
        peer = security.peer if security is not None else Peer()
        try:
            state = peer.get_json(f"{peer.base_url(master)}/state", timeout=5)
        except urllib.error.HTTPError as error:
            log.warning("the master refuses us its state (%s): the preview sees no agent", error)
            return []
        except (OSError, ValueError):
            return []
        views = []
        for agent in state.get("slaves") or []:
            total, used = agent.get("resources") or {}, agent.get("used_resources") or {}
            ports = _ranges(total.get("ports")) if total.get("ports") else []
            taken = _ranges(used.get("ports")) if used.get("ports") else []
            free_ports = [r for r in ports if not any(b <= r[0] and r[1] <= e for b, e in taken)]
            views.append(AgentView(
                agent_id=agent.get("id", ""), hostname=agent.get("hostname", ""),
                attributes={k: str(v) for k, v in (agent.get("attributes") or {}).items()},
                cpus=float(total.get("cpus", 0)) - float(used.get("cpus", 0)),
                mem=float(total.get("mem", 0)) - float(used.get("mem", 0)),
                disk=float(total.get("disk", 0)) - float(used.get("disk", 0)),
                gpus=float(total.get("gpus", 0)) - float(used.get("gpus", 0)),
                port_ranges=free_ports, total_cpus=float(total.get("cpus", 0)),
                total_mem=float(total.get("mem", 0)), total_disk=float(total.get("disk", 0))))
        return views


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


def dependency_ids(app: AppDefinition) -> list[str]:
    return absolute_ids(app.id, app.dependencies)


def absolute_ids(app_id: str, dependencies: list[str]) -> list[str]:
    """`dependencies` as absolute app ids: relative ones ("db", "../db") are resolved against
    the app's group, as Marathon resolves a PathId."""
    group = posixpath.dirname(app_id.rstrip("/")) or "/"
    return [posixpath.normpath(posixpath.join(group, d)) if not d.startswith("/") else posixpath.normpath(d)
            for d in dependencies if d]


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One cycle of app ids (first id repeated at the end), or [] (depth-first, iterative)."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                path.append(node)
                on_path.add(node)
            children = graph.get(node, [])
            if index < len(children):
                stack.append((node, index + 1))
                child = children[index]
                if child in on_path:
                    return path[path.index(child):] + [child]
                if child not in done:
                    stack.append((child, 0))
            else:
                done.add(node)
                on_path.discard(path.pop())
    return []


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in str(text).strip("[]").split(","):
        if "-" in part:
            begin, end = part.strip().split("-")
            out.append((int(begin), int(end)))
    return out


def _failure_message(record: Any) -> str:
    """The task's message, with the Mesos reason when it says more (an OOM kill says so);
    TaskFailure has no reason field the `marathon` client would accept."""
    message = record.message or ""
    reason = record.reason or ""
    if reason and reason not in ("REASON_COMMAND_EXECUTOR_FAILED", "REASON_EXECUTOR_TERMINATED"):
        label = "out of memory" if reason == "REASON_CONTAINER_LIMITATION_MEMORY" else reason
        return f"{message} ({label}: {reason})" if label != reason else f"{message} ({reason})"
    return message


def _condition(state: str) -> str:
    return {"PENDING": "Scheduled", "LAUNCHED": "Provisioned", "TASK_STAGING": "Staging",
            "TASK_STARTING": "Starting", "TASK_RUNNING": "Running", "TASK_KILLING": "Killing",
            "TASK_FINISHED": "Finished", "TASK_FAILED": "Failed", "TASK_KILLED": "Killed",
            "TASK_LOST": "Unreachable", "TASK_ERROR": "Error", "TASK_DROPPED": "Dropped",
            "TASK_GONE": "Gone", "TASK_UNREACHABLE": "Unreachable", "TASK_UNKNOWN": "Unknown"}.get(state, state)


def _empty_summary() -> dict[str, Any]:
    from scheduler.placement.report import PlacementReport

    return PlacementReport("").processed_offers_summary()


__all__ = ["AppState", "Conflict", "NotFound", "ServiceManager", "new_task_id"]
