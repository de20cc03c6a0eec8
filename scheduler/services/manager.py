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

import logging
import math
import threading
import time
import uuid
from typing import Any, Callable

from framework.errors import Conflict, NotFound, SpecError, StoreError
from scheduler.events import marathon_time
from scheduler.services import deployments as dep
from scheduler.services.addresses import AgentAddresses
from scheduler.services.admission import admit, unassigned
from scheduler.services.dependencies import absolute_ids, dependency_ids, find_cycle
from scheduler.services.deployments import AppLocked, Deployment, plan_json
from scheduler.services.drain import Drains, parse_report
from scheduler.services.groups import GroupTree, ancestors, inside
from scheduler.services.instance_events import draining_event, health_changed, last_failure, publish_status
from scheduler.services.instances import new_task_id, owner_of, task_request
from scheduler.services.ports import DEFAULT_MAX, DEFAULT_MIN, PortRange
from scheduler.services.preview import plan_preview
from scheduler.services.readiness import Probe, ReadinessProber
from scheduler.services.reconcile import (FAILURE_STATES, Instance, healthy_and_ready, past_expunge_after,
                                          past_inactive_after, reconcile)
from scheduler.secrets.refs import sources
from scheduler.services.app_state import APPS_KEY, AppState, Waiting, _key, loadable, quarantine
from scheduler.services.specs import AppDefinition, parse_app

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
MAX_VERSIONS = 50


