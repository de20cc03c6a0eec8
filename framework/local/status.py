"""`dockyard status`: agents, frameworks and tasks of a master, as tables or JSON.

Reads the master's legacy `/master/state` (which a real Mesos master serves too),
so it works against either.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click
import httpx
from rich.console import Console

from framework.mesos.detector import detect
from framework.tables import console as make_console
from framework.tables import table

FLAT = ("cpus", "mem", "disk", "gpus")


def fetch_state(master: str, timeout: float = 5.0) -> dict:
    detector = detect(master)
    try:
        leader = detector.wait(timeout)
    finally:
        detector.close()
    if leader is None:
        raise click.ClickException(f"no leading master found at {master}")
    response = httpx.get(f"http://{leader}/master/state", timeout=timeout, follow_redirects=True)
    response.raise_for_status()
    return response.json()


def summarize(state: dict) -> dict:
    """The parts `dockyard status` shows, in a JSON-friendly shape."""
    agents = []
    hostnames = {}
    for slave in sorted(state.get("slaves", []), key=lambda s: s.get("hostname", "")):
        hostnames[slave.get("id")] = slave.get("hostname")
        total = slave.get("resources", {})
        used = slave.get("used_resources", {})
        agents.append({
            "id": slave.get("id"), "hostname": slave.get("hostname"), "active": slave.get("active", True),
            "attributes": slave.get("attributes", {}),
            "total": {k: total.get(k, 0) for k in FLAT},
            "used": {k: used.get(k, 0) for k in FLAT},
            "free": {k: round(float(total.get(k, 0)) - float(used.get(k, 0)), 3) for k in FLAT},
        })
    frameworks, tasks = [], []
    for framework in state.get("frameworks", []):
        live = framework.get("tasks", [])
        frameworks.append({
            "id": framework.get("id"), "name": framework.get("name"), "active": framework.get("active"),
            "connected": framework.get("connected"), "tasks": len(live),
            "used": {k: framework.get("used_resources", {}).get(k, 0) for k in FLAT},
        })
        for task in live:
            tasks.append({
                "id": task.get("id"), "name": task.get("name"), "framework": framework.get("name"),
                "agent": hostnames.get(task.get("slave_id"), task.get("slave_id")), "state": task.get("state"),
                "cpus": task.get("resources", {}).get("cpus", 0), "mem": task.get("resources", {}).get("mem", 0),
            })
    return {"master": state.get("hostname"), "leader": state.get("leader"), "agents": agents,
            "frameworks": frameworks, "tasks": tasks}


def _num(value: Any) -> str:
    return f"{float(value):g}"


def render(summary: dict, console: Console) -> None:
    agents = table("hostname", "id", "active", "cpus used/total", "mem used/total (MB)", "disk free (MB)", title="agents")
    for agent in summary["agents"]:
        agents.add_row(agent["hostname"], agent["id"], "yes" if agent["active"] else "no",
                       f"{_num(agent['used']['cpus'])}/{_num(agent['total']['cpus'])}",
                       f"{_num(agent['used']['mem'])}/{_num(agent['total']['mem'])}", _num(agent["free"]["disk"]))
    console.print(agents)
    frameworks = table("name", "id", "active", "tasks", "cpus", "mem", title="frameworks")
    for framework in summary["frameworks"]:
        frameworks.add_row(framework["name"], framework["id"], "yes" if framework["active"] else "no",
                           str(framework["tasks"]), _num(framework["used"]["cpus"]), _num(framework["used"]["mem"]))
    console.print(frameworks)
    tasks = table("id", "name", "framework", "agent", "state", "cpus", "mem",
                  title="tasks")
    for task in summary["tasks"]:
        tasks.add_row(task["id"], task["name"], task["framework"], str(task["agent"]), task["state"],
                      _num(task["cpus"]), _num(task["mem"]))
    console.print(tasks)


@click.command("status")
@click.option("--master", default="127.0.0.1:5050", show_default=True, help="HOST:PORT or zk://...")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
def status_command(master: str, as_json: bool) -> None:
    """Show the cluster: agents (resources used/free), frameworks, tasks."""
    try:
        summary = summarize(fetch_state(master))
    except httpx.HTTPError as error:
        raise click.ClickException(f"cannot read the master's state at {master}: {error}") from None
    if as_json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(summary, make_console())
