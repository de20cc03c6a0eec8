"""Where instances would go, and why not: the scheduler's dry run (`POST /dockyard/v1/plan`).

`app deploy --dry-run` prints a plan whole; `app scale` previews one before it asks
for more instances; a deployment or a job run that waits prints the same numbers
(`agent1: InsufficientMemory - mem: want 100000, free 23049 of 23081`) as soon as it
is seen waiting, rather than a count of refused offers.
"""
from __future__ import annotations

from typing import Any

import click

from framework.tables import table as make_table
from scheduler.cli.client import Api, console

AGENT_LINES = 5  # refused agents shown per report: enough to see the pattern
READ_ONLY = ("tasks", "deployments", "tasksRunning", "tasksStaged", "tasksHealthy", "tasksUnhealthy",
             "lastTaskFailure", "versionInfo", "taskStats", "readinessCheckResults")


def plan(api: Api, app: dict[str, Any]) -> dict[str, Any]:
    """The dry run of an app definition: nothing is launched."""
    return api.call("POST", "/dockyard/v1/plan", {k: v for k, v in app.items() if k not in READ_ONLY})


def job_as_app(job: dict[str, Any], instances: int) -> dict[str, Any]:
    """What a job run asks the placement for, as an app definition the dry run takes: its
    resources and constraints, no host ports (a job task asks for none)."""
    run = job.get("run") or {}
    constraints = [[c.get("attribute"), c.get("operator"), *([c["value"]] if c.get("value") is not None else [])]
                   for c in (run.get("placement") or {}).get("constraints") or []]
    return {"id": "/" + str(job.get("id", "job")), "cmd": "true", "instances": max(instances, 1),
            "cpus": run.get("cpus", 1.0), "mem": run.get("mem", 128.0), "disk": run.get("disk", 0.0),
            "gpus": int(run.get("gpus") or 0), "constraints": constraints, "portDefinitions": []}


def why_unplaced(api: Api, app: dict[str, Any]) -> dict[str, Any] | None:
    """The dry run's report of what of `app` cannot be placed now; None when all of it can, or when
    there is no dry run to be had (a refusal, a scheduler without it): callers then say less."""
    try:
        return unplaced_report(plan(api, app))
    except click.ClickException:
        return None


def unplaced_report(found: dict[str, Any]) -> dict[str, Any] | None:
    """The plan's report of what could not be placed (one owner per dry run), or None."""
    return next((r for r in (found.get("reports") or {}).values() if r.get("unplaced")), None)


def explanation(report: dict[str, Any]) -> str:
    """The report's line for people, without the owner it starts with (the command named the app)."""
    text = str(report.get("explanation") or "")
    owner = f"{report.get('owner')}: "
    return text[len(owner):] if text.startswith(owner) else text


def agent_lines(report: dict[str, Any]) -> list[str]:
    """`agent1: InsufficientMemory - mem: want 100000, free 23049 of 23081`, per refused agent."""
    return [f"{u['hostname'] or u['agentId']}: {', '.join(u['reason'])} - {u['detail']}"
            for u in (report.get("unused") or [])[:AGENT_LINES]]


def print_plan(found: dict[str, Any]) -> None:
    """A dry run in full: each instance's agent, ports and scores; then what cannot be placed."""
    table = make_table("TASK", "AGENT", "HOST", "PORTS", "SCORES")
    for item in found["assignments"]:
        table.add_row(item["taskId"], item["agentId"], item["host"], ",".join(map(str, item["ports"])),
                      " ".join(f"{k}={v}" for k, v in item["scores"].items()))
    console.print(table)
    console.print(f"{len(found['assignments'])} placed, {found['unplaced']} not placed, "
                  f"{found['agents']} agents considered")
    for report in found["reports"].values():
        if report["unplaced"]:
            console.print(report["explanation"], style="red", markup=False)
            for line in agent_lines(report):
                console.print(f"  {line}", markup=False)
