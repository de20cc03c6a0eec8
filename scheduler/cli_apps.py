"""`dockyard app ...` and `dockyard task ...`: REST clients of the Marathon API.

`app deploy FILE` sends the AppDefinition and follows the deployment until it
finishes or fails, saying why instances wait (the placement report from
`/v2/queue`); `--dry-run` prints where instances would go, and why some cannot,
without launching anything. Tables for people, `--json` for scripts.
"""
from __future__ import annotations

import time
from typing import Any

import click

from framework.tables import table as make_table
from scheduler.cli import (Api, _pump, _tails, client_options, connect, console, emit, err_console, json_option,
                           load_spec)

POLL_SECONDS = 0.5


def _load_app(path: str) -> dict:
    return load_spec(path, "an app definition")


def _path(app_id: str) -> str:
    return "/" + app_id.strip("/")


def _why(api: Api, app_id: str) -> str:
    """One line from the queue: backoff, and which checks refused the offers."""
    for item in api.call("GET", "/v2/queue")["queue"]:
        if item["app"]["id"] != app_id:
            continue
        parts = [f"{item['count']} waiting"]
        if item["delay"]["timeLeftSeconds"] > 0:
            parts.append(f"backoff {item['delay']['timeLeftSeconds']:.1f}s")
        summary = item.get("processedOffersSummary") or {}
        refused = [f"{r['reason']} {r['declined']}/{r['processed']}"
                   for r in summary.get("rejectSummaryLastOffers", []) if r["declined"]]
        if refused:
            parts.append("offers refused: " + ", ".join(refused))
        return "; ".join(parts)
    return ""


def follow_deployment(api: Api, app_id: str, deployment_id: str, as_json: bool, timeout: float) -> dict:
    """Show progress until the deployment is gone; fail when the app shows a new failure."""
    deadline = time.monotonic() + timeout
    last_line = ""
    while True:
        app = api.call("GET", f"/v2/apps{app_id}")["app"]
        running = [d["id"] for d in app["deployments"]]
        line = (f"{app['id']}: {app['tasksRunning']}/{app['instances']} running, "
                f"{app['tasksHealthy']} healthy, {app['tasksStaged']} staged")
        if deployment_id not in running:
            if not as_json:
                err_console.print(line + " - deployment finished", style="green")
            return app
        why = _why(api, app_id)
        if why:
            line += f" ({why})"
        if line != last_line and not as_json:
            err_console.print(line, style="dim")
            last_line = line
        if time.monotonic() > deadline:
            failure = app.get("lastTaskFailure")
            detail = f"; last failure: {failure['state']} {failure['message']}" if failure else ""
            raise click.ClickException(f"deployment {deployment_id} not finished after {timeout:g}s{detail}")
        time.sleep(POLL_SECONDS)


def print_plan(plan: dict) -> None:
    table = make_table("TASK", "AGENT", "HOST", "PORTS", "SCORES")
    for item in plan["assignments"]:
        table.add_row(item["taskId"], item["agentId"], item["host"], ",".join(map(str, item["ports"])),
                      " ".join(f"{k}={v}" for k, v in item["scores"].items()))
    console.print(table)
    console.print(f"{len(plan['assignments'])} placed, {plan['unplaced']} not placed, "
                  f"{plan['agents']} agents considered")
    for report in plan["reports"].values():
        if report["unplaced"]:
            console.print(f"[red]{report['explanation']}[/red]")
            for unused in report["unused"][:5]:
                console.print(f"  {unused['hostname']}: {', '.join(unused['reason'])} - {unused['detail']}")


