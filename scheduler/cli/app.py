"""`dockyard app ...`: Marathon apps through the scheduler's `/v2` API.

`app deploy FILE` sends the AppDefinition and follows its deployment until the app is
deployed (scheduler/cli/progress.py); `--dry-run` prints where instances would go, and
why some cannot, without launching anything. `scale`, `restart`, `rollback` and
`delete` follow theirs with `--wait`. `app scale` previews the placement first and
warns about instances that cannot be placed.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from framework.tables import table as make_table
from scheduler.cli import build as builds
from scheduler.cli import placement, progress
from scheduler.cli.client import (Api, client_options, connect, console, emit, err_console, force_option,
                                  json_option, load_spec, print_warnings, warn)
from scheduler.cli.task import print_tasks

FORCE_CHANGE = "override a deployment of the app that is still in progress (it is replaced by this one)"


def app_path(app_id: str) -> str:
    return "/" + app_id.strip("/")


def follow_options(wait_by_default: bool) -> Callable[[Callable], Callable]:
    """`--wait` (or `--no-wait`) and the limits of following a deployment."""
    def add(command: Callable) -> Callable:
        for option in reversed([
            click.option("--wait/--no-wait", default=wait_by_default, show_default=True,
                         help="follow the deployment until the app is deployed (exit 1 if it is not)"),
            click.option("--timeout", default=progress.TIMEOUT, show_default=True, type=float, metavar="SECONDS",
                         help="with --wait: give up after this long (the deployment goes on)"),
            click.option("--max-failures", default=progress.MAX_FAILURES, show_default=True, type=click.IntRange(1),
                         metavar="N", help="with --wait: give up when instances fail the same way N times in a row"),
            click.option("--unplaceable-grace", "grace", default=progress.GRACE, show_default=True, type=float,
                         metavar="SECONDS", help="with --wait: give up when instances that no agent can ever take "
                                                 "waited this long (they stay queued)"),
        ]):
            command = option(command)
        return command
    return add


def _follow(api: Api, app_id: str, result: dict, options: dict[str, Any], as_json: bool,
            what: str = "") -> None:
    """After a change: the deployment's id, then (with --wait) the deployment followed to its end."""
    if not as_json:
        err_console.print(f"deployment {result['deploymentId']} of {app_id}{what}", style="dim", markup=False)
    if not options["wait"]:
        if as_json:
            emit(result)
        return
    final = progress.follow(api, app_id, result["deploymentId"], quiet=as_json, timeout=options["timeout"],
                            max_failures=options["max_failures"], grace=options["grace"])
    if as_json:
        emit(final)


@click.group()
def app() -> None:
    """Long-running services (Marathon API)."""


@app.command("deploy")
@click.argument("file")
@click.option("--dry-run", is_flag=True, help="print the placement plan and reasons; launch nothing")
@click.option("--build", "build_dir", default=None, metavar="DIR",
              help="first build DIR's Dockerfile into an image and deploy that image (docs/images.md)")
@click.option("--push", is_flag=True, help="with --build: push the image to the registry its tag names")
@click.option("--tag", default=None, help="with --build: the image's name [default: the app id, :latest]")
@force_option(FORCE_CHANGE)
@follow_options(wait_by_default=True)
@client_options
@json_option
def app_deploy(file: str, dry_run: bool, build_dir: str | None, push: bool, tag: str | None, force: bool,
               url: str | None, config: str | None, as_json: bool, **follow: Any) -> None:
    """Create or update the app in FILE (JSON or YAML) and follow its deployment."""
    from scheduler.services.specs import unknown_fields

    spec = load_spec(file, "an app definition")
    if build_dir is not None and not dry_run:
        spec = builds.with_app_image(spec, builds.build(build_dir, tag or builds.image_tag(str(spec["id"])),
                                                        config, push))
    unknown = unknown_fields(spec)
    api = connect(url, config)
    app_id = app_path(str(spec["id"]))
    if dry_run:
        plan = placement.plan(api, spec)
        print_warnings(unknown, api)
        emit(plan) if as_json else placement.print_plan(plan)
        return
    result = api.call("PUT", f"/v2/apps{app_id}", spec, params={"force": str(force).lower()})
    print_warnings(unknown, api)
    _follow(api, app_id, result, follow, as_json, f" (version {result['version']})")


