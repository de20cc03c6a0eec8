"""`dockyard scheduler`: wire the store, the core, the workloads and the API, then serve.

Order matters: state is loaded before the driver subscribes (so reconciliation
knows every task), and the API starts before the driver so a slow master does
not make the scheduler look dead.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from framework.store import open_store
from scheduler.context import Context, SchedulerConfig
from scheduler.core import Core, CoreConfig, default_executor_command
from scheduler.events import EventBus
from scheduler import limits
from scheduler.framework import DockyardScheduler
from scheduler.jobs.manager import JobManager
from scheduler.secrets.store import open_secrets

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from framework.mesos.scheduler import MesosSchedulerDriver

log = logging.getLogger("dockyard.scheduler")


class FileClock:
    """A clock a test controls: real time plus an offset (seconds) read from a file.

    Only for tests of schedules against real processes (`--clock-file`): the test
    jumps time forward by rewriting the offset; production uses time.time.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def __call__(self) -> float:
        try:
            offset = float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.time() + offset


def build_context(config: SchedulerConfig, clock: Callable[[], float] | None = None) -> Context:
    """Everything but the driver and the HTTP server; tests use this directly."""
    clock = clock or (FileClock(config.clock_file) if config.clock_file else time.time)
    limits.configure(config.limits)  # before any spec is read: what loads is what the API accepts
    Path(config.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(config.data_dir, config.zk)
    executor = None
    if config.warm_executor:
        executor = config.executor_command or default_executor_command()
    core = Core(store, CoreConfig(framework_name=config.name, executor_command=executor), clock=time.time)
    ctx = Context(config=config, store=store, core=core, events=EventBus(), clock=clock)
    ctx.secrets = core.secrets = open_secrets(store, config.secrets_key_file, config.secrets_acls)
    core.load()
    ctx.jobs = JobManager(store, core, clock=clock, history_limit=config.job_history)
    ctx.jobs.secrets = ctx.secrets
    ctx.jobs.load()
    try:
        from scheduler.services import ServiceManager  # the services engineer's workload
    except ImportError:
        ServiceManager = None
    if ServiceManager is not None:
        try:
            ctx.services = ServiceManager(ctx)
            if hasattr(ctx.services, "load"):
                ctx.services.load()
        except Exception:
            log.exception("services failed to start; the jobs API stays up")
            ctx.services = None
    return ctx


def make_driver(ctx: Context) -> "MesosSchedulerDriver":
    """The driver, as our framework (its principal and secret, our TLS towards the master)."""
    from framework.mesos.scheduler import MesosSchedulerDriver

    config, security = ctx.config, ctx.config.security
    framework = {"user": config.mesos_user, "name": config.name,
                 "failover_timeout": 7 * 86400.0, "hostname": config.ip,
                 "webui_url": f"{config.scheme}://{config.ip}:{config.port}",
                 # PARTITION_AWARE: a cut-off agent's tasks come as TASK_UNREACHABLE, not
                 # TASK_LOST, so runs wait for them instead of being done twice (docs/ha.md).
                 "capabilities": [{"type": "TASK_KILLING_STATE"}, {"type": "PARTITION_AWARE"}],
                 "checkpoint": True}  # agents checkpoint our tasks, so they survive an agent restart
    if security.principal:
        framework["principal"] = security.principal  # as Marathon: whenever given
    if ctx.core.framework_id:
        framework["id"] = {"value": ctx.core.framework_id}
    if security.tls is not None and config.master.startswith("http://"):
        log.warning("TLS is on, but --master %s names plain HTTP: the master is spoken to without TLS",
                    config.master)
    driver = MesosSchedulerDriver(DockyardScheduler(ctx.core), framework, config.master,
                                  use_addict=False, implicit_acknowledgements=False,
                                  principal=security.principal if security.secret else None,
                                  secret=security.secret, ssl_context=security.peer.ssl_context())
    ctx.core.attach(driver)
    ctx.driver = driver
    return driver


class Leading:
    """The part of a scheduler that acts on Mesos: built, started and stopped in one order.

    A lone scheduler starts it at once; an HA one (`--zk`) only once elected, so its
    state is loaded then, never while another instance writes it (docs/ha.md).
    """

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.ctx: Context | None = None
        self.driver: Any = None

    def start(self) -> "Starlette":
        """Load state, start the core and the workloads, subscribe (in the background); the API app."""
        from scheduler.api.app import build_app

        ctx = build_context(self.config)
        driver = make_driver(ctx)
        ctx.core.start()
        ctx.jobs.start()
        if ctx.services is not None and hasattr(ctx.services, "start"):
            ctx.services.start()
        self.ctx, self.driver = ctx, driver
        app = build_app(ctx)
        threading.Thread(target=driver.start, name="driver-start", daemon=True).start()
        log.info("acting as framework %s, master %s", ctx.core.framework_id or "(new)", self.config.master)
        return app

    def health(self) -> dict:
        from scheduler.api.app import health_state

        return health_state(self.ctx) if self.ctx is not None else {"subscribed": False}

    def stop(self) -> None:
        """Stop acting; the framework stays registered so the next start (or leader) fails over."""
        ctx = self.ctx
        if ctx is None:
            return
        ctx.jobs.stop()
        if ctx.services is not None and hasattr(ctx.services, "stop"):
            try:
                ctx.services.stop()
            except Exception:
                log.exception("services stop failed")
        try:
            self.driver.stop(failover=True)  # tasks keep running; the next start fails over to them
        except Exception:
            log.exception("driver stop failed")
        ctx.core.stop()
        ctx.store.close()


def serve(config: SchedulerConfig) -> int:
    """Serve the API and act: at once alone; with `--zk`, behind the leader proxy once elected."""
    import uvicorn

    logging.basicConfig(level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    security = config.security
    leading = Leading(config)
    election = None
    if config.zk:
        from scheduler.leader import Election, LeaderProxy, lost_leadership

        election = Election(config.zk, f"{config.ip}:{config.port}", scheme=config.scheme,
                            ssl_context=security.peer.ssl_context())
        proxy = LeaderProxy(election, gate=security.gate, peer=security.peer)

        def lead() -> None:
            try:
                proxy.attach(leading.start(), leading.health)
            except Exception:
                log.exception("could not start as the leader")
                lost_leadership("start-up failed")

        election.on_elected = lead
        from framework.bodies import BodyLimit, json_render

        app = BodyLimit(proxy, config.limits.max_request_bytes, json_render, config.limits.body_timeout)
    else:
        app = leading.start()
    tls_options = security.tls.uvicorn_options() if security.tls is not None else {}
    from scheduler.api.server import uvicorn_options

    server = uvicorn.Server(uvicorn.Config(app, host=config.ip, port=config.port, log_level="warning",
                                           access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                                           **uvicorn_options(config.limits), **tls_options))
    if election is not None:
        from scheduler.leader import contend

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