def register(cli: click.Group) -> None:
    @cli.group()
    def app() -> None:
        """Long-running services (Marathon API)."""

    @app.command("deploy")
    @click.argument("file")
    @click.option("--dry-run", is_flag=True, help="print the placement plan and reasons; launch nothing")
    @click.option("--force", is_flag=True, help="override a deployment in progress")
    @click.option("--timeout", default=300.0, show_default=True, help="seconds to wait for the deployment")
    @client_options
    @json_option
    def app_deploy(file: str, dry_run: bool, force: bool, timeout: float,
                   url: str | None, config: str | None, as_json: bool) -> None:
        """Create or update the app in FILE (JSON or YAML) and follow its deployment."""
        api = connect(url, config)
        spec = _load_app(file)
        app_id = _path(spec["id"])
        if dry_run:
            plan = api.call("POST", "/dockyard/v1/plan", spec)
            emit(plan) if as_json else print_plan(plan)
            return
        result = api.call("PUT", f"/v2/apps{app_id}", spec, params={"force": str(force).lower()})
        if not as_json:
            err_console.print(f"deployment {result['deploymentId']} of {app_id} (version {result['version']})",
                              style="dim")
        final = follow_deployment(api, app_id, result["deploymentId"], as_json, timeout)
        if as_json:
            emit(final)

    @app.command("list")
    @client_options
    @json_option
    def app_list(url: str | None, config: str | None, as_json: bool) -> None:
        """Apps with their instance counts."""
        apps = connect(url, config).call("GET", "/v2/apps")["apps"]
        if as_json:
            emit(apps)
            return
        table = make_table("ID", "INSTANCES", "RUNNING", "HEALTHY", "STAGED", "CPUS", "MEM", "DEPLOYING", "CMD")
        for item in apps:
            table.add_row(item["id"], str(item["instances"]), str(item["tasksRunning"]), str(item["tasksHealthy"]),
                          str(item["tasksStaged"]), f"{item['cpus']:g}", f"{item['mem']:g}",
                          "yes" if item["deployments"] else "-", (item.get("cmd") or "")[:40])
        console.print(table)

    @app.command("show")
    @click.argument("app_id")
    @client_options
    @json_option
    def app_show(app_id: str, url: str | None, config: str | None, as_json: bool) -> None:
        """An app: definition summary, tasks, last failure, why instances wait."""
        api = connect(url, config)
        data = api.call("GET", f"/v2/apps{_path(app_id)}")["app"]
        if as_json:
            emit(data)
            return
        console.print(f"[bold]{data['id']}[/bold]  version {data['version']}")
        console.print(f"  cmd: {data.get('cmd') or data.get('args')}")
        console.print(f"  instances {data['instances']}  cpus {data['cpus']:g}  mem {data['mem']:g}  "
                      f"running {data['tasksRunning']}  healthy {data['tasksHealthy']}")
        if data["deployments"]:
            console.print(f"  deploying: {', '.join(d['id'] for d in data['deployments'])}")
        failure = data.get("lastTaskFailure")
        if failure:
            console.print(f"  [red]last failure[/red] {failure['timestamp']}: {failure['state']} on "
                          f"{failure['host']}: {failure['message']}")
        why = _why(api, data["id"])
        if why:
            console.print(f"  waiting: {why}")
        _task_table(data.get("tasks", []))
        if data.get("secrets"):
            _secret_versions(api, data)

    @app.command("scale")
    @click.argument("app_id")
    @click.argument("instances", type=int)
    @click.option("--force", is_flag=True)
    @client_options
    @json_option
    def app_scale(app_id: str, instances: int, force: bool,
                  url: str | None, config: str | None, as_json: bool) -> None:
        """Set an app's instance count."""
        result = connect(url, config).call("PUT", f"/v2/apps{_path(app_id)}", {"instances": instances},
                               params={"force": str(force).lower()})
        emit(result) if as_json else console.print(f"deployment {result['deploymentId']}")

    @app.command("restart")
    @click.argument("app_id")
    @click.option("--force", is_flag=True)
    @client_options
    @json_option
    def app_restart(app_id: str, force: bool, url: str | None, config: str | None, as_json: bool) -> None:
        """Replace every instance, rolling."""
        result = connect(url, config).call("POST", f"/v2/apps{_path(app_id)}/restart",
                                           params={"force": str(force).lower()})
        emit(result) if as_json else console.print(f"deployment {result['deploymentId']}")

    @app.command("rollback")
    @click.argument("app_id")
    @click.option("--version", "version", help="the version to go back to (default: the previous one)")
    @click.option("--force", is_flag=True)
    @client_options
    @json_option
    def app_rollback(app_id: str, version: str | None, force: bool,
                     url: str | None, config: str | None, as_json: bool) -> None:
        """Go back to an earlier version (a new deployment)."""
        api = connect(url, config)
        if version is None:
            versions = api.call("GET", f"/v2/apps{_path(app_id)}/versions")["versions"]
            if len(versions) < 2:
                raise click.ClickException("no earlier version")
            version = versions[1]
        result = api.call("PUT", f"/v2/apps{_path(app_id)}", {"version": version},
                          params={"force": str(force).lower()})
        emit(result) if as_json else console.print(f"deployment {result['deploymentId']} back to {version}")

    @app.command("delete")
    @click.argument("app_id")
    @click.option("--force", is_flag=True)
    @client_options
    @json_option
    def app_delete(app_id: str, force: bool, url: str | None, config: str | None, as_json: bool) -> None:
        """Stop every instance and remove the app."""
        result = connect(url, config).call("DELETE", f"/v2/apps{_path(app_id)}", params={"force": str(force).lower()})
        emit(result) if as_json else console.print(f"deployment {result['deploymentId']}")

    @cli.group()
    def task() -> None:
        """Service tasks."""

    @task.command("list")
    @click.argument("app_id", required=False)
    @client_options
    @json_option
    def task_list(app_id: str | None, url: str | None, config: str | None, as_json: bool) -> None:
        """Tasks of one app, or of every app."""
        path = f"/v2/apps{_path(app_id)}/tasks" if app_id else "/v2/tasks"
        tasks = connect(url, config).call("GET", path)["tasks"]
        emit(tasks) if as_json else _task_table(tasks)

    @task.command("kill")
    @click.argument("task_ids", nargs=-1, required=True)
    @click.option("--scale", is_flag=True, help="lower the app's instances instead of replacing")
    @client_options
    @json_option
    def task_kill(task_ids: tuple[str, ...], scale: bool, url: str | None, config: str | None, as_json: bool) -> None:
        """Kill tasks (they are replaced unless --scale)."""
        result = connect(url, config).call("POST", "/v2/tasks/delete", {"ids": list(task_ids)},
                               params={"scale": str(scale).lower()})
        emit(result) if as_json else console.print(f"killed {len(task_ids)} task(s)")

    @task.command("logs")
    @click.argument("task_id")
    @click.option("-f", "--follow", is_flag=True, help="keep printing new output")
    @client_options
    def task_logs(task_id: str, follow: bool, url: str | None, config: str | None) -> None:
        """A task's stdout and stderr, read from its agent."""
        api = connect(url, config)
        files = api.files_client()
        cache: dict = {}
        while True:
            info = api.call("GET", f"/dockyard/v1/tasks/{task_id}")
            _pump(_tails(files, info, cache, api.settings))
            if not follow or info["state"] not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING",
                                                   "TASK_KILLING"):
                if follow:
                    _pump(_tails(files, info, cache, api.settings))
                return
            time.sleep(POLL_SECONDS)


def _secret_versions(api: Api, app: dict[str, Any]) -> None:
    """Which version of each secret every instance was given (a new one reaches new instances)."""
    console.print("  secrets: " + ", ".join(f"{name} <- {spec['source']}" for name, spec in app["secrets"].items()))
    given = api.call("GET", "/dockyard/v1/secrets/usage", params={"appId": app["id"]})["tasks"]
    live = {t["id"] for t in app.get("tasks", [])}
    table = make_table("TASK", "SECRET", "VERSION")
    for task in given:
        if task["taskId"] in live:
            for path, version in sorted(task["secrets"].items()):
                table.add_row(task["taskId"], path, str(version))
    console.print(table)


def _task_table(tasks: list[dict[str, Any]]) -> None:
    table = make_table("ID", "APP", "STATE", "HEALTH", "HOST", "PORTS", "STARTED")
    for item in tasks:
        results = item.get("healthCheckResults") or []
        health = "-" if not results else ("healthy" if results[0]["alive"] else "unhealthy")
        table.add_row(item["id"], item["appId"], item["state"], health, item["host"],
                      ",".join(map(str, item["ports"])), item.get("startedAt") or "-")
    console.print(table)
