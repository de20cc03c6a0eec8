"""`dockyard scheduler`: run the framework scheduler (Marathon and Metronome APIs on --port).

Everything heavy (the server, its security, the secret store) is imported only when
the command runs, so the client commands start fast.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

LIMIT_FLAGS = (  # flag, Limits field, type, help (defaults: scheduler/limits.py)
    ("--max-request-bytes", "max_request_bytes", int, "largest request body read (413 past it)"),
    ("--max-json-depth", "max_json_depth", int, "deepest JSON nesting parsed (422 past it)"),
    ("--max-instances", "max_instances", int, "most instances of one app, and per group scaleBy"),
    ("--max-id-length", "max_id_length", int, "longest app or job id"),
    ("--max-env-vars", "max_env_vars", int, "most environment variables of one app or job"),
    ("--max-labels", "max_labels", int, "most labels of one app or job"),
    ("--max-connections", "max_connections", int, "open connections served at once (default: half the fd limit)"),
    ("--max-connections-per-client", "max_connections_per_client", int, "open connections of one client address"),
    ("--header-timeout", "header_timeout", float, "seconds a request may take to send its headers"),
    ("--body-timeout", "body_timeout", float, "seconds a request may take to send its body"),
    ("--keep-alive-timeout", "keep_alive_timeout", int, "seconds an idle connection stays open"),
    ("--event-stream-bytes", "event_stream_bytes", int, "events buffered for one slow /v2/events reader before "
                                                        "it is dropped"),
)


def limit_options(command: Callable) -> Callable:
    """The LIMIT_FLAGS, handed to the command as one `limits` (unset flags keep the defaults)."""
    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        from scheduler.limits import Limits

        given = {field: kwargs.pop(field) for _, field, _, _ in LIMIT_FLAGS}
        return command(limits=Limits().with_changes(**given), **kwargs)

    for flag, field, kind, text in reversed(LIMIT_FLAGS):
        run = click.option(flag, field, type=kind, default=None, help=text)(run)
    return run


@click.command()
@click.option("--master", default="127.0.0.1:5050", show_default=True,
              help="HOST:PORT or zk://... (HTTPS when TLS is on), or http(s)://HOST:PORT to choose")
@click.option("--ip", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--data-dir", default=".dockyard/scheduler", show_default=True)
@click.option("--zk", default=None, help="zk://hosts/path: keep state in ZooKeeper, elect a leader")
@click.option("--name", default="dockyard", show_default=True, help="framework name")
@click.option("--executor-command", default=None, help="how agents start the warm executor")
@click.option("--warm-executor/--command-tasks", default=True, show_default=True,
              help="launch tasks through one warm dockyard executor per agent, or as plain command tasks")
@click.option("--job-history", default=50, show_default=True, type=int, help="finished runs kept per job")
@click.option("--local-port-min", default=10000, show_default=True, type=int,
              help="lowest service port given to an app port asking for 0 (Marathon's flag; docs/router.md)")
@click.option("--local-port-max", default=20000, show_default=True, type=int,
              help="the service ports end below this one (Marathon's flag)")
@click.option("--clock-file", default=None, hidden=True, help="tests only: read 'now' from this file")
@click.option("--mesos-authentication-principal", "principal", default=None,
              help="our framework principal (FrameworkInfo.principal), as Marathon's flag")
@click.option("--mesos-authentication-secret-file", "secret_file", default=None,
              help="the principal's secret for the master (read whole: a trailing newline is part of it)")
@click.option("--http-credentials", envvar="MESOSPHERE_HTTP_CREDENTIALS", show_envvar=True, default=None,
              help="USER:PASSWORD of an admin of the REST API (Marathon's flag)")
@click.option("--http-users", default=None,
              help="Mesos credentials JSON of the API's users, each with a role: admin (default) or viewer")
@click.option("--http-realm", default="Mesosphere", show_default=True, help="realm of the 401 challenge")
@click.option("--tls-cert", default=None, help="PEM certificate: serve HTTPS and present it to peers")
@click.option("--tls-key", default=None, help="PEM key of --tls-cert")
@click.option("--tls-ca", default=None, help="PEM CA that peers' (and clients') certificates must chain to")
@click.option("--tls-require-client-cert", is_flag=True, help="mutual TLS: ask every client for a certificate")
@click.option("--insecure", is_flag=True,
              help="serve a non-loopback --ip even with authentication or TLS off")
@click.option("--allow-privileged", is_flag=True,
              help="admins may submit privileged containers, added capabilities or devices, host-path volumes")
@click.option("--mesos-user", default="nobody", show_default=True, metavar="USER",
              help="the user command tasks without their own `user` run as (FrameworkInfo.user); "
                   "tasks with an image run as the image's user")
@click.option("--acls", "acls_file", default=None, metavar="FILE",
              help="Mesos ACLs: run_tasks says which task users each API principal may ask for")
@limit_options
@click.option("--secrets-key-file", default=None, metavar="FILE",
              help="Fernet keys (first encrypts, all decrypt) of the secret store; turns secrets on (docs/secrets.md)")
@click.option("--secrets-acls", default=None, metavar="FILE",
              help="who may reference and write which secret paths (docs/secrets.md)")
def scheduler(master: str, ip: str, port: int, data_dir: str, zk: str | None, name: str,
              executor_command: str | None, warm_executor: bool, job_history: int,
              local_port_min: int, local_port_max: int, clock_file: str | None, principal: str | None, secret_file: str | None,
              http_credentials: str | None, http_users: str | None, http_realm: str, tls_cert: str | None,
              tls_key: str | None, tls_ca: str | None, tls_require_client_cert: bool, insecure: bool,
              secrets_key_file: str | None, secrets_acls: str | None, allow_privileged: bool = False,
              mesos_user: str = "nobody", acls_file: str | None = None, limits: Any = None) -> None:
    """Run the framework scheduler (REST API on --port)."""
    if not mesos_user.strip():
        raise click.BadParameter("must name a user", param_hint="--mesos-user")
    if not 1 <= local_port_min < local_port_max <= 65536:
        raise click.BadParameter("the service port range must lie within 1-65535 and hold a port: "
                                 "--local-port-min < --local-port-max", param_hint="--local-port-min")
    from framework.errors import SecurityError
    from scheduler.context import SchedulerConfig
    from scheduler.main import serve
    from scheduler.security import check_scheduler_binding, load_security

    try:
        security = load_security(principal=principal, secret_file=secret_file, http_credentials=http_credentials,
                                 http_users=http_users, realm=http_realm, tls_cert=tls_cert, tls_key=tls_key,
                                 tls_ca=tls_ca, require_client_cert=tls_require_client_cert, insecure=insecure,
                                 allow_privileged=allow_privileged, acls_file=acls_file)
        check_scheduler_binding(security, ip)
        from scheduler.secrets.store import check_settings

        check_settings(secrets_key_file, secrets_acls)
    except SecurityError as error:
        click.echo(f"dockyard scheduler: {error}", err=True)
        sys.exit(2)
    config = SchedulerConfig(master=master, ip=ip, port=port, data_dir=data_dir, zk=zk, name=name,
                             executor_command=executor_command, warm_executor=warm_executor,
                             job_history=job_history, local_port_min=local_port_min,
                             local_port_max=local_port_max, clock_file=clock_file, security=security,
                             secrets_key_file=secrets_key_file, secrets_acls=secrets_acls, limits=limits,
                             mesos_user=mesos_user)
    sys.exit(serve(config))
