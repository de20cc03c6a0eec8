"""What the pages show, read from the scheduler's own domain in process.

Reads call the managers and the API's view functions directly (scheduler/api/
marathon_views.py, metronome_views.py): a page shows what `/v2` and `/v1` would
say, without an HTTP round trip or JSON in between. One exception, for speed: the
apps list groups the core's task records by app in one pass instead of asking for
each app's records (a scan of every record each time: 1,000 apps x 10,000 tasks),
and counts them by the rules `marathon_views.app_view` uses.

An app's status, as the pages name it (most pressing first):
- `suspended`: no instances wanted and none left;
- `failing`: its tasks failed and it waits out its launch backoff;
- `waiting`: instances to launch that the last offers could not place;
- `deploying`: a deployment in progress;
- `running`: at its target.
"""
from __future__ import annotations

import difflib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from scheduler.api import marathon_views, metronome_views
from scheduler.api.marathon import _label_filter as label_filter
from scheduler.services.deployments import Deployment
from scheduler.services.instances import owner_of
from scheduler.services.manager import AppState

STATUSES = ("running", "deploying", "waiting", "failing", "suspended")
RUN_CHART = 30  # finished runs in a job's chart


@dataclass
class AppRow:
    """One app as the lists show it."""

    id: str
    instances: int
    cpus: float
    mem: float
    running: int
    healthy: int
    unhealthy: int
    staged: int
    waiting: int
    has_health: bool
    status: str
    labels: dict[str, str]
    version: str
    deployment: dict[str, Any] | None = None
    reason: str = ""
    delay_left: float = 0.0


def _live_records(ctx: Any) -> dict[str, list[Any]]:
    """Every live app task record, by owner, in one pass."""
    grouped: dict[str, list[Any]] = defaultdict(list)
    for record in ctx.core.tasks("app:"):
        if not record.terminal:
            grouped[record.owner].append(record)
    return grouped


def deployment_progress(deployment: Deployment | None) -> dict[str, Any] | None:
    """`{id, step, steps, action}` of a deployment in progress; None otherwise."""
    if deployment is None or deployment.finished:
        return None
    return {"id": deployment.public_id, "step": min(deployment.current + 1, len(deployment.actions)),
            "steps": len(deployment.actions), "action": deployment.action or "",
            "started": deployment.started_at or None}


def app_row(state: AppState, records: list[Any], report: Any, now: float) -> AppRow:
    app = state.app
    live = [r for r in records if r.task_id not in state.killing]
    running = [r for r in live if r.state.value == "TASK_RUNNING"]
    has_health = bool(app.healthChecks)
    pending = sum(1 for r in live if r.state.value == "PENDING")
    waiting = pending + max(app.instances - len(live), 0)
    delay_left = max(state.backoff.until - now, 0.0)
    progress = deployment_progress(state.deployment)
    reason = report.explain() if report is not None and waiting and getattr(report, "unplaced", 0) else ""
    if app.instances == 0 and not live:
        status = "suspended"
    elif waiting and delay_left > 0 and state.last_failure:
        status = "failing"
    elif reason:
        status = "waiting"
    elif progress is not None:
        status = "deploying"
    else:
        status = "running"
    return AppRow(id=app.id, instances=app.instances, cpus=app.cpus, mem=app.mem, running=len(running),
                  healthy=sum(1 for r in running if r.healthy is True) if has_health else 0,
                  unhealthy=sum(1 for r in running if r.healthy is False) if has_health else 0,
                  staged=sum(1 for r in live if r.state.value in marathon_views.STAGED),
                  waiting=waiting, has_health=has_health, status=status, labels=dict(app.labels),
                  version=app.version or "", deployment=progress, reason=reason, delay_left=delay_left)


def app_rows(ctx: Any, *, id_part: str = "", label: str = "", status: str = "") -> list[AppRow]:
    """The apps (sorted by id) matching the filters: id substring, Marathon label selector, status."""
    grouped = _live_records(ctx)
    reports = ctx.core.placement_reports()
    now = ctx.services.clock()
    matches = label_filter(label)
    rows = []
    for app_id, state in sorted(list(ctx.services.apps.items())):
        if state.deleting or (id_part and id_part not in app_id) or not matches(state.app.labels):
            continue
        owner = owner_of(app_id)
        row = app_row(state, grouped.get(owner, []), reports.get(owner), now)
        if not status or row.status == status:
            rows.append(row)
    return rows


def by_status(rows: Iterable[AppRow]) -> dict[str, list[AppRow]]:
    out: dict[str, list[AppRow]] = {name: [] for name in STATUSES}
    for row in rows:
        out[row.status].append(row)
    return out


