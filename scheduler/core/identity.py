"""The framework id the master gave us, stored before anything runs under it.

A restart that lost it would register anew, and the master would kill every task
of the old framework; so nothing launches until the id is stored. A master that
removed the framework never takes its id again: then it is forgotten, as
Marathon's `MarathonScheduler.error` does, and the next start registers anew.
"""
from __future__ import annotations

import logging

from framework.errors import StoreError
from framework.store import Store
from scheduler.core.config import FRAMEWORK_ID_KEY

log = logging.getLogger(__name__)


class FrameworkId:
    """The framework id: known (`value`), and whether the store has it yet."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.value: str | None = None
        self._unsaved: str | None = None  # given by the master, not stored yet

    def load(self) -> None:
        raw, _ = self.store.get(FRAMEWORK_ID_KEY)
        self.value = raw.decode() if raw else None

    def given(self, framework_id: str | None) -> None:
        """The master named our framework (a SUBSCRIBED): keep a new id, and try to store it."""
        if framework_id and framework_id != self.value:
            self.value = self._unsaved = framework_id
            self.save()

    def save(self) -> bool:
        """Store a new id; False while the store refuses it (nothing may launch then)."""
        if self._unsaved is None:
            return True
        try:
            self.store.put(FRAMEWORK_ID_KEY, self._unsaved.encode())
        except StoreError as error:
            log.warning("framework id not stored, nothing launches until it is: %s", error)
            return False
        self._unsaved = None
        return True

    def forget(self) -> bool:
        """Remove the stored id; False when the store refused."""
        try:
            self.store.delete(FRAMEWORK_ID_KEY)
            self.store.sync()  # the embedded journal makes a delete durable at the next sync
        except StoreError as error:
            log.warning("cannot forget the framework id: %s", error)
            return False
        self.value = self._unsaved = None
        return True