class ServiceManager:
    def __init__(self, ctx: Any, clock: Callable[[], float] | None = None) -> None:
        self.ctx = ctx
        self.core = ctx.core
        self.store = ctx.store
        self.events = ctx.events
        self.clock = clock or ctx.clock or time.time
        self.apps: dict[str, AppState] = {}
        self.deployments: dict[str, Deployment] = {}  # by its own id (a group change's parts share a plan id)
        self.plans: dict[str, list[Deployment]] = {}  # plan id -> its parts, until the last one ends
        self.failed_plans: set[str] = set()  # announced failed already: said once
        self.groups = GroupTree()
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.readiness = ReadinessProber(on_result=self.wake.set)
        config = getattr(ctx, "config", None)
        self.port_range = PortRange(getattr(config, "local_port_min", DEFAULT_MIN),
                                    getattr(config, "local_port_max", DEFAULT_MAX))
        self.drains = Drains()  # scheduler/services/drain.py
        self.addresses = AgentAddresses(self.core, self.store)
        self.core.add_owner("app:", self._on_status)

    # -- lifecycle ----------------------------------------------------------------------

    def load(self) -> None:
        self.addresses.load()
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
                        if state.deployment.plan_id:
                            self.plans.setdefault(state.deployment.plan_id, []).append(state.deployment)
                    self._recall_health(state)
            self.groups.load(self.store)
            live = {i: s.app for i, s in self.apps.items() if not s.deleting}
            for app_id, app in unassigned(live, self.port_range).items():  # stored before ports were assigned
                state = self.apps[app_id]
                state.app = app
                state.versions[app.version or ""] = app.model_dump()
                self._persist(state)

    def _recall_health(self, state: AppState) -> None:
        """Health as the task records kept it, so that a restarted or new leader shows a healthy
        instance healthy at once (a router keeps sending it traffic), not only after the
        executor's next health status."""
        if not state.app.healthChecks:
            return
        for record in self.records(state.app.id):
            if record.healthy is not None:
                state.health.setdefault(record.task_id, {"alive": record.healthy,
                                                         "consecutiveFailures": 0 if record.healthy else 1})

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
        """UNREACHABLE past the app's inactiveAfterSeconds: start a replacement (reconcile.py says
        what happens when it comes back)."""
        if record.state.value not in ("TASK_UNREACHABLE", "TASK_UNKNOWN") or not record.history:
            return False
        return past_inactive_after(app, self.clock() - record.history[-1][1])

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
            raise AppLocked([current.public_id])

    def check_dependencies(self, proposed: dict[str, list[str]]) -> None:
        """Refuse (422 on `/dependencies`) what would make the apps' dependencies a cycle, as
        Marathon refuses a group whose dependency graph is cyclic: such apps would wait forever.
        `proposed`: app id -> its new `dependencies` as written (relative ones allowed)."""
        with self.lock:
            graph = {app_id: dependency_ids(state.app) for app_id, state in self.apps.items()
                     if not state.deleting}
        graph.update({app_id: absolute_ids(app_id, deps) for app_id, deps in proposed.items()})
        cycle = find_cycle(graph)
        if cycle:
            raise SpecError("/dependencies", "Dependency graph has cyclic dependencies: " + " -> ".join(cycle))

    def check_secrets(self, app: AppDefinition) -> None:
        """Each secret the app defines exists and its caller may reference it (scheduler/secrets)."""
        secrets = getattr(self.ctx, "secrets", None)
        if secrets is not None:
            secrets.check(sources(app), lambda name: f"/secrets/{name}/source")

    def create(self, app: AppDefinition, *, version: str | None = None,
               plan_id: str | None = None) -> tuple[AppState, Deployment]:
        """A new app; with `plan_id`, as a part of a group change (announced with its plan, and
        admitted with it)."""
        self.check_dependencies({app.id: app.dependencies})
        self.check_secrets(app)
        with self.lock:
            if plan_id is None:
                (app,) = self._admit([app])
            existing = self.apps.get(app.id)
            if existing is not None and not (existing.deleting and existing.deployment is None):
                raise Conflict(f"An app with id [{app.id}] already exists.")
            if self.groups.groups.get(app.id) is not None:
                raise Conflict(f"A group with id [{app.id}] already exists.")
            app.version = version or self._new_version(None)
            draft = AppState(app=app, versions={app.version: app.model_dump()})
            draft.version_info = {"lastScalingAt": app.version, "lastConfigChangeAt": app.version}
            deployment = self._deploy(draft, None, app.out(), dep.actions_for(None, app.out(), True), plan_id)
            state = self._commit(None, draft, announce=plan_id is None)
            self._make_groups(ancestors(app.id), app.version)
            return state, deployment

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
            (app,) = self._admit([app])
            return (state, *self._change(state, app, force), False)  # type: ignore[return-value]

    def scale(self, app_id: str, instances: int, force: bool = False) -> Deployment:
        with self.lock:
            state = self.get(app_id)
            app = state.app.model_copy(update={"instances": max(instances, 0)})
            return self._change(state, app, force)[0]

    def _change(self, state: AppState, app: AppDefinition, force: bool, *, version: str | None = None,
                plan_id: str | None = None) -> tuple[Deployment]:
        self._check_lock(state, force)
        self.check_secrets(app)
        draft = state.draft()
        before = state.app.out()
        config_changed = not app.config_equal(state.app)
        if config_changed:
            app.version = version or self._new_version(state)
            draft.version_info["lastConfigChangeAt"] = app.version
            draft.backoff.reset()  # a new version starts with a clean slate (Marathon)
        else:
            app.version = self._scaled_version(draft, version)
        draft.version_info["lastScalingAt"] = app.version
        draft.app = app
        draft.versions[app.version] = app.model_dump()
        self._trim_versions(draft)
        draft.frozen = False
        deployment = self._deploy(draft, before, app.out(), dep.actions_for(before, app.out(), config_changed),
                                  plan_id)
        self._commit(state, draft, announce=plan_id is None)
        return (deployment,)

    def _admit(self, changed: list[AppDefinition], in_group: bool = False) -> list[AppDefinition]:
        """New definitions with their service ports, router and drain labels checked (admission.py)."""
        held = {i: s.app for i, s in self.apps.items() if not s.deleting}
        return admit(held, changed, self.port_range, in_group)

    def admitted_targets(self, targets: dict[str, AppDefinition]) -> dict[str, AppDefinition]:
        """A group change's apps (id -> definition), admitted together (`_admit`)."""
        with self.lock:
            apps = [app.model_copy(update={"id": app_id}) for app_id, app in targets.items()]
            return dict(zip(targets, self._admit(apps, in_group=True)))

    def _scaled_version(self, draft: AppState, version: str | None = None) -> str:
        """Scaling makes a new app version, but running instances stay current: relabel them."""
        version = version or self._new_version(draft)
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

    def delete(self, app_id: str, force: bool = False, *, plan_id: str | None = None) -> Deployment:
        with self.lock:
            state = self.get(app_id)
            self._check_lock(state, force)
            draft = state.draft()
            draft.deleting = True
            deployment = self._deploy(draft, state.app.out(), None, [dep.STOP], plan_id)
            self._commit(state, draft, announce=plan_id is None)
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
                    self._retire(state, task_id, self.clock())
        self.wake.set()
        return deployments if scale else records

    def reset_delay(self, app_id: str) -> None:
        """`DELETE /v2/queue/{id}/delay` (Marathon's QueueResource.resetDelay): an app with
        instances still to launch starts its backoff over; any other answers 404."""
        with self.lock:
            state = self.apps.get(app_id)
            if state is None or not any(w.state is state for w in self.waiting()):
                raise NotFound(f"Application {app_id} not found in tasks queue.")
            draft = state.draft()
            draft.backoff.reset()
            self._commit(state, draft)

    def cancel(self, deployment_id: str, force: bool = False) -> Deployment | None:
        """DELETE /v2/deployments/{id}: roll back (a new deployment), or with force just stop.
        A group change's deployment is cancelled in every app it holds, rolled back as one."""
        with self.lock:
            parts = [d for d in list(self.deployments.values()) if d.public_id == deployment_id]
            if not parts:
                raise NotFound(f"DeploymentPlan {deployment_id} does not exist")
            if len(parts) == 1 and parts[0].plan_id is None:
                return self._cancel_part(parts[0], force, None)
            plan_id = str(uuid.uuid4())
            rollbacks = [r for part in parts if (r := self._cancel_part(part, force, plan_id)) is not None]
            if rollbacks:
                self._announce_plan(plan_id, rollbacks)
            return rollbacks[-1] if rollbacks else None

    def _cancel_part(self, deployment: Deployment, force: bool, plan_id: str | None) -> Deployment | None:
        with self.lock:
            state = self.apps[deployment.app_id]
            draft = state.draft()
            draft.deployment = None  # `_commit` cancels it
            rollback: Deployment | None = None
            if force:
                draft.frozen = True
            elif deployment.original is None:  # it created the app: rolling back removes it
                draft.deleting = True
                rollback = self._deploy(draft, deployment.target, None, [dep.STOP], plan_id)
            else:
                app = parse_app(deployment.original)
                app.version = deployment.original.get("version")
                draft.app = app
                draft.deleting = False
                rollback = self._deploy(draft, deployment.target, app.out(), [dep.RESTART], plan_id)
            self._commit(state, draft, announce=plan_id is None)
        return rollback

    def _deploy(self, draft: AppState, before: dict | None, after: dict | None, actions: list[str],
                plan_id: str | None = None) -> Deployment:
        """The deployment of a change being prepared; `_commit` starts and announces it. With
        `plan_id` it is a part of a group change, announced once for all (`_announce_plan`)."""
        version = (after or before or {}).get("version") or marathon_time(self.clock())
        deployment = Deployment(app_id=draft.app.id, version=version, actions=actions, original=before,
                                target=after, started_at=self.clock(), plan_id=plan_id)
        draft.deployment = deployment
        if plan_id is not None:
            self.plans.setdefault(plan_id, []).append(deployment)
        return deployment

    def _commit(self, live: AppState | None, draft: AppState, announce: bool = True) -> AppState:
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
            if announce:
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

    def _announce_plan(self, plan_id: str, parts: list[Deployment]) -> None:
        """The one `deployment_info` of a group change."""
        plan = plan_json(plan_id, parts[0].version, parts)
        self.events.publish("deployment_info", plan=plan, currentStep=plan["steps"][0] if plan["steps"] else {})

    def _announce_end(self, deployment: Deployment, status: str) -> None:
        deployment.status = status
        self.deployments.pop(deployment.id, None)
        if deployment.plan_id is not None:
            self._part_ended(deployment, status)
            return
        if status == "success":
            self.events.publish("deployment_success", id=deployment.id, plan=deployment.plan())
        else:
            self.events.publish("deployment_failed", id=deployment.id, plan=deployment.plan())

    def _part_ended(self, part: Deployment, status: str) -> None:
        """A group change is announced failed at its first part that fails (once), and
        successful when its last part succeeded."""
        plan_id = part.plan_id or part.id
        parts = self.plans.get(plan_id, [part])
        if status != "success" and plan_id not in self.failed_plans:
            self.failed_plans.add(plan_id)
            self.events.publish("deployment_failed", id=plan_id, plan=plan_json(plan_id, part.version, parts))
        if any(not p.finished for p in parts):
            return
        self.plans.pop(plan_id, None)
        if plan_id in self.failed_plans:
            self.failed_plans.discard(plan_id)
        else:
            self.events.publish("deployment_success", id=plan_id, plan=plan_json(plan_id, part.version, parts))

    # -- groups (Marathon's /v2/groups; scheduler/services/groups.py) -------------------------

    def app_ids(self) -> list[str]:
        """The apps clients see (not those being removed)."""
        return sorted(i for i, s in list(self.apps.items()) if not s.deleting)

    def _make_groups(self, group_ids: list[str], version: str | None) -> None:
        """Groups an app (or a group) lives in exist from now on, as in Marathon's tree."""
        missing = [g for g in group_ids if g not in self.groups.groups]
        for group_id in missing:
            self.groups.groups[group_id] = {"dependencies": [], "version": version}
        if missing:
            self.groups.persist(self.store)

    def _plan_version(self, states: list[AppState]) -> str:
        """One version for every app a group change touches, later than each of theirs."""
        latest = max((s.app.version or "" for s in states), default="")
        now = self.clock()
        version = marathon_time(now)
        while version <= latest:
            now += 0.001
            version = marathon_time(now)
        return version

    def deploy_group(self, group_id: str, targets: dict[str, AppDefinition], keep: set[str],
                     groups: dict[str, list[str]] | None, force: bool = False) -> tuple[str, str]:
        """One deployment for a group change: `targets` created or replaced, `keep` left as they
        are, every other app under `group_id` stopped and removed. `groups` (id -> dependencies)
        are the groups under `group_id` afterwards (None: all of them go, `group_id` too).
        Answers (deployment id, version); a change that changes no app still has both."""
        with self.lock:
            targets = self.admitted_targets(targets)
            live = {i: s for i, s in self.apps.items() if not s.deleting}
            under = [i for i in live if inside(i, group_id)]
            removed = [i for i in under if i not in targets and i not in keep]
            changed = {i: a for i, a in targets.items()
                       if i not in live or not (a.config_equal(live[i].app) and a.instances == live[i].app.instances)}
            clash = [g for g in changed if g in self.groups.groups and (groups is None or g not in groups)]
            if clash:
                raise Conflict(f"A group with id [{clash[0]}] already exists.")
            for app_id in [*changed, *removed]:
                if app_id in live:
                    self._check_lock(live[app_id], force)
            self.check_dependencies({i: a.dependencies for i, a in changed.items()})
            for app in changed.values():
                self.check_secrets(app)
            version = self._plan_version([live[i] for i in [*changed, *removed] if i in live])
            plan_id = str(uuid.uuid4())
            parts: list[Deployment] = []
            for app_id, app in changed.items():
                app.id = app_id
                if app_id in live:
                    parts.append(self._change(live[app_id], app, force, version=version, plan_id=plan_id)[0])
                else:
                    parts.append(self.create(app, version=version, plan_id=plan_id)[1])
            for app_id in removed:
                parts.append(self.delete(app_id, force, plan_id=plan_id))
            self._set_groups(group_id, groups, version)
            if parts:
                self._announce_plan(plan_id, parts)
            self._keep_version(version)
            return plan_id, version

    def scale_group(self, group_id: str, factor: float, force: bool = False) -> tuple[str, str]:
        """Marathon's `scaleBy`: every app under the group to ceil(instances * factor), as one deployment."""
        with self.lock:
            targets = {i: s.app.model_copy(update={"instances": math.ceil(s.app.instances * factor)})
                       for i, s in self.apps.items() if not s.deleting and inside(i, group_id)}
            keep = {i for i in self.app_ids() if not inside(i, group_id)}
            return self.deploy_group(group_id, targets, keep, self._groups_under(group_id), force)

    def delete_group(self, group_id: str, force: bool = False) -> tuple[str, str]:
        """Every app under the group stopped and removed, and the group (and its subgroups) with them."""
        with self.lock:
            if not self.groups.exists(group_id, self.app_ids()):
                raise NotFound(f"Group '{group_id}' does not exist")
            return self.deploy_group(group_id, {}, set(), None if group_id != "/" else {}, force)

    def rollback_group(self, group_id: str, version: str, force: bool = False) -> tuple[str, str]:
        """`{"version": v}`: the group's subtree back to what it was at version `v`."""
        with self.lock:
            snapshot = self.groups.snapshot_at(group_id, version)
            if snapshot is None:
                raise SpecError("/version", f"Group {group_id} not available in version {version}")
            targets = {i: AppDefinition.model_validate(d) for i, d in snapshot["apps"].items()
                       if inside(i, group_id)}
            groups = {g: list(d) for g, d in snapshot["groups"].items() if g == group_id or inside(g, group_id)}
            return self.deploy_group(group_id, targets, set(), groups, force)

    def _groups_under(self, group_id: str) -> dict[str, list[str]]:
        return {g: d for g, d in self.groups.dependencies().items() if g == group_id or inside(g, group_id)}

    def _set_groups(self, group_id: str, groups: dict[str, list[str]] | None, version: str) -> None:
        """The groups under `group_id` become `groups` (None: none, `group_id` itself gone too)."""
        tree = self.groups.groups
        for old in [g for g in tree if g == group_id or inside(g, group_id)]:
            if groups is None or old not in groups:
                del tree[old]
        for gid, dependencies in (groups or {}).items():
            if gid == "/":
                continue
            record = tree.get(gid)
            if record is None or record.get("dependencies") != dependencies:
                tree[gid] = {"dependencies": dependencies, "version": version}
        for gid in groups or {}:
            for parent in ancestors(gid + "/x"):
                tree.setdefault(parent, {"dependencies": [], "version": version})
        for gid in [group_id, *ancestors(group_id)]:  # a change in a group is a change of its parents
            if gid in tree:
                tree[gid]["version"] = version
        self.groups.persist(self.store)

    def _keep_version(self, version: str) -> None:
        """The whole tree as it is now, kept as Marathon keeps root group versions: a group's
        versions are those in which it exists (`GET .../versions`), and a rollback finds it there."""
        apps = {i: s.app.model_dump() for i, s in self.apps.items() if not s.deleting}
        self.groups.record(self.store, {"id": "/", "version": version, "apps": apps,
                                        "groups": self.groups.dependencies()})

    # -- the loop -----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        for drained in self.drains.over(now):
            self.core.kill(drained.task_id)
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
            self._retire(state, task_id, now)
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

    def _retire(self, state: AppState, task_id: str, now: float) -> None:
        """Kill an instance; a running one leaves the routers' rotation first (drain.py)."""
        state.killing.add(task_id)
        record = self.core.get(task_id)
        running = record is not None and record.state.value == "TASK_RUNNING"
        drain = self.drains.begin(task_id, state.app.id, state.app.labels, now) if running else None
        if drain is None:
            self.core.kill(task_id)
            return
        self.events.publish("instance_changed_event", **draining_event(
            record, drain, state.instances.get(task_id, state.app.version or ""), self.address_of(record), now))

    def router_report(self, document: Any) -> dict[str, Any]:
        """`POST /dockyard/v1/routers`: a router says which instances it still serves."""
        router_id, group, serving, every = parse_report(document)
        draining = self.drains.report(router_id, group, serving, every, self.clock())
        self.wake.set()
        return {"draining": draining}

    def waiting_for(self, state: AppState) -> list[str]:
        """The app's `dependencies` (absolute ids) not yet at their target: their deployment
        finished and `instances` of them running, healthy and ready. A missing one counts."""
        waiting = []
        through_groups = self.groups.group_dependency_ids(state.app.id, self.app_ids())
        for dependency in dict.fromkeys([*dependency_ids(state.app), *through_groups]):
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
            # The agent's address, not its hostname, which may resolve only inside its cluster
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
            if state is None:  # its app removed as this status came in: still say how the task ended
                publish_status(self.events, record, app_id, "", self.address_of(record), now)
                return
            version = state.instances.get(record.task_id, state.app.version) or ""
            publish_status(self.events, record, app_id, version, self.address_of(record), now)
            if "healthy" in status:
                health_changed(self.events, state, record, bool(status["healthy"]), status, now, version)
            if isinstance(status.get("check_status"), dict):
                state.checks[record.task_id] = status["check_status"]
            if record.terminal:
                requested = record.task_id in state.killing
                self.drains.forget([record.task_id])
                state.killing.discard(record.task_id)
                state.instances.pop(record.task_id, None)
                state.ready.pop(record.task_id, None)
                state.checked_at.pop(record.task_id, None)
                self.readiness.forget(record.task_id)
                health = state.health.pop(record.task_id, None)
                state.checks.pop(record.task_id, None)
                if record.healthy is False and not requested:
                    self.events.publish("unhealthy_instance_kill_event", appId=app_id, taskId=record.task_id,
                                        instanceId=record.task_id, version=version,
                                        reason=record.message or "unhealthy", host=record.hostname or "",
                                        slaveId=record.agent_id or "")
                if record.state.value in FAILURE_STATES or (record.state.value == "TASK_KILLED" and not requested):
                    state.last_failure = last_failure(record, app_id, version, now)
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
        return past_expunge_after(app, now - record.history[-2][1])

    # -- what the API shows (rendered by scheduler/api/marathon_views.py) ---------------------------

    def address_of(self, record: Any) -> str:
        """The agent's IP (marathon-lb reads ipAddresses[0]; addresses.py)."""
        return self.addresses.of(record)

    def waiting(self) -> list[Waiting]:
        """The apps with instances still to launch (Marathon's launch queue), oldest state first."""
        now = self.clock()
        out = []
        with self.lock:
            states = list(self.apps.values())
        for state in states:
            if state.deleting:
                continue
            live = [i for i in self.instances(state) if i.live]
            pending = [i for i in live if i.state == "PENDING"]
            count = len(pending) + max(state.app.instances - len(live), 0)
            if count > 0:
                out.append(Waiting(state=state, count=count, delay_left=state.backoff.time_left(now),
                                   since=state.waiting_since or marathon_time(now),
                                   report=self.core.placement_report(owner_of(state.app.id))))
        return out

    def plan_preview(self, app: AppDefinition) -> tuple[int, Any]:
        """`app deploy --dry-run`: (agents considered, the placement `Plan`); preview.py."""
        return plan_preview(self.ctx, app)


__all__ = ["AppState", "ServiceManager", "Waiting", "new_task_id"]
