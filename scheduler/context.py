"""What every part of a running scheduler shares, built once by `scheduler.lifecycle`.

Handlers and workloads receive this instead of importing globals, so a test
can build a context around a real store and a driver of its choosing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from framework.mesos.scheduler import MesosSchedulerDriver
from framework.store import Store
from scheduler.core import Core
from scheduler.events import EventBus
from scheduler.jobs.manager import JobManager
from scheduler.limits import Limits
from scheduler.secrets.store import SecretsOff, SecretStore
from scheduler.security import SchedulerSecurity
from scheduler.services.manager import ServiceManager


@dataclass
class SchedulerConfig:
    master: str = "127.0.0.1:5050"
    ip: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = ".dockyard/scheduler"
    zk: str | None = None
    name: str = "dockyard"
    executor_command: str | None = None
    warm_executor: bool = True
    job_history: int = 50
    local_port_min: int = 10000  # service ports (scheduler/services/ports.py), Marathon's flags
    local_port_max: int = 20000
    clock_file: str | None = None
    mesos_user: str = "nobody"  # FrameworkInfo.user: what tasks without a user run as (scheduler/run_as.py)
    secrets_key_file: str | None = None  # docs/secrets.md
    secrets_acls: str | None = None
    security: SchedulerSecurity = field(default_factory=SchedulerSecurity)  # scheduler/security.py
    limits: Limits = field(default_factory=Limits)  # scheduler/limits.py

    @property
    def scheme(self) -> str:
        """How our API is served (and what a follower forwards with)."""
        return self.security.scheme


@dataclass
class Context:
    config: SchedulerConfig
    store: Store
    core: Core
    events: EventBus
    clock: Callable[[], float] = time.time
    # Each None only in a context a test builds without it; scheduler/lifecycle.py sets them all.
    jobs: JobManager | None = None
    services: ServiceManager | None = None
    driver: MesosSchedulerDriver | None = None
    secrets: SecretStore | SecretsOff | None = None   # SecretsOff without a key file
    extras: dict[str, Any] = field(default_factory=dict)  # per-route helpers made on first use
