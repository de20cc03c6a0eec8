"""`dockyard master`: read flags once, build the master, serve it with uvicorn."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
from pathlib import Path

import click
import uvicorn

from framework.local.master import Master, MasterConfig


def _run(config: MasterConfig, log_level: str) -> None:
    from framework.local.master_http import create_app, run_timers

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Path(config.work_dir).mkdir(parents=True, exist_ok=True)
    # Everything imported so far lives as long as the process. Freezing it keeps the
    # garbage collector's full passes, which run in the middle of whatever the event
    # loop is doing (an allocation cycle, say), from walking it again and again.
    gc.collect()
    gc.freeze()
    master = Master(config)
    contender = None

    async def background() -> None:
        nonlocal contender
        loop = asyncio.get_running_loop()
        timers = asyncio.create_task(run_timers(master))
        try:
            if not config.zk:
                from framework.local.registry import FileRegistry

                master.registry = FileRegistry(config.work_dir)
                master.recover_registry()
            else:
                from framework.local.contender import ZooKeeperContender

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

    app = create_app(master, background)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.ip, port=config.port, log_level="warning", access_log=False,
        lifespan="on", timeout_graceful_shutdown=0.2))  # type: ignore[arg-type]
    logging.getLogger("dockyard.master").info(
        "master %s on %s:%s (zk: %s)", master.id, config.ip, config.port, config.zk or "none")
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
@click.option("--log-level", default="info", show_default=True)
def master_command(ip: str, port: int, work_dir: str, zk: str | None, zk_session_timeout: float,
                   allocation_interval: float, hostname: str | None, heartbeat_interval: float,
                   status_update_retry: float, agent_ping_interval: float,
                   agent_ping_timeout: float, agent_reregister_timeout: float,
                   offer_timeout: float | None, log_level: str) -> None:
    """Run the embedded Mesos-compatible master."""
    _run(MasterConfig(ip=ip, port=port, work_dir=work_dir, hostname=hostname, zk=zk,
                      zk_session_timeout=zk_session_timeout,
                      allocation_interval=allocation_interval,
                      heartbeat_interval=heartbeat_interval,
                      status_update_retry=status_update_retry,
                      agent_ping_interval=agent_ping_interval,
                      agent_ping_timeout=agent_ping_timeout,
                      agent_reregister_timeout=agent_reregister_timeout,
                      offer_timeout=offer_timeout), log_level)
