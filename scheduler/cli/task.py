"""`dockyard task ...`: the tasks of Marathon apps: list, kill, read their output, and run a
command inside one (`exec`, over the agent's debug API, docs/exec.md).

An instance not placed yet is listed as `waiting` with no host, and why it waits
(the app's `/v2/queue` entry) is said under the table; `--json` keeps Marathon's
own fields, where such an instance is `TASK_STAGING`.
"""
from __future__ import annotations

import ssl
import sys
import time
from typing import Any

import click

from framework.errors import DockyardError
from framework.mesos.attach import attach_task, exec_task
from framework.security import client as client_settings

from framework.tables import table as make_table
from scheduler.cli import progress
from scheduler.cli.client import client_options, connect, console, emit, json_option
from scheduler.cli.logs import pump, tails

LIVE = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING")


def print_tasks(tasks: list[dict[str, Any]], queued: dict[str, dict[str, Any]]) -> None:
    """The task table; then, per app with instances not placed, why they wait (`queued`: app id ->
    its queue entry)."""
    table = make_table("ID", "APP", "STATE", "HEALTH", "HOST", "PORTS", "STARTED")
    for item in tasks:
        results = item.get("healthCheckResults") or []
        health = "-" if not results else ("healthy" if progress.is_healthy(item) else "unhealthy")
        waiting = progress.is_waiting(item)
        table.add_row(item["id"], item["appId"], "waiting" if waiting else item["state"], health,
                      "-" if waiting else item["host"], ",".join(map(str, item["ports"])) or "-",
                      item.get("startedAt") or "-")
    console.print(table)
    for app_id, entry in sorted(queued.items()):
        why = progress.why_waiting(entry, countdown=True)
        console.print(f"{app_id}: {entry['count']} waiting to be placed" + (f" ({why})" if why else ""),
                      style="yellow", markup=False)


@click.group()
def task() -> None:
    """Service tasks."""


@task.command("list")
@click.argument("app_id", required=False)
@client_options
@json_option
def task_list(app_id: str | None, url: str | None, config: str | None, as_json: bool) -> None:
    """Tasks of one app, or of every app."""
    api = connect(url, config)
    path = f"/v2/apps/{app_id.strip('/')}/tasks" if app_id else "/v2/tasks"
    tasks = api.call("GET", path)["tasks"]
    if as_json:
        emit(tasks)
        return
    waiting = {t["appId"] for t in tasks if progress.is_waiting(t)}
    queued = {item["app"]["id"]: item for item in api.call("GET", "/v2/queue")["queue"]
              if item["app"]["id"] in waiting} if waiting else {}
    print_tasks(tasks, queued)


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
    cache: dict = {}
    with api.files_client() as files:
        while True:
            info = api.call("GET", f"/dockyard/v1/tasks/{task_id}")
            pump(tails(files, info, cache, api.settings))
            if not follow or info["state"] not in LIVE:
                if follow:
                    pump(tails(files, info, cache, api.settings))
                return
            time.sleep(progress.POLL_SECONDS)


def _master_session(config: str | None, run: Any) -> None:
    """Run `run(settings)` against the master of the client settings; exit with its code."""
    try:
        settings = client_settings.load(config)
        code = run(settings)
    except (DockyardError, OSError, ssl.SSLError) as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


master_option = click.option("--master", default=None, metavar="HOST:PORT|URL|zk://...",
                             help="the Mesos master that knows the task [default: the settings' master, "
                                  "else 127.0.0.1:5050]")
config_option = click.option("--config", "config", default=None, metavar="FILE",
                             help="client settings (credentials, CA) [default: $DOCKYARD_CONFIG, "
                                  "else ./.dockyard/client.json]")


@task.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="send this terminal's input to the command")
@click.option("-t", "--tty", is_flag=True, help="give the command a terminal (raw mode here; the window "
                                                "size and Ctrl-C follow)")
@master_option
@config_option
@click.argument("task_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def task_exec(interactive: bool, tty: bool, master: str | None, config: str | None, task_id: str,
              command: tuple[str, ...]) -> None:
    """Run COMMAND inside a running task (its container, or its namespaces on the host);
    exits with the command's exit code: `dockyard task exec -it TASK -- sh`."""
    argv = list(command[1:] if command[:1] == ("--",) else command)
    _master_session(config, lambda settings: exec_task(settings, task_id, argv, interactive=interactive,
                                                       tty=tty, master=master))


@task.command("attach")
@master_option
@config_option
@click.argument("task_id")
def task_attach(master: str | None, config: str | None, task_id: str) -> None:
    """Follow a running task's output live, until it ends."""
    _master_session(config, lambda settings: attach_task(settings, task_id, master=master))
