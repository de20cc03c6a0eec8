"""`dockyard master`: read flags once, build the master, serve it with uvicorn."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
from pathlib import Path

import click
import uvicorn

from framework.errors import SecurityError
from framework.local.master.core import Master, MasterConfig
from framework.local.master.security import MasterSecurity, check_open_binding, load

# Connections stay open between an agent's pings and a scheduler's calls (a TLS
# handshake per call would cost more than the call).
KEEP_ALIVE_SECONDS = 75.0


class StartupError(click.ClickException):
    """A setting the master cannot start with: one line on stderr, exit status 2."""

    exit_code = 2


def load_security(config: MasterConfig) -> MasterSecurity:
    """The credentials, ACLs and TLS the flags name, and the check that an open master
    stays on loopback; a file that cannot be used stops the start-up in one line."""
    try:
        security = load(config)
        check_open_binding(config, security)
    except SecurityError as error:
        raise StartupError(str(error)) from None
    return security


def _run(config: MasterConfig, log_level: str) -> None:
    from framework.local.master.routes import create_app, run_timers

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    security = load_security(config)
    Path(config.work_dir).mkdir(parents=True, exist_ok=True)
    # Everything imported so far lives as long as the process. Freezing it keeps the
    # garbage collector's full passes, which run in the middle of whatever the event
    # loop is doing (an allocation cycle, say), from walking it again and again.
    gc.collect()
    gc.freeze()
    master = Master(config, security=security)
    contender = None

    async def background() -> None:
        nonlocal contender
        loop = asyncio.get_running_loop()
        timers = asyncio.create_task(run_timers(master))
        try:
            if not config.zk:
                from framework.local.master.registry import FileRegistry

                master.registry = FileRegistry(config.work_dir)
                master.recover_registry()
            else:
                from framework.local.master.contender import ZooKeeperContender

                contender = ZooKeeperContender(master, config.zk, loop, timeout=config.zk_session_timeout)
                while True:
                    try:
                        await loop.run_in_executor(None, contender.start)
                        break
                    except Exception as error:  # ZooKeeper down: keep serving, retry
                        logging.getLogger("dockyard.master").warning(
                            "cannot reach ZooKeeper at %s (%s): retrying", config.zk, error)
                        await asyncio.sleep(1.0)
            await timers
        finally:
            timers.cancel()
            if contender is not None:
                await loop.run_in_executor(None, contender.stop)

    app = create_app(master, background, security.gate)
    tls_options = security.tls.uvicorn_options() if security.tls is not None else {}
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.ip, port=config.port, log_level="warning", access_log=False,
        lifespan="on", timeout_graceful_shutdown=0.2, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        **tls_options))  # type: ignore[arg-type]
    logging.getLogger("dockyard.master").info(
        "master %s on %s://%s:%s (zk: %s; authenticated realms: %s; ACLs: %s)", master.id,
        "https" if security.tls else "http", config.ip, config.port, config.zk or "none",
        ", ".join(r.name for r in security.gate.realms.values()) or "none", config.acls or "none")
    (Path(config.work_dir) / "master.pid").write_text(str(os.getpid()))
    try:
        server.run()
    except KeyboardInterrupt:
        pass


@click.command("master")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5050, show_default=True, type=int)
@click.option("--work-dir", required=True, type=click.Path(file_okay=False))
@click.option("--zk", default=None, help="zk://host:port/path to register and elect in.")
@click.option("--zk-session-timeout", default=10.0, show_default=True, type=float,
              help="ZooKeeper session timeout; a leader cut off from ZooKeeper for 90% of it exits.")
@click.option("--allocation-interval", default=1.0, show_default=True, type=float,
              help="Seconds between full allocation cycles.")
@click.option("--hostname", default=None, help="Hostname to advertise (default: --ip).")
@click.option("--heartbeat-interval", default=15.0, show_default=True, type=float,
              help="Seconds between HEARTBEAT events on scheduler streams.")
@click.option("--status-update-retry", default=10.0, show_default=True, type=float,
              help="First resend delay of an unacknowledged status update (doubles).")
@click.option("--agent-ping-interval", default=5.0, show_default=True, type=float)
@click.option("--agent-ping-timeout", default=75.0, show_default=True, type=float,
              help="Seconds without a word from an agent before it is removed.")
@click.option("--agent-reregister-timeout", default=120.0, show_default=True, type=float,
              help="Seconds a new leader waits for known agents to re-register.")
@click.option("--offer-timeout", default=None, type=float,
              help="Seconds after which an unanswered offer is rescinded (Mesos "
                   "--offer_timeout; default: never).")
@click.option("--max-request-bytes", default=MasterConfig.max_request_bytes,
              show_default=True, type=click.IntRange(min=1),
              help="Largest request body the master reads; a larger one is answered 413 before it is read "
                   "(as the scheduler's flag of that name).")
@click.option("--credentials", default=None, metavar="FILE",
              help="Mesos credentials file (JSON: {\"credentials\": [{\"principal\", \"secret\"}]}) "
                   "for every --authenticate-* realm.")
@click.option("--authenticate-http-frameworks", is_flag=True,
              help="Authenticate the scheduler API (realm mesos-master-scheduler).")
@click.option("--http-framework-authenticators", default="basic", show_default=True,
              help="Authenticators of the scheduler API (only basic).")
@click.option("--authenticate-http-readonly", is_flag=True,
              help="Authenticate /state, /frameworks, /slaves, /tasks, /metrics (mesos-master-readonly).")
@click.option("--authenticate-http-readwrite", is_flag=True,
              help="Authenticate the operator API and /teardown (mesos-master-readwrite).")
@click.option("--authenticate-agents", is_flag=True,
              help="Authenticate agents (realm dockyard-master-agents); an agent id then belongs "
                   "to the principal that registered it.")
@click.option("--acls", default=None, metavar="FILE",
              help="Mesos local-authorizer ACLs (JSON); without it everything is allowed.")
@click.option("--tls-cert", default=None, metavar="FILE", help="Serve TLS with this PEM certificate.")
@click.option("--tls-key", default=None, metavar="FILE", help="The certificate's key.")
@click.option("--tls-ca", default=None, metavar="FILE", help="CA that client certificates must chain to.")
@click.option("--tls-require-client-cert", is_flag=True, help="Mutual TLS: refuse clients without a "
                                                               "certificate of --tls-ca.")
@click.option("--insecure", is_flag=True,
              help="Serve a non-loopback --ip without authentication or TLS anyway.")
@click.option("--log-level", default="info", show_default=True)
def master_command(ip: str, port: int, work_dir: str, zk: str | None, zk_session_timeout: float,
                   allocation_interval: float, hostname: str | None, heartbeat_interval: float,
                   status_update_retry: float, agent_ping_interval: float,
                   agent_ping_timeout: float, agent_reregister_timeout: float,
                   offer_timeout: float | None, max_request_bytes: int, credentials: str | None,
                   authenticate_http_frameworks: bool, http_framework_authenticators: str,
                   authenticate_http_readonly: bool, authenticate_http_readwrite: bool,
                   authenticate_agents: bool, acls: str | None, tls_cert: str | None,
                   tls_key: str | None, tls_ca: str | None, tls_require_client_cert: bool,
                   insecure: bool, log_level: str) -> None:
    """Run the embedded Mesos-compatible master."""
    _run(MasterConfig(ip=ip, port=port, work_dir=work_dir, hostname=hostname, zk=zk,
                      zk_session_timeout=zk_session_timeout,
                      allocation_interval=allocation_interval,
                      heartbeat_interval=heartbeat_interval,
                      status_update_retry=status_update_retry,
                      agent_ping_interval=agent_ping_interval,
                      agent_ping_timeout=agent_ping_timeout,
                      agent_reregister_timeout=agent_reregister_timeout,
                      offer_timeout=offer_timeout, max_request_bytes=max_request_bytes,
                      credentials=credentials,
                      authenticate_http_frameworks=authenticate_http_frameworks,
                      http_framework_authenticators=http_framework_authenticators,
                      authenticate_http_readonly=authenticate_http_readonly,
                      authenticate_http_readwrite=authenticate_http_readwrite,
                      authenticate_agents=authenticate_agents, acls=acls, tls_cert=tls_cert,
                      tls_key=tls_key, tls_ca=tls_ca, tls_require_client_cert=tls_require_client_cert,
                      insecure=insecure), log_level)
