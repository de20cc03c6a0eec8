"""`dockyard lab ...`: thin click commands over `lab.py`; errors become exit status 1."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, TypeVar

import click
from rich.console import Console
from rich.table import Table

from . import LabError
from . import lab as labs

T = TypeVar("T")
console = Console(stderr=True)


def _run(action: Callable[[], T]) -> T:
    """Turn a LabError into a one-line message and exit 1, not a traceback."""
    try:
        return action()
    except LabError as error:
        raise click.ClickException(str(error)) from error


@click.group()
def cli() -> None:
    """dockyard command line (lab part)."""


@cli.group()
@click.option("--name", default="lab", envvar="DOCKYARD_LAB", show_default=True,
              help="Lab name (1-8 of a-z0-9); several labs can coexist on one host.")
@click.option("--root", type=click.Path(path_type=Path), envvar="DOCKYARD_LAB_ROOT",
              default=None, help="Where labs keep state, logs and work dirs "
              "[default: /var/lib/dockyard-lab].")
@click.pass_context
def lab(ctx: click.Context, name: str, root: Path | None) -> None:
    """A multi-node cluster on this host: one network namespace per node."""
    ctx.obj = {"name": name, "root": root}


def _say(line: str) -> None:
    console.print(line, highlight=False)


@lab.command()
@click.option("--agents", type=int, default=3, show_default=True)
@click.option("--zk", is_flag=True, help="Run ZooKeeper on the control node; the master "
              "registers there and agents and scheduler find it through zk://.")
@click.option("--subnet", default=labs.DEFAULT_SUBNET, show_default=True,
              help="Private IPv4 subnet of the lab bridge.")
@click.option("--agent-resources", default="", help='e.g. "cpus:2;mem:2048;ports:[31000-32000]"; cpus, mem '
              "and disk left out are an Nth of this machine's for each of N agents")
@click.option("--dockyard-cmd", default=None, help="How nodes call dockyard "
              "[default: this interpreter and checkout].")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until every role answers its health check.")
@click.option("--timeout", type=float, default=90.0, show_default=True)
@click.option("--keep-on-failure", is_flag=True,
              help="Leave a lab that failed to come up, for inspection.")
@click.option("--master-args", default="", help='Extra master flags, e.g. '
              '"--agent-ping-interval 1 --agent-ping-timeout 5" for fast failure drills.')
@click.option("--agent-args", default="", help="Extra flags for every agent.")
@click.option("--scheduler-args", default="", help="Extra scheduler flags.")
@click.option("--router/--no-router", default=True, show_default=True,
              help="Run `dockyard router` (an HAProxy following the apps, docs/router.md) on the "
              "control node: HTTP virtual hosts on :80, service ports, stats on :9090.")
@click.option("--router-args", default="", help='Extra router flags, e.g. "--group internal".')
@click.option("--insecure", is_flag=True, help="No authentication and no TLS: every API of the lab open "
              "to anyone on its network.")
@click.pass_obj
def up(obj: dict, agents: int, zk: bool, subnet: str, agent_resources: str,
       dockyard_cmd: str | None, wait: bool, timeout: float, keep_on_failure: bool,
       master_args: str, agent_args: str, scheduler_args: str, router: bool, router_args: str,
       insecure: bool) -> None:
    """Build the bridge and namespaces and start every role."""
    extra = {"master": master_args, "agent": agent_args, "scheduler": scheduler_args,
             "router": router_args}
    options = labs.UpOptions(agents=agents, zk=zk, subnet=subnet,
                             agent_resources=agent_resources, wait=wait, timeout=timeout,
                             keep_on_failure=keep_on_failure, extra=extra, insecure=insecure,
                             router=router,
                             **({"dockyard_cmd": dockyard_cmd} if dockyard_cmd else {}))
    state = _run(lambda: labs.up(obj["name"], obj["root"], options, say=_say))
    _print_table(labs.status(state))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: dict, as_json: bool) -> None:
    """Nodes, addresses, roles; whether each process runs and answers."""
    report = _run(lambda: labs.status(labs.require(obj["name"], obj["root"])))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_table(report)


def _print_table(report: dict) -> None:
    table = Table(title=f"lab {report['name']} ({report['phase']}), host {report['host_ip']} "
                  f"on {report['subnet']}")
    for column in ("node", "address", "link", "role", "pid", "state"):
        table.add_column(column)
    for node in report["nodes"]:
        link = "partitioned" if node["partitioned"] else node["link"]
        for index, role in enumerate(node["roles"]):
            state = "healthy" if role["healthy"] else ("running" if role["running"] else "dead")
            table.add_row(node["name"] if index == 0 else "", node["ip"] if index == 0 else "",
                          link if index == 0 else "", role["role"], str(role["pid"] or "-"),
                          state)
    Console().print(table)
    if report.get("urls"):
        click.echo(f"master    {report['urls']['master']}")
        click.echo(f"scheduler {report['urls']['scheduler']}  (Marathon API: /v2/apps)")
        if report["urls"].get("router"):
            click.echo(f"router    {report['urls']['router']}  (apps' service ports on the same address; "
                       f"stats {report['urls']['router_stats']})")
    if report.get("client_config"):
        click.echo(f"export DOCKYARD_CONFIG={report['client_config']}   # the CLI's URL and credentials")
    elif report.get("urls"):
        click.echo(f"export DOCKYARD_URL={report['urls']['scheduler']}")


@lab.command()
@click.option("--keep-files", is_flag=True, help="Keep logs and work dirs.")
@click.pass_obj
def down(obj: dict, keep_files: bool) -> None:
    """Remove every process, mount, namespace and link of the lab (safe to repeat)."""
    _run(lambda: labs.down(obj["name"], obj["root"], keep_files=keep_files, say=_say))
    left = labs.leftovers(obj["name"])
    if any(left.values()):
        raise click.ClickException(f"left behind: {left}")
    _say(f"lab {obj['name']} is down")


@lab.command()
@click.argument("node")
@click.pass_obj
def partition(obj: dict, node: str) -> None:
    """Cut NODE off the network (its processes keep running)."""
    cut = _run(lambda: labs.partition(labs.require(obj["name"], obj["root"]), node))
    _say(f"{cut.name} ({cut.ip}) is partitioned")


@lab.command()
@click.argument("node")
@click.pass_obj
def heal(obj: dict, node: str) -> None:
    """Reconnect a partitioned NODE."""
    healed = _run(lambda: labs.heal(labs.require(obj["name"], obj["root"]), node))
    _say(f"{healed.name} ({healed.ip}) is connected")


@lab.command()
@click.argument("node")
@click.pass_obj
def kill(obj: dict, node: str) -> None:
    """Crash NODE: SIGKILL every process in its namespace (executors and tasks too)."""
    pids = _run(lambda: labs.kill(labs.require(obj["name"], obj["root"]), node))
    _say(f"killed {len(pids)} processes on {node}")


@lab.command()
@click.argument("node")
@click.option("--timeout", type=float, default=90.0, show_default=True)
@click.pass_obj
def start(obj: dict, node: str, timeout: float) -> None:
    """Start NODE's roles again after `lab kill`."""
    procs = _run(lambda: labs.start(labs.require(obj["name"], obj["root"]), node, timeout))
    _say(f"started {', '.join(p.role for p in procs) or 'nothing (all running)'} on {node}")


@lab.command()
@click.argument("node")
@click.pass_obj
def shell(obj: dict, node: str) -> None:
    """Print the command that opens a shell on NODE."""
    click.echo(_run(lambda: labs.shell_command(labs.require(obj["name"], obj["root"]), node)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
