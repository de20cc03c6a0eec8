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
from typing import Callable

from framework.store import open_store
from scheduler.context import Context, SchedulerConfig
from scheduler.core import Core, CoreConfig, default_executor_command
from scheduler.events import EventBus
from scheduler.framework import DockyardScheduler
from scheduler.jobs.manager import JobManager

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
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    store = open_store(config.data_dir, config.zk)
    executor = None
    if config.warm_executor:
        executor = config.executor_command or default_executor_command()
    core = Core(store, CoreConfig(framework_name=config.name, executor_command=executor), clock=time.time)
    ctx = Context(config=config, store=store, core=core, events=EventBus(), clock=clock)
    core.load()
    ctx.jobs = JobManager(store, core, clock=clock, history_limit=config.job_history)
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


def make_driver(ctx: Context):
    from framework.mesos.scheduler import MesosSchedulerDriver

    framework = {"user": os.environ.get("USER", "root") or "root", "name": ctx.config.name,
                 "failover_timeout": 7 * 86400.0, "hostname": ctx.config.ip,
                 "webui_url": f"http://{ctx.config.ip}:{ctx.config.port}",
                 # PARTITION_AWARE (issue 6): a cut-off agent's tasks come as TASK_UNREACHABLE, not
                 # TASK_LOST, so runs wait for them instead of being done twice.
                 "capabilities": [{"type": "TASK_KILLING_STATE"}, {"type": "PARTITION_AWARE"}],
                 "checkpoint": True}  # issue 6: agents checkpoint our tasks, so they survive an agent restart
    if ctx.core.framework_id:
        framework["id"] = {"value": ctx.core.framework_id}
    driver = MesosSchedulerDriver(DockyardScheduler(ctx.core), framework, ctx.config.master,
                                  use_addict=False, implicit_acknowledgements=False)
    ctx.core.attach(driver)
    ctx.driver = driver
    return driver


def serve(config: SchedulerConfig) -> int:
    import uvicorn

    from scheduler.api.app import build_app

    logging.basicConfig(level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if config.zk:  # HA (scheduler/leader.py, issue 6): elect; followers forward; state loads once leading
        from scheduler.leader import serve_ha

        return serve_ha(config)
    ctx = build_context(config)
    driver = make_driver(ctx)
    ctx.core.start()
    ctx.jobs.start()
    if ctx.services is not None and hasattr(ctx.services, "start"):
        ctx.services.start()
    server = uvicorn.Server(uvicorn.Config(build_app(ctx), host=config.ip, port=config.port,
                                           log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=5))
    threading.Thread(target=driver.start, name="driver-start", daemon=True).start()
    log.info("scheduler on http://%s:%d, master %s, data %s", config.ip, config.port, config.master,
             config.zk or config.data_dir)
    try:
        server.run()
    finally:
        log.info("stopping")
        ctx.jobs.stop()
        if ctx.services is not None and hasattr(ctx.services, "stop"):
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
    return 0
