"""`dockyard scheduler`: serve the API and act on Mesos, alone or as one of several (`--zk`).

Alone, the scheduler acts at once. With `--zk`, it serves the leader proxy at once and acts
only once elected (docs/ha.md). Both run the one start and stop sequence of
scheduler/lifecycle.py.
"""
from __future__ import annotations

import logging
import os
import threading

from starlette.types import ASGIApp

from framework.bodies import BodyLimit, json_render
from scheduler.api.server import uvicorn_options
from scheduler.context import SchedulerConfig
from scheduler.leader import SchedulerElection, contend, lost_leadership
from scheduler.lifecycle import Leading
from scheduler.proxy import LeaderProxy

log = logging.getLogger("dockyard.scheduler")


def serve(config: SchedulerConfig) -> int:
    """Serve the API and act: at once alone; with `--zk`, behind the leader proxy once elected."""
    import uvicorn

    logging.basicConfig(level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    security = config.security
    leading = Leading(config)
    election: SchedulerElection | None = None
    app: ASGIApp
    if config.zk:
        election = SchedulerElection(config.zk, f"{config.ip}:{config.port}", scheme=config.scheme,
                                     ssl_context=security.peer.ssl_context())
        proxy = LeaderProxy(election, gate=security.gate, peer=security.peer)

        def lead() -> None:
            try:
                proxy.attach(leading.start(), leading.health)
            except Exception:
                log.exception("could not start as the leader")
                lost_leadership("start-up failed")

        election.on_elected = lead
        app = BodyLimit(proxy, config.limits.max_request_bytes, json_render, config.limits.body_timeout)
    else:
        app = leading.start()
    tls_options = security.tls.uvicorn_options() if security.tls is not None else {}
    server = uvicorn.Server(uvicorn.Config(app, host=config.ip, port=config.port, log_level="warning",
                                           access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                                           **uvicorn_options(config.limits), **tls_options))
    if election is not None:
        threading.Thread(target=contend, args=(election, server), name="contend", daemon=True).start()
    log.info("scheduler on %s://%s:%d%s, master %s, data %s; API authentication %s", config.scheme, config.ip,
             config.port, " (HA)" if config.zk else "", config.master, config.zk or config.data_dir,
             "on" if security.users is not None else "off")
    try:
        server.run()
    finally:
        log.info("stopping")
        leading.stop()
        if election is not None:
            election.close()
    return 0
