"""`dockyard agent` on the command line: flags into an AgentConfig, then serve.

Flags are read once here (docs/architecture.md lists them) and passed down as
one typed config.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import sys
from pathlib import Path
from typing import NoReturn

import click

from framework.container_policy import ContainerPolicy
from framework.errors import SecurityError
from framework.isolation import Isolators
from framework.local.agent.core import Agent, AgentConfig, default_hostname
from framework.local.agent.security import AgentSecurity
from framework.local.agent.machine import agent_resources
from framework.mesos.resources import parse_attributes
from framework.security.binding import check_binding

log = logging.getLogger(__name__)


def refuse(message: str) -> NoReturn:
    """A setting the agent cannot start with: one line on stderr, exit status 2 (as a bad flag)."""
    click.echo(f"dockyard agent: {message}", err=True)
    sys.exit(2)


def serve(config: AgentConfig, log_level: str = "info") -> None:
    """Run the agent's HTTP server and its master link on one asyncio loop until SIGTERM/SIGINT."""
    import uvicorn

    from framework.local.agent.routes import build_app

    agent = Agent(config)

    class AgentServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:  # type: ignore[override]
            # Executor streams never end by themselves: end them so shutdown does not wait on them.
            if loop is not None:
                loop.call_soon_threadsafe(agent.close_streams)
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_app):  # noqa: ANN001, ANN202
        nonlocal loop
        loop = asyncio.get_running_loop()
        await agent.start()
        try:
            yield
        finally:
            await agent.stop()

    app = build_app(agent, lifespan=lifespan)
    server = AgentServer(uvicorn.Config(
        app, host=config.ip, port=config.port, log_level=log_level, access_log=False,
        lifespan="on", timeout_graceful_shutdown=2, **config.security.uvicorn_options()))
    server.run()  # uvloop and httptools when installed


