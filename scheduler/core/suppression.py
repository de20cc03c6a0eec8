"""SUPPRESS when nothing waits, REVIVE when something does, never the two out of order.

The decision and its call happen under one lock, reading the demand at that moment:
a SUPPRESS decided before a submission can then never reach the master after that
submission's REVIVE (which would leave the framework suppressed with work queued).
Submissions revive only when suppressed, or when an answer refused offers for long since
the last REVIVE (those agents are hidden from the new work until the refusal ends), so a
stream of them does not flap.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class Suppression:
    """Whether the master sends us offers, kept in step with the launch queue."""

    def __init__(self, call: Callable[[str], bool], demand: Callable[[], tuple[bool, bool]],
                 active: Callable[[], bool]) -> None:
        self._call = call  # a driver call by name, through the outbox's rules
        self._demand = demand  # (work waits, offers are held), read under the core's lock
        self._active = active  # subscribed, with a driver: calls can reach the master
        self._suppressed = False
        self._refused_for_long = False  # an ACCEPT or DECLINE refused offers for long since the last REVIVE
        self._lock = threading.Lock()  # orders SUPPRESS/REVIVE decisions and calls
        self.last_offer_at = time.monotonic()

    def subscribed(self) -> None:
        """A new subscription starts unsuppressed, with no filters (lock held by the core)."""
        self._suppressed = False
        self._refused_for_long = False

    def refused_for_long(self) -> None:
        """The master now filters some agents' offers out for long: new work must REVIVE."""
        with self._lock:
            self._refused_for_long = True

    def offers_came(self) -> None:
        self.last_offer_at = time.monotonic()

    def sync(self, force_revive: bool = False, new_work: bool = False) -> None:
        """SUPPRESS or REVIVE as the demand now says (called without the core lock);
        `force_revive`: REVIVE even when not suppressed (filters may hide agents);
        `new_work`: a submission, which REVIVEs when offers were refused for long."""
        if not self._active():
            return
        with self._lock:
            waiting, holding = self._demand()
            if waiting and (self._suppressed or force_revive or (new_work and self._refused_for_long)):
                self._suppressed = False
                self._refused_for_long = False
                self._call("reviveOffers")
            elif not waiting and not holding and not self._suppressed:
                self._suppressed = True
                self._call("suppressOffers")

    def nudge(self, waiting: bool, quiet_seconds: float) -> None:
        """REVIVE when work waits and no offer came for `quiet_seconds` (a lost REVIVE, a
        long filter): cheap to call often."""
        if not waiting or time.monotonic() - self.last_offer_at < quiet_seconds:
            return
        self.last_offer_at = time.monotonic()  # at most one nudge per quiet period
        self.sync(force_revive=True)