@app.command("list")
@client_options
@json_option
def app_list(url: str | None, config: str | None, as_json: bool) -> None:
    """Apps with their instance counts."""
    apps = connect(url, config).call("GET", "/v2/apps", params={"embed": "apps.tasks"})["apps"]
    if as_json:
        emit(apps)
        return
    table = make_table("ID", "INSTANCES", "RUNNING", "HEALTHY", "STARTING", "WAITING", "CPUS", "MEM", "DEPLOYING",
                       "CMD")
    for item in apps:
        counts = progress.Counts.of(item, None)
        table.add_row(item["id"], str(item["instances"]), str(counts.running),
                      str(counts.healthy) if counts.checked else "-", str(counts.starting),
                      str(counts.waiting),
                      f"{item['cpus']:g}", f"{item['mem']:g}", "yes" if item["deployments"] else "-",
                      (item.get("cmd") or "")[:40])
    console.print(table)


@app.command("show")
@click.argument("app_id")
@client_options
@json_option
def app_show(app_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """An app: definition summary, tasks, last failure, why instances wait."""
    api = connect(url, config)
    data = api.call("GET", f"/v2/apps{app_path(app_id)}", params={"embed": "apps.lastTaskFailure"})["app"]
    if as_json:
        emit(data)
        return
    console.print(f"[bold]{data['id']}[/bold]  version {data['version']}")
    console.print(f"  cmd: {data.get('cmd') or data.get('args')}", markup=False)
    queued = progress.queue_entry(api, data["id"])
    counts = progress.Counts.of(data, queued)
    console.print(f"  instances {data['instances']}  cpus {data['cpus']:g}  mem {data['mem']:g}  {counts.text()}")
    if data["deployments"]:
        console.print(f"  deploying: {', '.join(d['id'] for d in data['deployments'])}")
    failure = data.get("lastTaskFailure")
    if failure:
        console.print(f"  [red]last failure[/red] {failure['timestamp']}: {failure['state']} on "
                      f"{failure['host'] or '-'}: {failure['message']}", markup=True, highlight=False)
    if queued:
        why = progress.why_waiting(queued, countdown=True)
        console.print(f"  waiting: {queued['count']} not placed" + (f"; {why}" if why else ""), markup=False)
        report = placement.why_unplaced(api, data) if progress.refusals(queued) else None
        for line in placement.agent_lines(report) if report else []:
            console.print(f"    {line}", markup=False)
    print_tasks(data.get("tasks", []), {data["id"]: queued} if queued else {})
    if data.get("secrets"):
        _secret_versions(api, data)


@app.command("scale")
@click.argument("app_id")
@click.argument("instances", type=click.IntRange(0))
@force_option(FORCE_CHANGE)
@follow_options(wait_by_default=False)
@client_options
@json_option
def app_scale(app_id: str, instances: int, force: bool, url: str | None, config: str | None, as_json: bool,
              **follow: Any) -> None:
    """Set an app's instance count (a preview first says whether the new instances can be placed)."""
    api = connect(url, config)
    path = app_path(app_id)
    current = api.call("GET", f"/v2/apps{path}")["app"]
    if instances > current["instances"]:
        _preview(api, current, instances, quiet=as_json)
    result = api.call("PUT", f"/v2/apps{path}", {"instances": instances}, params={"force": str(force).lower()})
    _follow(api, path, result, follow, as_json, f": {current['instances']} -> {instances} instances")


def _preview(api: Api, current: dict, instances: int, quiet: bool) -> None:
    """The dry run of the app at its new size; a warning with the numbers if some will not fit."""
    found = placement.plan(api, {**current, "instances": instances})
    report = placement.unplaced_report(found)
    if quiet:
        return
    if report is None:
        err_console.print(f"dry run: {instances} instances fit on {found['agents']} agents", style="dim")
        return
    warn(f"{report['unplaced']} of {instances} instances cannot be placed now (dry run): "
         f"{placement.explanation(report)}")
    for line in placement.agent_lines(report):
        err_console.print(f"  {line}", style="yellow", markup=False)
    err_console.print(f"the deployment waits for them, and holds the app until then: "
                      f"`dockyard app scale {current['id']} {current['instances']} --force` goes back", style="yellow",
                      markup=False)


@app.command("restart")
@click.argument("app_id")
@force_option(FORCE_CHANGE)
@follow_options(wait_by_default=False)
@client_options
@json_option
def app_restart(app_id: str, force: bool, url: str | None, config: str | None, as_json: bool,
                **follow: Any) -> None:
    """Replace every instance, rolling."""
    api = connect(url, config)
    result = api.call("POST", f"/v2/apps{app_path(app_id)}/restart", params={"force": str(force).lower()})
    _follow(api, app_path(app_id), result, follow, as_json, ": restart")


@app.command("rollback")
@click.argument("app_id")
@click.option("--version", "version", help="the version to go back to (default: the previous one)")
@force_option(FORCE_CHANGE)
@follow_options(wait_by_default=False)
@client_options
@json_option
def app_rollback(app_id: str, version: str | None, force: bool, url: str | None, config: str | None,
                 as_json: bool, **follow: Any) -> None:
    """Go back to an earlier version (a new deployment)."""
    api = connect(url, config)
    path = app_path(app_id)
    if version is None:
        versions = api.call("GET", f"/v2/apps{path}/versions")["versions"]
        if len(versions) < 2:
            raise click.ClickException(f"{path} has no earlier version to go back to")
        version = versions[1]
    result = api.call("PUT", f"/v2/apps{path}", {"version": version}, params={"force": str(force).lower()})
    _follow(api, path, result, follow, as_json, f": back to {version}")


@app.command("delete")
@click.argument("app_id")
@force_option("delete even while a deployment of the app is in progress (it is stopped where it is)")
@click.option("--wait", is_flag=True, help="follow until every instance has stopped")
@click.option("--timeout", default=progress.TIMEOUT, show_default=True, type=float, metavar="SECONDS",
              help="with --wait: give up after this long")
@client_options
@json_option
def app_delete(app_id: str, force: bool, wait: bool, timeout: float, url: str | None, config: str | None,
               as_json: bool) -> None:
    """Stop every instance and remove the app."""
    api = connect(url, config)
    path = app_path(app_id)
    result = api.call("DELETE", f"/v2/apps{path}", params={"force": str(force).lower()})
    if as_json and not wait:
        emit(result)
        return
    if not as_json:
        err_console.print(f"deployment {result['deploymentId']} of {path}: delete", style="dim", markup=False)
    if wait:
        progress.follow_removal(api, path, result["deploymentId"], quiet=as_json, timeout=timeout)
        if as_json:
            emit(result)


@app.group("deployment")
def deployment() -> None:
    """Deployments in progress: list them, cancel one."""


@deployment.command("list")
@click.argument("app_id", required=False)
@client_options
@json_option
def deployment_list(app_id: str | None, url: str | None, config: str | None, as_json: bool) -> None:
    """Deployments in progress (of one app, or of all)."""
    found = connect(url, config).call("GET", "/v2/deployments")
    if app_id:
        found = [d for d in found if app_path(app_id) in d.get("affectedApps", [])]
    if as_json:
        emit(found)
        return
    table = make_table("ID", "APPS", "STEP", "ACTIONS", "VERSION")
    for item in found:
        actions = ", ".join(f"{a['action']} {a['app']}" for a in item.get("currentActions") or [])
        table.add_row(item["id"], ",".join(item["affectedApps"]), f"{item['currentStep']}/{item['totalSteps']}",
                      actions or "-", item["version"])
    console.print(table)


@deployment.command("cancel")
@click.argument("deployment_id")
@force_option("stop the deployment where it is; without it, the app goes back to its version before it "
              "(a new deployment)")
@client_options
def deployment_cancel(deployment_id: str, force: bool, url: str | None, config: str | None) -> None:
    """Cancel a deployment in progress: roll its app back, or with --force just stop it."""
    api = connect(url, config)
    result = api.call("DELETE", f"/v2/deployments/{deployment_id}", params={"force": str(force).lower()})
    if result and result.get("deploymentId"):
        console.print(f"deployment {deployment_id} canceled; rolling back: deployment {result['deploymentId']}")
    else:
        console.print(f"deployment {deployment_id} stopped")


def _secret_versions(api: Api, app: dict[str, Any]) -> None:
    """Which version of each secret every instance was given (a new one reaches new instances)."""
    console.print("  secrets: " + ", ".join(f"{name} <- {spec['source']}" for name, spec in app["secrets"].items()),
                  markup=False)
    given = api.call("GET", "/dockyard/v1/secrets/usage", params={"appId": app["id"]})["tasks"]
    live = {t["id"] for t in app.get("tasks", [])}
    table = make_table("TASK", "SECRET", "VERSION")
    for task in given:
        if task["taskId"] in live:
            for path, version in sorted(task["secrets"].items()):
                table.add_row(task["taskId"], path, str(version))
    console.print(table)
