"""`dockyard status`: agents, frameworks and tasks of a master, as tables or JSON.

Reads the master's legacy `/master/state` (which a real Mesos master serves too),
so it works against either. The master and the user come from the client
settings (framework/security/client.py: `--config`, `$DOCKYARD_CONFIG`,
`./.dockyard/client.json`): `--master` wins over the file's `master`, and the
file's credentials and CA are used either way. HTTPS is spoken when the master
URL says `https://`, or, for a zk:// master, when the settings' URLs do.
"""
from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
from rich.console import Console

from framework.errors import SecurityError
from framework.mesos.detector import detect
from framework.security import client as client_settings
from framework.security.client import ClientConfig
from framework.tables import console as make_console
from framework.tables import table

FLAT = ("cpus", "mem", "disk", "gpus")


DEFAULT_MASTER = "127.0.0.1:5050"


def master_scheme(master: str, settings: ClientConfig) -> str:
    """`https` when the master URL says so, or (zk://) when the settings' URLs are HTTPS."""
    if master.startswith(("http://", "https://")):
        return master.split("://", 1)[0]
    if master.startswith("zk://"):
        urls = [settings.master or "", settings.url]
        return "https" if any(u.startswith("https://") for u in urls) else "http"
    return "https" if (settings.master or "").startswith("https://") else "http"


def fetch_state(master: str, timeout: float = 5.0, settings: ClientConfig | None = None) -> dict:
    settings = settings or ClientConfig()
    detector = detect(master)
    try:
        leader = detector.wait(timeout)
    finally:
        detector.close()
    if leader is None:
        raise click.ClickException(f"no leading master found at {master}")
    url = f"{master_scheme(master, settings)}://{leader}"
    with httpx.Client(timeout=timeout, **settings.httpx_options()) as client:
        response = client.get(f"{url}/master/state")
        for _ in range(3):  # a standby master names the leader; by hand, so the credentials go too
            location = urlsplit(response.headers.get("location", ""))
            if response.status_code not in (301, 302, 307, 308) or not location.netloc:
                break
            scheme = "https" if url.startswith("https://") else (location.scheme or "http")
            url = f"{scheme}://{location.netloc}"
            response = client.get(f"{url}/master/state")
    if response.status_code in (401, 403):
        raise click.ClickException(settings.refusal(response.status_code, f"the master at {url}",
                                                    response.text))
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
@click.option("--master", default=None,
              help=f"HOST:PORT, http(s)://HOST:PORT or zk://... "
                   f"[default: the settings' master, else {DEFAULT_MASTER}]")
@click.option("--config", default=None, metavar="FILE",
              help="client settings (credentials, CA) [default: $DOCKYARD_CONFIG, else ./.dockyard/client.json]")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
def status_command(master: str | None, config: str | None, as_json: bool) -> None:
    """Show the cluster: agents (resources used/free), frameworks, tasks."""
    try:
        settings = client_settings.load(config)
    except SecurityError as error:
        raise click.ClickException(str(error)) from None
    master = master or settings.master or DEFAULT_MASTER
    try:
        summary = summarize(fetch_state(master, settings=settings))
    except httpx.HTTPError as error:
        raise click.ClickException(f"cannot read the master's state at {master}: {error}") from None
    if as_json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(summary, make_console())
