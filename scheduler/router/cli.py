"""`dockyard router` (run the router), `dockyard router status`, `dockyard router stop`."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from framework.tables import console as make_console
from framework.tables import table as make_table

DEFAULT_WORK_DIR = ".dockyard/router"


def _port(value: int, flag: str) -> int:
    if not 0 <= value <= 65535:
        raise click.BadParameter("must be a port from 1 to 65535, or 0 for none", param_hint=flag)
    return value


@click.group(invoke_without_command=True)
@click.option("--url", envvar="DOCKYARD_URL", default=None,
              help="the scheduler (default: the client settings' URL, else http://127.0.0.1:8080)")
@click.option("--config", default=None, metavar="FILE",
              help="client settings (credentials, CA); else $DOCKYARD_CONFIG, else ./.dockyard/client.json")
@click.option("--group", default="external", show_default=True,
              help="serve the app ports whose HAPROXY_GROUP (or HAPROXY_{n}_GROUP) holds this group; '*': all apps")
@click.option("--ip", "bind_ip", default="127.0.0.1", show_default=True, help="address the frontends bind")
@click.option("--http-port", default=80, show_default=True, type=int,
              help="the shared HTTP port of HAPROXY_{n}_VHOST and HAPROXY_{n}_PATH routes (0: none)")
@click.option("--stats-port", default=0, show_default=True, type=int,
              help="HAProxy's stats page (/) and Prometheus metrics (/metrics) on --stats-ip (0: none)")
@click.option("--stats-ip", default="127.0.0.1", show_default=True)
@click.option("--stats-credentials", default=None, metavar="FILE",
              help="USER:PASSWORD lines, who may read the stats page and /metrics (HTTP Basic); default: the "
                   "credentials the router itself uses with the scheduler, when it has some")
@click.option("--work-dir", default=DEFAULT_WORK_DIR, show_default=True,
              help="haproxy.cfg, HAProxy's sockets and log, status.json")
@click.option("--haproxy", "haproxy_binary", default="haproxy", show_default=True, help="the HAProxy binary")
@click.option("--server-slots", default=8, show_default=True, type=click.IntRange(1, 4096),
              help="servers pre-allocated per backend (at least; twice the instances when more): "
                   "instances that fit are added without a reload")
@click.option("--resync-interval", default=30.0, show_default=True, type=click.FloatRange(0.1),
              help="seconds between full reads of the apps when no event comes")
@click.option("--hard-stop-after", default=60, show_default=True, type=click.IntRange(1),
              help="seconds an old HAProxy worker may finish in-flight connections after a reload")
@click.option("--stop-haproxy-on-exit", is_flag=True,
              help="stop HAProxy when the router stops (by default it keeps serving, and the next router adopts it)")
@click.option("--log-level", default=lambda: os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"), show_default="INFO")
@click.pass_context
def router(ctx: click.Context, url: str | None, config: str | None, group: str, bind_ip: str, http_port: int,
           stats_port: int, stats_ip: str, stats_credentials: str | None, work_dir: str, haproxy_binary: str,
           server_slots: int,
           resync_interval: float, hard_stop_after: int, stop_haproxy_on_exit: bool, log_level: str) -> None:
    """Keep an HAProxy in step with the scheduler's apps (marathon-lb's labels; docs/router.md)."""
    if ctx.invoked_subcommand is not None:
        return
    from framework.errors import SecurityError
    from framework.security import client as client_settings
    from scheduler.router.client import SchedulerClient
    from scheduler.router.haproxy import HAProxy
    from scheduler.router.labels import GROUP_NAME
    from scheduler.router.router import Router
    from scheduler.router.settings import RouterSettings
    from scheduler.router.runtime import HAProxyError

    if not GROUP_NAME.match(group):
        raise click.BadParameter("letters, digits, '_', '.', '-', or '*'", param_hint="--group")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = client_settings.load(config, url)
        haproxy = HAProxy(work_dir, binary=haproxy_binary)
        stats_users = _stats_users(stats_credentials, settings.auth)
    except (SecurityError, HAProxyError, OSError) as error:
        click.echo(f"dockyard router: {error}", err=True)
        sys.exit(2)
    haproxy.work_dir.mkdir(parents=True, exist_ok=True)
    running = Router(RouterSettings(group=group, bind_ip=bind_ip, http_port=_port(http_port, "--http-port"),
                                    stats_ip=stats_ip, stats_port=_port(stats_port, "--stats-port"),
                                    stats_users=stats_users,
                                    server_slots=server_slots, resync_interval=resync_interval,
                                    hard_stop_after=hard_stop_after),
                     SchedulerClient(settings), haproxy)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: running.stop())
    click.echo(f"dockyard router: group {group}, scheduler {settings.url} as {settings.identity()}; "
               f"HTTP routes on {bind_ip}:{http_port or '-'}"
               + (f", HAProxy stats and /metrics on {stats_ip}:{stats_port}"
                  + (f" (for {', '.join(u for u, _ in stats_users)})" if stats_users else " (open)")
                  if stats_port else "")
               + f"; work dir {haproxy.work_dir}", err=True)
    try:
        running.run()
    finally:
        running.client.close()
        if stop_haproxy_on_exit:
            haproxy.stop()


def _stats_users(path: str | None, own: tuple[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Who may read the stats page: the USER:PASSWORD lines of `path`, else the router's own
    credentials. Each goes into haproxy.cfg (mode 0600), so it is held to what a token there may be."""
    from framework.errors import SecurityError
    from scheduler.router.render import TOKEN

    pairs = []
    if path is None:
        pairs = [own] if own is not None else []
    else:
        for number, line in enumerate(Path(path).read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                user, _, password = line.strip().partition(":")
                if not password:
                    raise SecurityError(f"{path}:{number}: not USER:PASSWORD")
                pairs.append((user, password))
    for user, password in pairs:
        if not (TOKEN.match(user) and TOKEN.match(password)) or ":" in user:
            raise SecurityError(f"stats page credentials of '{user[:40]}': no spaces, quotes, '#' or backslashes "
                                "(they would change haproxy.cfg)")
    return tuple(pairs)


@router.command()
@click.option("--work-dir", default=DEFAULT_WORK_DIR, show_default=True, help="the router's --work-dir")
@click.option("--json", "as_json", is_flag=True, help="the whole status as JSON")
def status(work_dir: str, as_json: bool) -> None:
    """Frontends, routes, backends and each server's state."""
    from scheduler.router.status import router_status

    try:
        found = router_status(work_dir)
    except FileNotFoundError:
        raise click.ClickException(f"no router status in {work_dir} (its --work-dir?)") from None
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    print_status(found)


def print_status(found: dict[str, Any]) -> None:
    out = make_console(highlight=False)
    haproxy = found.get("haproxy") or {}
    out.print(f"scheduler {found.get('scheduler')}, group {found.get('group')}, event stream "
              f"{found.get('eventStream')}; HAProxy "
              + (f"running (master {haproxy.get('master')}, {haproxy.get('reloads')} reload(s))"
                 if haproxy.get("running") else f"not running ({haproxy.get('error')})"))
    frontends = make_table("FRONTEND", "BIND", "MODE", "BACKEND")
    for f in found.get("frontends", []):
        frontends.add_row(f["name"], f"{found.get('bindIp')}:{f['port']}", f["mode"], f["backend"])
    for r in found.get("routes", []):
        frontends.add_row("(http)", f"{found.get('bindIp')}:{found.get('httpPort')} "
                          f"{','.join(r['vhosts']) or '*'}{' '.join(r['paths'])}", "http", r["backend"])
    out.print(frontends)
    servers = make_table("BACKEND", "APP", "SLOT", "TASK", "ADDRESS", "WANTED", "HAPROXY", "SESSIONS")
    for b in found.get("backends", []):
        if not b["servers"]:
            servers.add_row(b["name"], b["app"], "-", "(no instance serving)", "", "", "", "")
        for s in b["servers"]:
            servers.add_row(b["name"], b["app"], s["slot"], s["task"], f"{s['address']}:{s['port']}", s["wanted"],
                            s.get("haproxy", "?"), str(s.get("sessions", "")))
    out.print(servers)
    for problem in found.get("problems", []):
        out.print(f"left out: {problem}")
    if found.get("lastError"):
        out.print(f"last error: {found['lastError']}")


@router.command()
@click.option("--work-dir", default=DEFAULT_WORK_DIR, show_default=True, help="the router's --work-dir")
def stop(work_dir: str) -> None:
    """Stop the HAProxy of a router's work directory (the router itself leaves it serving)."""
    from scheduler.router.haproxy import HAProxy

    click.echo("stopped" if HAProxy(Path(work_dir)).stop() else "no HAProxy was running")


def main(argv: list[str] | None = None) -> int:
    return router.main(args=argv, prog_name="dockyard router", standalone_mode=True) or 0
