"""Task records: the only copy of each task's `TaskRecord`, persisted, and who hears of it.

A PENDING record is kept in memory only: until a task is in an ACCEPT, the owner's
own persisted intent (the job run, the app) is the truth, and the owner submits
again after a restart. From LAUNCHED on, every change is written before anything
else happens; the outbox makes it durable before an ACK or ACCEPT depends on it.

Not locked itself: the core's lock guards it. Owner callbacks are handed back to
the core to run without that lock.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from framework.errors import StoreError
from framework.store import Store
from scheduler.core.config import TASKS_KEY
from scheduler.placement.views import Assignment
from scheduler.requests import TaskRequest
from scheduler.tasks import TERMINAL, IllegalTransition, State, TaskRecord

log = logging.getLogger(__name__)

OwnerCallback = Callable[[TaskRecord, dict], None]
TERMINAL_STATES = frozenset(state.value for state in TERMINAL)


@dataclass
class Applied:
    """What a status did to the records: the owners to tell, or an unknown live task."""

    record: TaskRecord | None = None  # None: unknown task, or an update that means nothing
    callbacks: list[OwnerCallback] = field(default_factory=list)
    orphan: bool = False  # alive, but no record of ours: to be killed


class TaskBook:
    """Every task's record by id; terminal ones kept up to `keep_terminal`, oldest dropped."""

    def __init__(self, store: Store, keep_terminal: int) -> None:
        self.store = store
        self.keep_terminal = keep_terminal
        self._records: dict[str, TaskRecord] = {}
        self._terminal_order: deque[str] = deque()
        self._owners: list[tuple[str, OwnerCallback]] = []

    def load(self) -> int:
        """Read the persisted records (after a restart); returns how many were live."""
        live = 0
        for task_id in self.store.children(TASKS_KEY):
            raw, version = self.store.get(f"{TASKS_KEY}/{task_id}")
            if raw is None:
                continue
            record = TaskRecord.from_json(raw, version)
            self._records[task_id] = record
            if record.terminal:
                self._terminal_order.append(task_id)
            else:
                live += 1
        return live

    # -- reading -------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        return self._records.get(task_id)

    def __getitem__(self, task_id: str) -> TaskRecord:
        return self._records[task_id]

    def owned(self, owner_prefix: str = "") -> list[TaskRecord]:
        return [r for r in self._records.values() if r.owner.startswith(owner_prefix)]

    def launched(self) -> list[TaskRecord]:
        """Tasks Mesos knows of (or was sent): not queued here, not ended."""
        return [r for r in self._records.values() if not r.terminal and r.state != State.PENDING]

    def is_ended(self, task_id: str) -> bool:
        record = self._records.get(task_id)
        return record is not None and record.terminal

    # -- owners --------------------------------------------------------------------

    def add_owner(self, prefix: str, callback: OwnerCallback) -> None:
        """Tasks whose owner starts with `prefix` report to `callback(record, status)`."""
        self._owners.append((prefix, callback))

    def owners_of(self, record: TaskRecord) -> list[OwnerCallback]:
        return [callback for prefix, callback in self._owners if record.owner.startswith(prefix)]

    # -- changes -------------------------------------------------------------------

    def queued(self, request: TaskRequest, now: float) -> TaskRecord:
        """The PENDING record of a request being queued (a new one, or the one it had)."""
        record = self._records.get(request.task_id)
        if record is not None and record.state != State.PENDING:
            raise ValueError(f"task {request.task_id} already exists ({record.state.value})")
        if record is None:
            record = TaskRecord(task_id=request.task_id, owner=request.owner, name=request.name,
                                created_at=now, history=[(State.PENDING.value, now)])
            self._records[request.task_id] = record
        return record

    def apply(self, status: dict, now: float) -> Applied:
        """Move a task's record as the status says, store it, and name the owners to tell.

        A status that changes nothing (a repeat, an illegal move, an unknown state) tells
        nobody. A StoreError leaves the record as it was, and goes to the caller: the
        status must not be acknowledged, so the master sends it again.
        """
        task_id = (status.get("task_id") or {}).get("value") or ""
        state = status.get("state", "")
        record = self._records.get(task_id)
        if record is None:
            return Applied(orphan=state not in TERMINAL_STATES)
        saved = record.copy()
        try:
            changed = record.apply_status(status, now)
        except IllegalTransition as error:
            log.warning("%s (ignored)", error)
            return Applied()
        except ValueError:
            log.warning("task %s: unknown state %r ignored", task_id, state)
            return Applied()
        if not changed and record.healthy == saved.healthy:
            # A check's new result (Mesos's REASON_TASK_CHECK_STATUS_UPDATED) moves nothing; owners hear it.
            return Applied(record, self.owners_of(record) if "check_status" in status else [])
        try:
            self.persist(record)
        except StoreError:
            record.restore(saved)
            raise
        if record.terminal:
            self._terminal_order.append(task_id)
            self._collect_garbage()
        return Applied(record, self.owners_of(record))

    def launch(self, assignments: Iterable[Assignment], hostnames: dict[str, str | None],
               warm_executor_id: str | None, now: float) -> bool:
        """Move the round's tasks to LAUNCHED and store them; if the store fails, put every
        one back as it was and say so: nothing unstored is launched."""
        saved: list[tuple[TaskRecord, TaskRecord]] = []
        try:
            for assignment in assignments:
                record = self._records[assignment.request.task_id]
                saved.append((record, record.copy()))
                record.move(State.LAUNCHED, now)
                record.agent_id = assignment.agent_id
                record.hostname = hostnames[assignment.agent_id]
                record.ports = list(assignment.ports)
                record.executor_id = warm_executor_id if warm_executor_id is not None else record.task_id
                self.persist(record)
        except StoreError as error:
            for record, before in saved:
                record.restore(before)
            log.warning("launches not stored, so not sent (the tasks wait for the next offer): %s", error)
            return False
        return True

    def persist(self, record: TaskRecord) -> None:
        """Write now; durable before any ACK or ACCEPT that depends on it (the outbox's sync)."""
        record.version = self.store.put_lazy(f"{TASKS_KEY}/{record.task_id}", record.to_json())

    def _collect_garbage(self) -> None:
        while len(self._terminal_order) > self.keep_terminal:
            old = self._terminal_order[0]
            record = self._records.get(old)
            if record is not None and record.terminal:
                try:
                    self.store.delete(f"{TASKS_KEY}/{old}")
                except StoreError:
                    return  # the oldest stays a while longer; the next terminal task retries
                del self._records[old]
            self._terminal_order.popleft()