# -- one app --------------------------------------------------------------------------------------

def app_detail(ctx: Any, app_id: str) -> dict[str, Any]:
    """An app as `GET /v2/apps/{id}` says it, its row, its versions, and the last offer round's
    report when instances wait for want of a place."""
    services = ctx.services
    state = services.get(app_id)
    view = marathon_views.app_view(services, state, {"tasks", "lastTaskFailure"}, single=True)
    records = services.records(app_id)
    owner = owner_of(app_id)
    report = ctx.core.placement_report(owner)
    row = app_row(state, records, report, services.clock())
    return {"app": view, "row": row, "definition": state.app.out(), "versions": sorted(state.versions, reverse=True),
            "report": report if row.reason else None}


def version_diff(ctx: Any, app_id: str, older: str, newer: str) -> list[tuple[str, str]]:
    """A unified diff of two versions' definitions, as `(kind, line)` with kind one of
    `add`, `del`, `hunk`, `same`; empty when either version is unknown."""
    state = ctx.services.get(app_id)
    if older not in state.versions or newer not in state.versions:
        return []

    def lines(version: str) -> list[str]:
        document = {k: v for k, v in state.versions[version].items() if k not in ("version", "versionInfo")}
        return json.dumps(document, indent=2, sort_keys=True, default=str).splitlines()

    out = []
    for line in difflib.unified_diff(lines(older), lines(newer), older, newer, lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        out.append((kind, line))
    return out


# -- jobs -----------------------------------------------------------------------------------------

def last_run(ctx: Any, job_id: str) -> dict[str, Any] | None:
    """The newest run of a job, active or finished, as the API shows runs."""
    runs = ctx.jobs.active_runs(job_id) or ctx.jobs.finished_runs(job_id)[-1:]
    newest = max(runs, key=lambda r: r.created_at, default=None)
    return newest.to_api(tasks=False) if newest is not None else None


def job_rows(ctx: Any) -> list[dict[str, Any]]:
    rows = []
    for spec in sorted(ctx.jobs.jobs.values(), key=lambda s: s.id):
        view = metronome_views.job_view(ctx.jobs, spec, {"historySummary"})
        view["lastRun"] = last_run(ctx, spec.id)
        view["activeCount"] = len(ctx.jobs.active_runs(spec.id))
        rows.append(view)
    return rows


def job_detail(ctx: Any, job_id: str) -> dict[str, Any]:
    spec = ctx.jobs.get_job(job_id)
    view = metronome_views.job_view(ctx.jobs, spec, {"historySummary"})
    active = sorted(ctx.jobs.active_runs(job_id), key=lambda r: r.created_at, reverse=True)
    finished = list(reversed(ctx.jobs.finished_runs(job_id)))
    runs = [_run_row(r) for r in active + finished]
    return {"job": view, "definition": spec.dump(), "runs": runs,
            "chart": run_chart([r for r in reversed(runs) if r["status"] in ("SUCCESS", "FAILED")][-RUN_CHART:])}


def _run_row(run: Any) -> dict[str, Any]:
    view = run.to_api()
    end = run.completed_at
    view["seconds"] = (end - run.created_at) if end else None
    view["created"] = run.created_at
    view["active"] = not run.finished
    return view


def run_chart(runs: list[dict[str, Any]], width: int = 12, height: int = 48) -> dict[str, Any]:
    """Bars for an SVG: one per finished run, oldest first, height by duration (the longest
    fills the chart), class by status."""
    longest = max((r["seconds"] or 0 for r in runs), default=0) or 1
    bars = []
    for index, run in enumerate(runs):
        tall = max(int(round((run["seconds"] or 0) / longest * (height - 4))), 3)
        bars.append({"x": index * width, "y": height - tall, "height": tall, "width": width - 2,
                     "status": run["status"].lower(), "id": run["id"], "seconds": run["seconds"]})
    return {"width": max(len(runs) * width, width), "height": height, "bars": bars,
            "success": sum(1 for r in runs if r["status"] == "SUCCESS"),
            "failure": sum(1 for r in runs if r["status"] == "FAILED")}


# -- tasks ----------------------------------------------------------------------------------------

def task_owner(record: Any) -> dict[str, str]:
    """Who a task belongs to: `{"kind": "app", "id": ...}` or `{"kind": "job", "id", "run"}`."""
    owner = record.owner
    if owner.startswith("app:"):
        return {"kind": "app", "id": owner[4:]}
    if owner.startswith("job:"):
        job_id, _, run_id = owner[4:].partition("/")
        return {"kind": "job", "id": job_id, "run": run_id}
    return {"kind": "other", "id": owner}
