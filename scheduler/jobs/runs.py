"""Job runs: the record of one execution of a job, and the pure rules that move it.

A run has one task per instance (an array job has N); a failed instance is
retried under the restart policy with exponential backoff; the run finishes
exactly once, SUCCESS when every instance succeeded, FAILED otherwise.
`task_ended` decides; the manager applies its answer and does the I/O.
"""
from __future__ import annotations

import json
import random
import string
import time
from dataclasses import dataclass, field, fields
from typing import Any

from scheduler.jobs.specs import RestartPolicy, Run, metronome_time, timestamp

INITIAL, STARTING, ACTIVE, SUCCESS, FAILED = "INITIAL", "STARTING", "ACTIVE", "SUCCESS", "FAILED"
FINISHED_STATUSES = frozenset({SUCCESS, FAILED})
MAX_BACKOFF_SECONDS = 300.0


def new_run_id(now: float) -> str:
    """Metronome's shape: a UTC timestamp, then random letters (sortable, unique enough)."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    return stamp + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))


@dataclass(slots=True)
class RunTask:
    """One attempt of one instance."""

    id: str
    index: int
    attempt: int
    status: str = "PENDING"
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    exit_code: int | None = None
    agent_id: str | None = None
    host: str | None = None
    agent_url: str | None = None
    sandbox: str | None = None
    message: str = ""
    # The terminal state the run counted this attempt as, once and for good: its own, or
    # TASK_LOST when it was given up as unreachable. Later terminal statuses of the same
    # task (e.g. TASK_FINISHED from an agent back from a partition) are recorded, never
    # counted again. Persisted with the run, so a new leader knows it too.
    counted_as: str = ""

    def to_api(self) -> dict:
        out = {"id": self.id, "status": self.status, "index": self.index, "attempt": self.attempt,
               "createdAt": timestamp(self.created_at), "startedAt": timestamp(self.started_at),
               "completedAt": timestamp(self.completed_at), "exitCode": self.exit_code,
               "agentId": self.agent_id, "host": self.host, "agentUrl": self.agent_url,
               "sandbox": self.sandbox, "message": self.message}
        return {k: v for k, v in out.items() if v is not None and v != ""}

    def metronome(self, indexed: bool = False) -> dict:
        """Metronome's JobRunTask (`id`, `startedAt`, `completedAt` once ended, `status`); a task
        not launched yet is TASK_CREATED, as Metronome names it. `indexed`: an array job's task
        says which instance it is (`index`, dockyard's)."""
        out = {"id": self.id, "startedAt": metronome_time(self.started_at or self.created_at)}
        if self.completed_at is not None:
            out["completedAt"] = metronome_time(self.completed_at)
        out["status"] = "TASK_CREATED" if self.status == "PENDING" else self.status
        if indexed:
            out["index"] = self.index
        return out


@dataclass(slots=True)
class JobRun:
    id: str
    job_id: str
    created_at: float
    instances: int = 1
    status: str = INITIAL
    completed_at: float | None = None
    trigger: str = "api"
    reason: str = ""                  # why it failed
    waiting: str = ""                 # why a task still waits for an offer (placement report)
    deadline_at: float | None = None  # activeDeadlineSeconds, absolute
    tasks: list[RunTask] = field(default_factory=list)
    succeeded: list[int] = field(default_factory=list)  # instance indexes done
    retry_at: dict[int, float] = field(default_factory=dict)  # index -> when to relaunch
    # Not stored: `task()` by id, rebuilt when tasks were added (they never go away).
    _by_id: dict[str, RunTask] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def owner(self) -> str:
        return f"job:{self.job_id}/{self.id}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def latest(self, index: int) -> RunTask | None:
        for task in reversed(self.tasks):
            if task.index == index:
                return task
        return None

    def task(self, task_id: str) -> RunTask | None:
        """O(1): an array run hears of each of its thousands of tasks several times."""
        if len(self._by_id) != len(self.tasks):
            self._by_id = {task.id: task for task in self.tasks}
        return self._by_id.get(task_id)

    def live_tasks(self) -> list[RunTask]:
        from scheduler.tasks import State

        return [t for t in self.tasks if not State(t.status).terminal] if self.tasks else []

    def to_json(self) -> bytes:
        # Field by field: dataclasses.asdict deep-copies every value first, a third of
        # the cost of storing a run of hundreds of tasks.
        data = {name: getattr(self, name) for name in _RUN_FIELDS}
        data["tasks"] = [{name: getattr(task, name) for name in _TASK_FIELDS} for task in self.tasks]
        data["retry_at"] = {str(k): v for k, v in self.retry_at.items()}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "JobRun":
        data: dict[str, Any] = json.loads(raw)
        data["tasks"] = [RunTask(**t) for t in data.get("tasks", [])]
        data["retry_at"] = {int(k): v for k, v in data.get("retry_at", {}).items()}
        return cls(**data)

    def to_api(self, tasks: bool = True) -> dict:
        """The API view; `tasks=False` leaves the task list out (events about one task)."""
        out: dict[str, Any] = {
            "id": self.id, "jobId": self.job_id, "status": self.status,
            "createdAt": timestamp(self.created_at), "completedAt": timestamp(self.completed_at),
            "trigger": self.trigger, "instances": self.instances,
        }
        if tasks:
            out["tasks"] = [t.to_api() for t in self.tasks]
        if self.reason:
            out["reason"] = self.reason
        if self.waiting and not self.finished:
            out["waiting"] = self.waiting
        if self.retry_at and not self.finished:
            out["retryAt"] = {str(k): timestamp(v) for k, v in self.retry_at.items()}
        if self.deadline_at:
            out["deadlineAt"] = timestamp(self.deadline_at)
        return {k: v for k, v in out.items() if v is not None}

    def metronome(self) -> dict:
        """Metronome's JobRun as its API writes it (JobRunWrites: `id`, `jobId`, `status`,
        `createdAt`, `completedAt` (null while running), `tasks`); an array job adds `instances`
        and each task's `index`, dockyard's only extension a job can make it show."""
        out: dict[str, Any] = {"id": self.id, "jobId": self.job_id, "status": self.status,
                               "createdAt": metronome_time(self.created_at),
                               "completedAt": metronome_time(self.completed_at),
                               "tasks": [t.metronome(self.instances > 1) for t in self.tasks]}
        if self.instances > 1:
            out["instances"] = self.instances
        return out


def task_id_for(run: JobRun, index: int, attempt: int) -> str:
    return f"{run.job_id}_{run.id}.{index}.{attempt}"


def backoff(spec: Run, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: backoffSeconds doubling, capped."""
    return min(spec.restart.backoff_seconds * (2 ** max(attempt - 1, 0)), MAX_BACKOFF_SECONDS)


_TASK_FIELDS = tuple(f.name for f in fields(RunTask))
_RUN_FIELDS = tuple(f.name for f in fields(JobRun) if f.init)


@dataclass(frozen=True)
class Outcome:
    """What a task's end means for its run."""

    action: str            # "success" (run done), "instance_done", "retry", "fail", "ignore"
    retry_at: float | None = None
    reason: str = ""


def task_ended(run: JobRun, spec: Run, task: RunTask, state: str, message: str, now: float) -> Outcome:
    """Decide after one task reached a terminal state (pure: no I/O, no clock).

    A task is counted once: a second terminal status of the same task (after it was
    given up as unreachable, or replayed after a failover) changes nothing."""
    if task.counted_as or run.finished or run.latest(task.index) is not task:
        return Outcome("ignore")  # counted already, a superseded attempt, or a finished run
    if state == "TASK_FINISHED":
        done = set(run.succeeded) | {task.index}
        if len(done) >= run.instances:
            return Outcome("success")
        return Outcome("instance_done")
    why = f"instance {task.index} attempt {task.attempt}: {state}" + (f" ({message})" if message else "")
    if spec.restart.policy is RestartPolicy.ON_FAILURE and state != "TASK_KILLED":
        when = now + backoff(spec, task.attempt)
        if run.deadline_at is None or when < run.deadline_at:
            return Outcome("retry", retry_at=when, reason=why)
        return Outcome("fail", reason=f"{why}; no retry before the active deadline")
    return Outcome("fail", reason=why)
