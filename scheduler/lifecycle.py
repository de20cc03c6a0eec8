"""What a scheduler does while it acts on Mesos: built, started and stopped in one order.

A lone scheduler starts it at once; an HA one (`--zk`) only once elected, so that its
state is loaded then, never while another instance writes it (docs/ha.md). Either way
`scheduler.main` runs this one sequence.

Order matters: state is loaded before the driver subscribes (so reconciliation knows
every task), and the API app exists before the driver starts so a slow master does not
make the scheduler look dead.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from starlette.applications import Starlette

from framework.mesos.scheduler import MesosSchedulerDriver
from framework.store import open_store
from scheduler import limits
from scheduler.api.app import build_app, health_state
from scheduler.context import Context, SchedulerConfig
from scheduler.core import Core, CoreConfig, default_executor_command
from scheduler.events import EventBus
from scheduler.framework import DockyardScheduler
from scheduler.jobs.manager import JobManager
from scheduler.secrets.store import open_secrets
from scheduler.services import ServiceManager

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
    """Everything but the driver and the HTTP server, state loaded; tests use this directly."""
    clock = clock or (FileClock(config.clock_file) if config.clock_file else time.time)
    limits.configure(config.limits)  # before any spec is read: what loads is what the API accepts
    Path(config.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(config.data_dir, config.zk)
    executor = None
    if config.warm_executor:
        executor = config.executor_command or default_executor_command()
    core = Core(store, CoreConfig(framework_name=config.name, executor_command=executor), clock=time.time)
    secrets = open_secrets(store, config.secrets_key_file, config.secrets_acls)
    core.secrets = secrets
    core.load()
    jobs = JobManager(store, core, clock=clock, history_limit=config.job_history)
    jobs.secrets = secrets
    jobs.load()
    ctx = Context(config=config, store=store, core=core, events=EventBus(), clock=clock, jobs=jobs,
                  secrets=secrets)
    ctx.services = services = ServiceManager(ctx)  # it reads the rest of the context
    services.load()
    return ctx


def make_driver(ctx: Context) -> MesosSchedulerDriver:
    """The driver, as our framework (its principal and secret, our TLS towards the master)."""
    config, security = ctx.config, ctx.config.security
    framework = {"user": config.mesos_user, "name": config.name,
                 "failover_timeout": 7 * 86400.0, "hostname": config.ip,
                 "webui_url": f"{config.scheme}://{config.ip}:{config.port}/ui/",
                 # PARTITION_AWARE: a cut-off agent's tasks come as TASK_UNREACHABLE, not
                 # TASK_LOST, so runs wait for them instead of being done twice (docs/ha.md).
                 "capabilities": [{"type": t} for t in ("TASK_KILLING_STATE", "PARTITION_AWARE", "GPU_RESOURCES")],
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
    """The part of a scheduler that acts on Mesos, from loading its state to stopping its driver."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.ctx: Context | None = None
        self.driver: MesosSchedulerDriver | None = None

    def start(self) -> Starlette:
        """Load state, start the core and the workloads, subscribe (in the background); the API app."""
        ctx = build_context(self.config)
        assert ctx.jobs is not None and ctx.services is not None  # build_context made both
        driver = make_driver(ctx)
        ctx.core.start()
        ctx.jobs.start()
        ctx.services.start()
        self.ctx, self.driver = ctx, driver
        app = build_app(ctx)
        threading.Thread(target=driver.start, name="driver-start", daemon=True).start()
        log.info("acting as framework %s, master %s", ctx.core.framework_id or "(new)", self.config.master)
        return app

    def health(self) -> dict:
        return health_state(self.ctx) if self.ctx is not None else {"subscribed": False}

    def stop(self) -> None:
        """Stop acting; the framework stays registered so the next start (or leader) fails over."""
        ctx, driver = self.ctx, self.driver
        if ctx is None or driver is None:
            return
        assert ctx.jobs is not None and ctx.services is not None  # as start() found them
        ctx.jobs.stop()
        try:
            ctx.services.stop()
        except Exception:
            log.exception("services stop failed")
        try:
            driver.stop(failover=True)  # tasks keep running; the next start fails over to them
        except Exception:
            log.exception("driver stop failed")
        ctx.core.stop()
        ctx.store.close()
