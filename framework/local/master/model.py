"""What the embedded master tracks: frameworks, agents, tasks, executors, offers.

Plain records owned by `Master` (framework/local/master/core.py) and read by the
operator views; behaviour lives in the master, not here.
"""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from framework.errors import DockyardError
from framework.mesos import recordio
from framework.mesos.messages import TERMINAL_STATES, dumps
from framework.mesos.resources import Resources

VERSION = "1.11.0"  # what /version and MasterInfo report (pymesos parses it as ints)
MAX_COMPLETED_TASKS = 1000


class Stream:
    """One open RecordIO stream: a scheduler subscription or an agent connection."""

    def __init__(self, stream_id: str | None = None) -> None:
        self.id = stream_id or str(uuidlib.uuid4())
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    def send(self, event: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.put_nowait(recordio.encode(dumps(event)))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class HttpError(DockyardError):
    """A call refused with an HTTP status (the handler renders it)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Task:
    task_id: str
    framework_id: str
    agent_id: str
    executor_id: str | None
    name: str
    role: str
    resources: Resources
    info: dict[str, Any]
    state: str = "TASK_STAGING"
    statuses: list[dict[str, Any]] = field(default_factory=list)
    status_update_state: str | None = None
    status_update_uuid: str | None = None
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    seen_uuids: set[str] = field(default_factory=set)
    retry: asyncio.TimerHandle | None = None
    retry_delay: float = 0.0
    released: bool = False
    unreachable_time: float | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def latest_status(self) -> dict[str, Any] | None:
        return self.statuses[-1] if self.statuses else None


@dataclass
class Executor:
    executor_id: str
    framework_id: str
    agent_id: str
    info: dict[str, Any]
    role: str
    resources: Resources


@dataclass
class Framework:
    id: str
    info: dict[str, Any]
    roles: tuple[str, ...]
    capabilities: set[str]
    registered_time: float
    stream: Stream | None = None
    active: bool = True
    recovered: bool = False
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    failover_timer: asyncio.TimerHandle | None = None
    offers: set[str] = field(default_factory=set)
    tasks: dict[str, Task] = field(default_factory=dict)
    unreachable_tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS))
    executors: dict[tuple[str, str], Executor] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    offer_counts: Counter[str] = field(default_factory=Counter)

    @property
    def connected(self) -> bool:
        return self.stream is not None and not self.stream.closed

    @property
    def partition_aware(self) -> bool:
        return "PARTITION_AWARE" in self.capabilities

    @property
    def multi_role(self) -> bool:
        return "MULTI_ROLE" in self.capabilities


@dataclass
class Agent:
    id: str
    info: dict[str, Any]
    ip: str
    port: int
    hostname: str
    total: Resources
    version: str
    registered_time: float
    last_seen: float
    stream: Stream | None = None
    reregistered_time: float | None = None
    tasks: set[tuple[str, str]] = field(default_factory=set)  # (framework_id, task_id)
    executors: dict[tuple[str, str], Executor] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.stream is not None and not self.stream.closed

    @property
    def pid(self) -> str:
        return f"slave(1)@{self.ip}:{self.port}"


@dataclass
class Offer:
    id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    timer: asyncio.TimerHandle | None = None  # --offer-timeout rescinds it


def id_obj(value: str) -> dict[str, str]:
    """A Mesos id message: `{"value": ...}`."""
    return {"value": value}


def id_value(obj: Any) -> str | None:
    """The text of a Mesos id message, None when absent or malformed."""
    return obj.get("value") if isinstance(obj, dict) and isinstance(obj.get("value"), str) else None
