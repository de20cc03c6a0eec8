"""The reconciliation gate, and when to reconcile.

After every (re)subscribe nothing is launched or killed until each task we know to
be live has been answered for (explicit reconciliation, Mesos's reconciliation
page): a new leader that acted on what its store said could kill tasks that moved on,
or launch twice. Kills asked for meanwhile are held and sent when the gate opens.
The master stays silent about tasks on agents that have not re-registered yet, so
the question is asked again with backoff. Implicit reconciliation then runs
periodically, to hear of tasks the store does not know.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

EXPLICIT_BACKOFF_MAX = 30.0

Kill = tuple[dict, dict | None]  # (TaskID, AgentID or None), as KILL takes them


class ReconciliationGate:
    """Closed from a subscribe until every live task is answered for; open otherwise."""

    def __init__(self, post: Callable[[str, Any], None]) -> None:
        self._post = post  # asks the core thread to `reconcile_explicit` / `reconcile_implicit`
        self.reconciled = threading.Event()
        self._lock = threading.Lock()
        self._unanswered: set[str] = set()
        self._held_kills: list[Kill] = []
        self._backoff = 1.0
        self._implicit: threading.Timer | None = None

    def close(self, task_ids: set[str]) -> bool:
        """A new subscription: closed until each of `task_ids` is answered for. False (and
        nothing closed) when there are none."""
        with self._lock:
            self._unanswered = set(task_ids)
            self._backoff = 1.0
            if task_ids:
                self.reconciled.clear()
        return bool(task_ids)

    def answered(self, task_id: str) -> bool:
        """A status for `task_id` came; True when that was the last one awaited."""
        with self._lock:
            if task_id in self._unanswered:
                self._unanswered.discard(task_id)
                return not self._unanswered
        return False

    def unanswered(self) -> set[str]:
        with self._lock:
            return set(self._unanswered)

    def open(self) -> list[Kill]:
        """Every known task is accounted for: open, and hand back the kills held meanwhile."""
        with self._lock:
            kills, self._held_kills = self._held_kills, []
            self.reconciled.set()
        return kills

    def hold_kill(self, task_id: dict, agent_id: dict | None) -> bool:
        """Keep a kill for when the gate opens; False when it is open (send it now)."""
        with self._lock:
            if self.reconciled.is_set():
                return False
            self._held_kills.append((task_id, agent_id))
            return True

    def ask_again_later(self, backoff: bool = False) -> None:
        """Ask again for tasks nobody answered for, after the current backoff (doubled
        first when `backoff`, up to EXPLICIT_BACKOFF_MAX)."""
        if backoff:
            self._backoff = min(self._backoff * 2, EXPLICIT_BACKOFF_MAX)
        timer = threading.Timer(self._backoff, self._post, args=("reconcile_explicit", None))
        timer.daemon = True
        timer.start()

    def implicit_after(self, delay: float) -> None:
        """Reconcile implicitly (every task the master knows) in `delay` seconds."""
        if self._implicit:
            self._implicit.cancel()
        self._implicit = threading.Timer(delay, self._post, args=("reconcile_implicit", None))
        self._implicit.daemon = True
        self._implicit.start()

    def stop(self) -> None:
        if self._implicit:
            self._implicit.cancel()
