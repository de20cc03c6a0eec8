"""Marathon's JSON for the service domain: apps, tasks, groups, deployments, the launch queue.

The service manager (scheduler/services/manager.py) keeps apps and answers what
they are; these functions say it the way Marathon's `/v2` API does (its
AppInfo, EnrichedTask, Group, DeploymentPlan and QueueItem formats), so that
existing clients (the `marathon` library, marathon-lb) read it unchanged.
"""
from __future__ import annotations

from typing import Any

from scheduler.events import marathon_time
from scheduler.placement import PlacementReport, Plan
from scheduler.services.admission import service_ports
from scheduler.services.checks import check_result
from scheduler.services import deployments as dep
from scheduler.services.deployments import Deployment, merged_steps
from scheduler.services.groups import child_groups, inside, parent_of
from scheduler.services.manager import AppState, ServiceManager, Waiting
from scheduler.services.specs import AppDefinition

STAGED = ("PENDING", "LAUNCHED", "TASK_STAGING", "TASK_STARTING")
GROUP_EMBEDS = frozenset({"group.apps", "group.pods", "group.groups"})  # Marathon's default: all three
EPOCH = "1970-01-01T00:00:00.000Z"  # the version of a root group nothing changed yet


def task_view(services: ServiceManager, record: Any, state: AppState | None = None,
              draining: bool = False) -> dict[str, Any]:
    """One task as Marathon's EnrichedTask (`state` saves looking its app up again). `host` is
    the agent's hostname as Mesos names it (`$HOST`), `ipAddresses` the agent's IP; with
    `draining` (`embed=apps.draining`, what routers ask) a task leaving rotation before its
    kill says `"draining": true`, a key Marathon does not have and its clients refuse."""
    app_id = record.owner[4:]
    state = state or services.apps.get(app_id)
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
    agent = services.core.agent(record.agent_id) if record.agent_id else None
    attributes = (agent or {}).get("attributes") or {}
    checked = state.checks.get(record.task_id) if state is not None else None
    return {
        "id": record.task_id, "appId": app_id, "host": record.hostname or "",
        "ports": list(record.ports), "servicePorts": service_ports_of(state),
        "slaveId": record.agent_id or "",
        "stagedAt": marathon_time(record.launched_at or record.created_at),
        "startedAt": marathon_time(record.started_at) if record.started_at else None,
        "version": version, "state": value,
        "ipAddresses": [{"ipAddress": services.address_of(record), "protocol": "IPv4"}] if record.agent_id else [],
        "healthCheckResults": results,
        "localVolumes": [],
        **({"region": attributes["region"]} if attributes.get("region") else {}),
        **({"zone": attributes["zone"]} if attributes.get("zone") else {}),
        **({"checkResult": check_result(checked)} if checked else {}),
        **({"draining": True} if draining and services.drains.is_draining(record.task_id) else {}),
    }


def service_ports_of(state: AppState | None) -> list[int]:
    """The app's service ports (Marathon's `servicePorts`): `portDefinitions[].port`, or the
    container's `portMappings[].servicePort`."""
    return service_ports(state.app) if state is not None else []


def app_view(services: ServiceManager, state: AppState, embed: set[str], *, single: bool = False) -> dict[str, Any]:
    """One app as Marathon's AppInfo: its definition, counts, and what `embed` asks for
    (`single`: `GET /v2/apps/{id}`, which embeds tasks and the last failure)."""
    data = state.app.out()
    records = services.records(state.app.id)
    running = [r for r in records if r.state.value == "TASK_RUNNING"]
    data["tasksStaged"] = sum(1 for r in records if r.state.value in STAGED)
    data["tasksRunning"] = len(running)
    if state.app.healthChecks:
        data["tasksHealthy"] = sum(1 for r in running if r.healthy is True)
        data["tasksUnhealthy"] = sum(1 for r in running if r.healthy is False)
    else:
        data["tasksHealthy"] = data["tasksUnhealthy"] = 0
    data["deployments"] = ([{"id": state.deployment.public_id}]
                           if state.deployment and not state.deployment.finished else [])
    data["versionInfo"] = dict(state.version_info)
    if single or "tasks" in embed:
        data["tasks"] = [task_view(services, r, state, "draining" in embed) for r in records]
    if (single or "lastTaskFailure" in embed) and state.last_failure:
        data["lastTaskFailure"] = state.last_failure
    if "readiness" in embed:
        data["readinessCheckResults"] = [
            {"name": state.app.readinessChecks[0].name, "taskId": t, "ready": ok, "lastResponse": None}
            for t, ok in state.ready.items()] if state.app.readinessChecks else []
    if "taskStats" in embed:
        data["taskStats"] = {}
    return data


