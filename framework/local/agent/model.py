"""The embedded agent's records: its configuration, and the frameworks, executors and tasks it runs.

Plain data; the `Agent` (agent.py) is the one that changes them, on its asyncio loop.
"""
from __future__ import annotations

import asyncio
import collections
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framework.container_policy import ContainerPolicy
from framework.errors import DockyardError
from framework.local.agent.security import AgentSecurity
from framework.mesos import recordio
from framework.mesos.messages import dumps
from framework.mesos.processio import invalid_container_id, root_value
from framework.mesos.resources import Resources

COMPLETED_KEPT = 200  # completed tasks/executors/frameworks kept for /state
_SCRIPT = Path(__file__).resolve().parents[3] / "dockyard.py"


def dockyard_argv(*args: str) -> list[str]:
    """argv running `dockyard ARGS` with this Python, from this checkout when there is one."""
    if _SCRIPT.exists():
        return [sys.executable, str(_SCRIPT), *args]
    return [sys.executable, "-m", "dockyard", *args]


@dataclass
class AgentConfig:
    master: str
    ip: str = "127.0.0.1"
    port: int = 5051
    work_dir: Path = Path("/tmp/dockyard-agent")
    resources: Resources = field(default_factory=Resources)
    attributes: list[dict] = field(default_factory=list)
    hostname: str = "localhost"
    executor_command: list[str] = field(default_factory=lambda: dockyard_argv("executor"))
    registration_timeout: float = 60.0  # --executor-registration-timeout
    reregistration_timeout: float = 5.0  # --executor-reregistration-timeout (after agent restart)
    shutdown_grace: float = 5.0  # --executor-shutdown-grace-period
    recovery_timeout: float = 900.0
    subscription_backoff_max: float = 2.0
    cleanup: bool = True
    # A task its executor reported terminal must be gone this many seconds later; what is
    # left of it (processes, container) is destroyed then.
    terminal_task_grace: float = 3.0
    security: AgentSecurity = field(default_factory=AgentSecurity)
    # Seconds between HEARTBEAT records on a debug session's output (Mesos's --http_heartbeat_interval,
    # 30 s there: as long as the Mesos CLI waits before it gives up, so ours beats more often).
    http_heartbeat_interval: float = 10.0
    # What container tasks may ask for (--allowed-host-paths, --allow-privileged, --seccomp-profile).
    container_policy: ContainerPolicy = field(default_factory=ContainerPolicy)
    # --max-request-bytes: the largest request body read (larger: 413, before reading it). A status
    # update's `data` may be large; nothing an executor sends is larger.
    max_request_bytes: int = 16 << 20


@dataclass
class TaskRecord:
    info: dict
    framework_id: str
    executor_id: str
    state: str = "TASK_STAGING"
    delivered: bool = False  # LAUNCH sent to the executor
    checkpointed: bool = False  # task.json written; later states go to task.updates
    statuses: list[dict] = field(default_factory=list)
    container: dict | None = None  # the ContainerID its statuses name (nested in its executor's)

    @property
    def id(self) -> str:
        return self.info["task_id"]["value"]


@dataclass
class ExecutorRecord:
    info: dict
    framework_id: str
    container_id: str
    directory: Path
    command_executor: bool
    launched: float = field(default_factory=time.time)
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None  # the executor's pid (also for one recovered after an agent restart)
    stream: asyncio.Queue | None = None  # events to the subscribed executor; None: not subscribed
    queued: list[dict] = field(default_factory=list)  # LAUNCH / LAUNCH_GROUP events awaiting SUBSCRIBE
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    completed: collections.deque = field(default_factory=lambda: collections.deque(maxlen=COMPLETED_KEPT))
    terminating: str | None = None  # why the agent is ending it (a Mesos reason), if it is
    terminated: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.info["executor_id"]["value"]


@dataclass
class FrameworkRecord:
    info: dict
    executors: dict[str, ExecutorRecord] = field(default_factory=dict)
    completed: collections.deque = field(default_factory=lambda: collections.deque(maxlen=COMPLETED_KEPT))

    @property
    def id(self) -> str:
        return self.info["id"]["value"]

    @property
    def checkpoint(self) -> bool:
        return bool(self.info.get("checkpoint", False))

    @property
    def partition_aware(self) -> bool:
        return any(c.get("type") == "PARTITION_AWARE" for c in self.info.get("capabilities") or [])


class ExecutorCallError(DockyardError):
    """An executor API call the agent refuses; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def raw_wait_status(returncode: int) -> int:
    """asyncio's returncode back to the raw waitpid() value Mesos reports in FAILURE."""
    return -returncode if returncode < 0 else (returncode & 0xFF) << 8


def event(kind: str, **payload: Any) -> bytes:
    body: dict[str, Any] = {"type": kind}
    if payload:
        body[kind.lower()] = payload
    return recordio.encode(dumps(body))


def container_status(reported: Any, executor_container: str) -> dict:
    """A status's ContainerStatus as Mesos's agent forwards it (slave.cpp `statusUpdate`): the
    ContainerID the executor named when it descends from the executor's own container (a task's
    container, as the default executor reports), else the executor's container."""
    status = dict(reported) if isinstance(reported, dict) else {}
    named = status.get("container_id")
    if not (isinstance(named, dict) and invalid_container_id(named) is None
            and root_value(named) == executor_container):
        status["container_id"] = {"value": executor_container}
    return status
