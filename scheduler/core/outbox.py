"""The outbox: calls to the master, sent off the core thread, and only after a store sync.

Each call is a synchronous HTTP round trip to the master; made on the core thread
they would stall every status behind a busy master. So they go out on a few outbox
threads. Records are written at once (atomically) but fsynced by one syncer thread,
many per pass (group commit); a call that announces stored state (an ACK, an ACCEPT)
waits for the pass that covers it, so "stored before acknowledged" holds without an
fsync per status. Calls only leave after the state they announce is persisted, so
their order among themselves does not matter.

Before `start` (unit tests) every call runs inline, after an inline sync.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Protocol

from framework.errors import MesosError
from framework.store import Store
from scheduler.core.metrics import CALL_SECONDS

log = logging.getLogger(__name__)


class Driver(Protocol):
    """The scheduler driver calls the core makes (pymesos's names; framework/mesos/scheduler.py)."""

    def acceptOffers(self, offer_ids: Any, operations: list, filters: Any = None) -> None: ...

    def declineOffer(self, offer_ids: Any, filters: Any = None) -> None: ...

    def reviveOffers(self) -> None: ...

    def suppressOffers(self) -> None: ...

    def killTask(self, task_id: Any, agent_id: Any = None) -> None: ...

    def reconcileTasks(self, tasks: list) -> None: ...

    def acknowledgeStatusUpdate(self, status: Any) -> None: ...


class Outbox:
    """Calls to the master through `driver`, on outbox threads, each after a store sync if asked."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver: Driver | None = None
        self.failure: str | None = None  # why nothing reaches Mesos any more (set once, by the core)
        self._calls: queue.Queue[tuple | None] = queue.Queue()
        self._synced: queue.Queue[tuple | None] = queue.Queue()  # calls waiting for a store sync
        self._syncer: threading.Thread | None = None
        self._senders: list[threading.Thread] = []

    def start(self, senders: int) -> None:
        self._syncer = threading.Thread(target=self._sync_loop, name="scheduler-sync", daemon=True)
        self._syncer.start()
        for index in range(senders):
            sender = threading.Thread(target=self._send_loop, name=f"scheduler-ack-{index}", daemon=True)
            sender.start()
            self._senders.append(sender)

    def stop(self) -> None:
        for _ in self._senders:
            self._calls.put(None)
        self._synced.put(None)

    # -- sending ------------------------------------------------------------------

    def after_sync(self, call: Callable[..., Any], *args: Any) -> None:
        """Send `call(*args)` once everything persisted so far is durable."""
        if self._syncer is None:
            self.store.sync()
            self.send(call, *args)
        else:
            self._synced.put((call, args))

    def send(self, call: Callable[..., Any], *args: Any) -> None:
        """Run `call(*args)` on an outbox thread (inline before `start`)."""
        if self._senders:
            self._calls.put((call, args))
        else:
            call(*args)

    def call(self, name: str, *args: Any) -> bool:
        """One driver call, here and now; False when it did not reach the master."""
        if self.failure is not None:  # said once, loudly, by the core; not again per call
            log.debug("%s dropped: %s", name, self.failure)
            return False
        if self.driver is None:
            log.warning("no driver: %s dropped", name)
            return False
        try:
            with CALL_SECONDS.labels(name).time():
                getattr(self.driver, name)(*args)
            return True
        except MesosError as error:
            log.warning("%s failed: %s", name, error)
            return False
        except TypeError:
            # pymesos's killTask takes only the task id
            if name == "killTask":
                try:
                    self.driver.killTask(args[0])
                    return True
                except MesosError as error:
                    log.warning("%s failed: %s", name, error)
            raise

    # -- threads ------------------------------------------------------------------

    def _sync_loop(self) -> None:
        while True:
            batch = [self._synced.get()]
            while True:
                try:
                    batch.append(self._synced.get_nowait())
                except queue.Empty:
                    break
            if any(item is None for item in batch):
                return
            try:
                self.store.sync()
            except Exception:  # keep the calls: the writes themselves were atomic
                log.exception("store sync failed")
            for call, args in batch:  # type: ignore[misc]
                self.send(call, *args)

    def _send_loop(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            call, args = item
            try:
                call(*args)
            except Exception:  # one failed call must not stop the outbox
                log.exception("outbox call failed")