def group_view(services: ServiceManager, group_id: str, embed: set[str]) -> dict[str, Any]:
    """Marathon's GroupInfo: the groups that exist and those app ids make (`/` is the root).

    `embed` as given (`group.apps`, `group.groups`, `group.pods`, `group.apps.tasks`, ...);
    none given embeds apps, groups and pods, as Marathon does (GroupsResource `defaultEmbeds`)."""
    group_embeds = {e for e in embed if not e.startswith("group.apps.")} or set(GROUP_EMBEDS)
    app_embeds = {e.removeprefix("group.apps.") for e in embed if e.startswith("group.apps.")}
    apps = {i: s for i, s in sorted(list(services.apps.items())) if not s.deleting}
    return _group(services, group_id, apps, services.groups.dependencies(), group_embeds, app_embeds)


def _group(services: ServiceManager, group_id: str, apps: dict[str, AppState], groups: dict[str, list[str]],
           group_embeds: set[str], app_embeds: set[str]) -> dict[str, Any]:
    versions = [s.app.version or "" for i, s in apps.items() if inside(i, group_id)]
    versions += [r.get("version") or "" for g, r in list(services.groups.groups.items())
                 if g == group_id or inside(g, group_id)]
    # No `enforceRole` (Marathon 1.9+ shows `false` here): dockyard enforces no group role, and the
    # PyPI `marathon` client (0.13) cannot read a group that has the key (docs/mesos-compatibility.md).
    out: dict[str, Any] = {"id": group_id, "dependencies": list(groups.get(group_id, [])),
                           "version": max(versions, default="") or EPOCH}
    if "group.apps" in group_embeds:
        out["apps"] = [app_view(services, s, app_embeds) for i, s in apps.items() if parent_of(i) == group_id]
    if "group.groups" in group_embeds:
        out["groups"] = [_group(services, child, apps, groups, group_embeds, app_embeds)
                         for child in child_groups(group_id, list(apps), groups)]
    if "group.pods" in group_embeds:
        out["pods"] = []
    return out


def group_version_view(snapshot: dict[str, Any], group_id: str) -> dict[str, Any]:
    """A group as a kept version holds it: app definitions and subgroups."""
    apps: dict[str, Any] = snapshot.get("apps", {})
    groups: dict[str, list[str]] = snapshot.get("groups", {})
    children = child_groups(group_id, list(apps), groups)
    return {"id": group_id, "dependencies": list(groups.get(group_id, [])), "version": snapshot["version"],
            "apps": [AppDefinition.model_validate(d).out() for i, d in sorted(apps.items()) if parent_of(i) == group_id],
            "groups": [group_version_view(snapshot, child) for child in children], "pods": []}


def deployment_view(parts: list[Deployment]) -> dict[str, Any]:
    """A `GET /v2/deployments` entry: one deployment, over one app or (a group change) several."""
    first = parts[0]
    actions = [{"action": d.action, "app": d.app_id, "readinessCheckResults": []}
               for d in sorted(parts, key=lambda d: d.app_id) if d.action]
    steps = merged_steps(parts)
    return {
        "id": first.public_id, "version": first.version, "affectedApps": sorted(d.app_id for d in parts),
        "affectedPods": [], "steps": steps, "currentActions": actions,
        "currentStep": min(max(d.current for d in parts) + 1, len(steps)),
        "totalSteps": len(steps),
    }