@click.command("agent")
@click.option("--master", required=True, help="HOST:PORT or zk://host:port/path of the master")
@click.option("--ip", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=5051, show_default=True, type=int)
@click.option("--work-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="sandboxes, checkpoints, image store")
@click.option("--resources", default=None,
              help='e.g. "cpus:4;mem:4096;disk:10000;ports:[31000-32000]"; what is left out is detected')
@click.option("--attributes", default="", help='e.g. "rack:a;zone:z1"')
@click.option("--hostname", default=None, help="name advertised to the master [machine's name]")
@click.option("--executor-command", default=None,
              help="command of the executor for command tasks [this Python: dockyard executor]")
@click.option("--executor-registration-timeout", default=60.0, show_default=True, type=float,
              help="seconds an executor has to SUBSCRIBE")
@click.option("--executor-reregistration-timeout", default=5.0, show_default=True, type=float,
              help="seconds a recovered executor has to SUBSCRIBE again after an agent restart")
@click.option("--executor-shutdown-grace-period", default=5.0, show_default=True, type=float,
              help="seconds between SHUTDOWN and killing an executor")
@click.option("--no-cleanup", is_flag=True, help="skip `dockyard executor --cleanup` at start")
@click.option("--docker-registry", default=None, envvar="DOCKYARD_DOCKER_REGISTRY",
              help="where images with unqualified names come from, as Mesos's --docker_registry: a registry "
                   "URL, or a directory of `docker save` archives named <repo>:<tag>.tar [Docker Hub]")
@click.option("--fetcher-cache-size", default="2GB", show_default=True, envvar="DOCKYARD_FETCHER_CACHE_SIZE",
              help="budget of the artifact cache (URIs fetched with cache: true) under WORK_DIR/fetcher-cache, "
                   "as Mesos's --fetcher_cache_size: least recently used entries not in use are evicted; "
                   "0 disables caching")
@click.option("--isolation", default=Isolators.DEFAULT, show_default=True, envvar="DOCKYARD_ISOLATION",
              help="what command tasks without an image get, in Mesos's isolator names: cgroups/cpu,cgroups/mem "
                   "(own cgroups and limits), namespaces/pid (a PID namespace and /proc of their own: without "
                   "it a task can read the environment of others of its user), posix/cpu,posix/mem "
                   "(a plain process group). Tasks with an image always run in a full container; "
                   "namespaces/user gives theirs a user namespace (root inside, an unprivileged host user outside)")
@click.option("--allowed-host-paths", default="", envvar="DOCKYARD_ALLOWED_HOST_PATHS", metavar="DIR,...",
              help="host directories under which container tasks may mount host-path volumes [none]; "
                   "/, /etc, /proc, /sys, /dev and the work dir never")
@click.option("--allow-privileged", is_flag=True,
              help="let container tasks run privileged (Docker's --privileged: every capability and device, "
                   "no seccomp); refused by default")
@click.option("--seccomp-profile", default="default", show_default=True, envvar="DOCKYARD_SECCOMP_PROFILE",
              metavar="PATH|default|unconfined",
              help="seccomp for container tasks: dockyard's allow-list (default), none (unconfined), or a "
                   "profile file in Docker's or the OCI schema")
@click.option("--http-credentials", default=None, metavar="FILE",
              help='Mesos credentials JSON ({"credentials": [{"principal", "secret"}]}) for HTTP Basic')
@click.option("--authenticate-http-readonly", is_flag=True,
              help="/state, /files/*, /monitor/statistics and /metrics need credentials (mesos-agent-readonly)")
@click.option("--authenticate-http-readwrite", is_flag=True,
              help="the debug API (/api/v1: task exec and attach, nested containers) needs credentials "
                   "(mesos-agent-readwrite)")
@click.option("--authenticate-http-executors", is_flag=True,
              help="the executor API needs the executor's own token (mesos-agent-executor); "
                   "needs --executor-secret-key")
@click.option("--executor-secret-key", "--jwt-secret-key", "executor_secret_key", default=None, metavar="FILE",
              help="key (32+ bytes) executor tokens are signed with; every executor gets one in "
                   "MESOS_EXECUTOR_AUTHENTICATION_TOKEN")
@click.option("--credential", default=None, metavar="FILE",
              help='this agent\'s own {"principal", "secret"}: HTTP Basic on every call to the master')
@click.option("--acls", default=None, metavar="FILE",
              help="Mesos ACLs JSON; access_sandboxes decides who reads which sandbox")
@click.option("--tls-cert", default=None, metavar="FILE", help="serve TLS with this certificate (PEM)")
@click.option("--tls-key", default=None, metavar="FILE", help="the certificate's key (PEM)")
@click.option("--tls-ca", default=None, metavar="FILE",
              help="CA that certifies the master (and clients, with --tls-require-client-cert)")
@click.option("--tls-require-client-cert", is_flag=True, help="mutual TLS: callers must present a certificate")
@click.option("--insecure", is_flag=True,
              help="serve a non-loopback --ip without authentication or TLS anyway")
@click.option("--http-heartbeat-interval", default=10.0, show_default=True, type=click.FloatRange(min=0.05),
              help="seconds between HEARTBEAT records on a quiet `task exec` session (Mesos's "
                   "--http_heartbeat_interval); clients give up on a silent stream after 30")
@click.option("--max-request-bytes", default=AgentConfig.max_request_bytes, show_default=True,
              type=click.IntRange(min=1),
              help="largest request body the agent reads (the debug API's calls: at most 1 MiB); a larger one "
                   "is answered 413 before it is read")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def agent_command(master: str, ip: str, port: int, work_dir: Path, resources: str | None, attributes: str,
                  hostname: str | None, executor_command: str | None, executor_registration_timeout: float,
                  executor_reregistration_timeout: float, executor_shutdown_grace_period: float, no_cleanup: bool,
                  docker_registry: str | None, fetcher_cache_size: str, isolation: str,
                  allowed_host_paths: str, allow_privileged: bool, seccomp_profile: str,
                  http_credentials: str | None, authenticate_http_readonly: bool, authenticate_http_readwrite: bool,
                  authenticate_http_executors: bool, executor_secret_key: str | None, credential: str | None,
                  acls: str | None, tls_cert: str | None, tls_key: str | None, tls_ca: str | None,
                  tls_require_client_cert: bool, insecure: bool, http_heartbeat_interval: float,
                  max_request_bytes: int, log_level: str) -> None:
    """Run an embedded Mesos agent: offers this machine's resources and runs executors."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s agent %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call to the master is noise
    try:
        security = AgentSecurity.from_flags(
            http_credentials=http_credentials, authenticate_readonly=authenticate_http_readonly,
            authenticate_readwrite=authenticate_http_readwrite, authenticate_executors=authenticate_http_executors,
            executor_secret_key=executor_secret_key, credential=credential, acls=acls, tls_cert=tls_cert,
            tls_key=tls_key, tls_ca=tls_ca, tls_require_client_cert=tls_require_client_cert, insecure=insecure)
        check_binding("agent", ip, security.missing(), insecure)
    except SecurityError as error:
        refuse(str(error))
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        total = agent_resources(resources, work_dir)
        parsed_attributes = parse_attributes(attributes) if attributes else []
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    try:
        policy = ContainerPolicy.from_flags(allowed_host_paths, allow_privileged, seccomp_profile, work_dir)
    except ValueError as error:
        refuse(str(error))
    config = AgentConfig(
        master=master, ip=ip, port=port, work_dir=work_dir, resources=total, attributes=parsed_attributes,
        hostname=hostname or default_hostname(),
        registration_timeout=executor_registration_timeout,
        reregistration_timeout=executor_reregistration_timeout, shutdown_grace=executor_shutdown_grace_period,
        cleanup=not no_cleanup, security=security, container_policy=policy,
        http_heartbeat_interval=http_heartbeat_interval, max_request_bytes=max_request_bytes,
    )
    if executor_command:
        config.executor_command = shlex.split(executor_command)
    if docker_registry:
        # Executors pull images, so they get the flag through the environment they inherit
        # (sandbox.executor_environment starts from ours); a relative directory is made absolute.
        if not docker_registry.startswith(("/", "file://")) and Path(docker_registry).is_dir():
            docker_registry = str(Path(docker_registry).resolve())
        if docker_registry.startswith("/") and not Path(docker_registry).is_dir():
            raise click.BadParameter(f"{docker_registry} is not a directory", param_hint="--docker-registry")
        os.environ["DOCKYARD_DOCKER_REGISTRY"] = docker_registry
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]?B?", fetcher_cache_size.strip().upper()):
        raise click.BadParameter(f"{fetcher_cache_size!r} is not a size (e.g. 2GB, 512MB, 0)",
                                 param_hint="--fetcher-cache-size")
    # Executors fetch artifacts (executor/fetcher.py), so the budget reaches them through the
    # environment they inherit, as --docker-registry does.
    os.environ["DOCKYARD_FETCHER_CACHE_SIZE"] = fetcher_cache_size.strip()
    try:
        Isolators.parse(isolation)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--isolation") from None
    os.environ["DOCKYARD_ISOLATION"] = isolation  # executors launch the tasks: theirs through the environment
    log.info("agent %s:%d resources %s", ip, port, total)
    serve(config, log_level)
