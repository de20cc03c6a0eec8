"""The task state machine: one table of legal moves, one record per task.

Mesos tells us a task's state through status updates that may repeat (retries,
reconciliation) or arrive late; the table decides which updates mean something.
A repeated state is a no-op; a move the table does not allow raises
`IllegalTransition` naming both ends, so a bug or a confused peer is loud
instead of silently rewriting history. PENDING (queued here, not yet sent) and
LAUNCHED (sent in an ACCEPT, no status yet) are ours; the rest are Mesos's.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from framework.errors import DockyardError


SANDBOX_LABEL = "dockyard.sandbox"  # set by dockyard's executor on every status


class State(str, Enum):
    PENDING = "PENDING"
    LAUNCHED = "LAUNCHED"
    STAGING = "TASK_STAGING"
    STARTING = "TASK_STARTING"
    RUNNING = "TASK_RUNNING"
    KILLING = "TASK_KILLING"
    UNREACHABLE = "TASK_UNREACHABLE"
    UNKNOWN = "TASK_UNKNOWN"
    FINISHED = "TASK_FINISHED"
    FAILED = "TASK_FAILED"
    KILLED = "TASK_KILLED"
    ERROR = "TASK_ERROR"
    LOST = "TASK_LOST"
    DROPPED = "TASK_DROPPED"
    GONE = "TASK_GONE"
    GONE_BY_OPERATOR = "TASK_GONE_BY_OPERATOR"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({State.FINISHED, State.FAILED, State.KILLED, State.ERROR, State.LOST,
                      State.DROPPED, State.GONE, State.GONE_BY_OPERATOR})
# Where a task may end from any live state: every Mesos terminal state.
_ENDINGS = set(TERMINAL)
_LIVE_AFTER_LAUNCH = {State.STAGING, State.STARTING, State.RUNNING, State.KILLING,
                      State.UNREACHABLE, State.UNKNOWN}

TRANSITIONS: dict[State, frozenset[State]] = {
    # Withdrawn before launch ends as KILLED; a spec the master refuses ends as ERROR.
    State.PENDING: frozenset({State.LAUNCHED, State.KILLED, State.ERROR, State.DROPPED}),
    State.LAUNCHED: frozenset(_LIVE_AFTER_LAUNCH | _ENDINGS),
    State.STAGING: frozenset({State.STARTING, State.RUNNING, State.KILLING, State.UNREACHABLE,
                              State.UNKNOWN} | _ENDINGS),
    State.STARTING: frozenset({State.RUNNING, State.KILLING, State.UNREACHABLE, State.UNKNOWN}
                              | _ENDINGS),
    State.RUNNING: frozenset({State.KILLING, State.UNREACHABLE, State.UNKNOWN} | _ENDINGS),
    State.KILLING: frozenset({State.UNREACHABLE, State.UNKNOWN} | _ENDINGS),
    # An agent that comes back reports what its tasks are really doing.
    State.UNREACHABLE: frozenset({State.STARTING, State.RUNNING, State.KILLING, State.UNKNOWN}
                                 | _ENDINGS),
    State.UNKNOWN: frozenset({State.STARTING, State.RUNNING, State.KILLING, State.UNREACHABLE}
                             | _ENDINGS),
    **{state: frozenset() for state in TERMINAL},
}


class IllegalTransition(DockyardError):
    """A status asked a task to move where the table does not allow."""

    def __init__(self, task_id: str, source: State, target: State) -> None:
        super().__init__(f"task {task_id}: illegal transition {source.value} -> {target.value}")
        self.task_id = task_id
        self.source = source
        self.target = target


def check_transition(task_id: str, source: State, target: State) -> bool:
    """True when the move changes state, False for a repeat; raises when illegal."""
    if source == target:
        return False
    if target not in TRANSITIONS[source]:
        raise IllegalTransition(task_id, source, target)
    return True


_EXIT_STATUS = re.compile(r"exit(?:ed)?(?: with)? (?:status|code) (-?\d+)", re.IGNORECASE)


def exit_code_from(status: dict) -> int | None:
    """The task's exit code: from the status `data` JSON if the executor put it there, else
    the message ("Command exited with status 3"); 0 for TASK_FINISHED without either."""
    data = status.get("data")
    if data:
        try:
            import base64

            decoded = json.loads(base64.b64decode(data))
            if isinstance(decoded, dict) and isinstance(decoded.get("exit_code"), int):
                return decoded["exit_code"]
        except (ValueError, TypeError):
            pass
    match = _EXIT_STATUS.search(status.get("message") or "")
    if match:
        return int(match.group(1))
    if status.get("state") == State.FINISHED.value:
        return 0
    return None


@dataclass(slots=True)  # many thousands may wait in the queue: no per-instance dict
class TaskRecord:
    """What the scheduler knows about one task, persisted on every change."""

    task_id: str
    owner: str
    name: str
    state: State = State.PENDING
    agent_id: str | None = None
    hostname: str | None = None
    executor_id: str | None = None
    ports: list[int] = field(default_factory=list)
    created_at: float = 0.0
    launched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    message: str = ""
    reason: str | None = None
    healthy: bool | None = None
    sandbox: str | None = None  # relative to the executor's directory (executor's status label)
    history: list[tuple[str, float]] = field(default_factory=list)
    secrets: dict[str, int] = field(default_factory=dict)  # secret path -> version given at launch
    version: int = -1  # the store version this record was read or written at

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def move(self, target: State, now: float) -> bool:
        """Apply a move checked against the table; returns False for a repeat."""
        if not check_transition(self.task_id, self.state, target):
            return False
        self.state = target
        self.history.append((target.value, now))
        if target == State.LAUNCHED:
            self.launched_at = now
        if target == State.RUNNING and self.started_at is None:
            self.started_at = now
        if target.terminal:
            self.finished_at = now
        return True

    def apply_status(self, status: dict, now: float) -> bool:
        """Move to a Mesos TaskStatus's state and keep what it says; False for a repeat."""
        target = State(status["state"])
        changed = self.move(target, now)
        agent = (status.get("agent_id") or {}).get("value")
        if agent:
            self.agent_id = agent
        executor = (status.get("executor_id") or {}).get("value")
        if executor:
            self.executor_id = executor
        if changed:  # each state's status stands alone: no reason left over from a health update
            self.message, self.reason = status.get("message") or "", status.get("reason") or None
        else:
            if status.get("message"):
                self.message = status["message"]
            if status.get("reason"):
                self.reason = status["reason"]
        for label in (status.get("labels") or {}).get("labels") or []:
            if label.get("key") == SANDBOX_LABEL:
                self.sandbox = label.get("value")
        if "healthy" in status:
            self.healthy = bool(status["healthy"])
        if target.terminal:
            self.exit_code = exit_code_from(status)
        return changed

    def copy(self) -> "TaskRecord":
        """What to go back to when a change cannot be stored: memory never runs ahead of
        the store, so a resent update or the next offer applies it again."""
        return replace(self, ports=list(self.ports), history=list(self.history))

    def restore(self, saved: "TaskRecord") -> None:
        """Back to `saved` in place (owners hold this very object)."""
        for name in _ALL_FIELDS:
            setattr(self, name, getattr(saved, name))

    def to_json(self) -> bytes:
        """Every field but `version` (the store keeps that); written on every status,
        so without `asdict`, whose deep copies cost more than the encoding."""
        data = {name: getattr(self, name) for name in _STORED_FIELDS}
        data["state"] = self.state.value
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, version: int = -1) -> "TaskRecord":
        data: dict[str, Any] = json.loads(raw)
        data["state"] = State(data["state"])
        data["history"] = [tuple(item) for item in data.get("history", [])]
        return cls(**data, version=version)


_ALL_FIELDS = tuple(f.name for f in fields(TaskRecord))
_STORED_FIELDS = tuple(name for name in _ALL_FIELDS if name != "version")