def deployments_view(services: ServiceManager) -> list[dict[str, Any]]:
    """`GET /v2/deployments`: the running ones, a group change's parts as one."""
    plans: dict[str, list[Deployment]] = {}
    for deployment in list(services.deployments.values()):
        plans.setdefault(deployment.public_id, []).append(deployment)
    return [deployment_view(parts) for parts in plans.values()]


def queue_view(services: ServiceManager, last_unused: bool = False) -> list[dict[str, Any]]:
    """`GET /v2/queue`: Marathon's QueueItems, with `lastUnusedOffers` when asked."""
    now = services.clock()
    return [_queue_item(services, waiting, now, last_unused) for waiting in services.waiting()]


def _queue_item(services: ServiceManager, waiting: Waiting, now: float, last_unused: bool) -> dict[str, Any]:
    report = waiting.report if waiting.report is not None else PlacementReport("")  # before any offer round
    item: dict[str, Any] = {
        "app": app_view(services, waiting.state, set()), "count": waiting.count,
        "delay": {"timeLeftSeconds": round(waiting.delay_left, 3), "overdue": waiting.delay_left <= 0},
        "since": waiting.since,
        "processedOffersSummary": report.processed_offers_summary(),
    }
    if last_unused:
        item["lastUnusedOffers"] = [
            {"offer": {"id": "", "agentId": u["agentId"], "hostname": u["hostname"], "resources": [],
                       "attributes": []}, "reason": u["reason"], "timestamp": marathon_time(now)}
            for u in report.unused]
    return item


def plan_view(app: AppDefinition, agents: int, plan: Plan) -> dict[str, Any]:
    """dockyard's `POST /dockyard/v1/plan`: where each instance would go, and the reports of
    what could not be placed."""
    return {
        "app": app.out(), "agents": agents,
        "assignments": [{"taskId": a.request.task_id, "agentId": a.agent_id, "host": a.hostname,
                         "ports": a.ports, "scores": {k: round(v, 4) for k, v in a.scores.items()}}
                        for a in plan.assignments],
        "unplaced": len(plan.unplaced),
        "reports": {owner: report.to_json() for owner, report in plan.reports.items()},
    }


def tasks_text(services: ServiceManager, states: list[AppState]) -> str:
    """`text/plain` tasks, as Marathon's EndpointsHelper.appsToEndpointString: per app and service
    port a line `app_id<TAB>servicePort<TAB>host:port<TAB>...` of its running tasks (an app
    without ports: one line, `app_id<TAB> <TAB>host host ...`)."""
    lines = []
    for state in states:
        clean = state.app.id.strip("/").replace("/", "_")
        running = [r for r in services.records(state.app.id) if r.state.value == "TASK_RUNNING"]
        ports = service_ports_of(state)
        if not ports:
            lines.append(f"{clean}\t \t" + "".join(f"{r.hostname or ''} " for r in running))
            continue
        for index, port in enumerate(ports):
            hosts = "".join(f"{r.hostname or ''}:{r.ports[index] if index < len(r.ports) else 0}\t" for r in running)
            lines.append(f"{clean}\t{port}\t{hosts}")
    return "".join(line + "\n" for line in lines)


def planned_steps(services: ServiceManager, group_id: str, targets: dict[str, AppDefinition],
                  keep: set[str]) -> list[dict[str, Any]]:
    """The steps a group change would take (`dryRun=true`), as Marathon's DeploymentPlan lists them."""
    live = {i: services.apps[i] for i in services.app_ids()}
    parts = []
    for app_id, app in services.admitted_targets(targets).items():
        state = live.get(app_id)
        if state is None:
            actions = dep.actions_for(None, app.out(), True)
        elif not app.config_equal(state.app):
            actions = [dep.RESTART]
        elif app.instances != state.app.instances:
            actions = [dep.SCALE]
        else:
            continue
        parts.append(Deployment(app_id=app_id, version="", actions=actions))
    parts += [Deployment(app_id=i, version="", actions=[dep.STOP])
              for i in live if inside(i, group_id) and i not in targets and i not in keep]
    return merged_steps(parts)
