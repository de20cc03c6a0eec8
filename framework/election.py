"""Leader election in a ZooKeeper group: how dockyard's masters and its schedulers elect one.

Why: of several masters (or schedulers) sharing one ZooKeeper, only one may act; the
others stand by and take over when it dies.

Recipe, as Mesos's LeaderContender (src/zookeeper/contender.cpp) over its Group
(src/zookeeper/group.cpp): each candidate joins the group (`framework/zkgroup.py`) with an
ephemeral sequential node `<label><seq>` holding its data; the lowest member leads. kazoo's
Election and Lock recipes name their nodes `<uuid>__lock__<seq>`, which no Mesos detector
reads as a master, so the recipe is written here, on kazoo's primitives.

Losing leadership (our node gone or no longer first, the session expired, ZooKeeper
unreachable for 90% of the session timeout, or `abdicate()`) calls `on_lost(reason)` once:
by then a successor may have been elected, so the owner stops acting (a master exits, as
a Mesos master aborts; a scheduler exits, as Marathon does). A follower whose node goes
(its session expired, or somebody deleted it) joins again with a new one, as a Mesos
master re-contends.

A dead leader's node lives until its session expires. With `gone(member)` given, the
candidate next in line asks it every PROBE_INTERVAL whether the leader's process is surely
gone; PROBE_FAILURES yeses in a row and it deletes the leader's node.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Generic

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState

from framework.errors import LeadershipError
from framework.zkclient import ZkUrl
from framework.zkgroup import RETRY_SECONDS, GroupWatch, Member, Parse, T

log = logging.getLogger("dockyard.election")

FENCE_FRACTION = 0.9    # of the session timeout: how long a leader may stay cut off from ZooKeeper
PROBE_INTERVAL = 0.5    # seconds between two take-over probes of the leader
PROBE_FAILURES = 3      # consecutive "surely gone" before its node is taken away
DELETE_SECONDS = 2.0    # the longest a losing leader waits to remove its node before it stops acting


class Election(Generic[T]):
    """One candidacy in the group at `url.path`; thread-safe.

    `on_change(members)` hears every view of the group (None: unknown, our session expired)
    on the group's thread, before this candidacy acts on it; `on_elected()` runs on a
    thread of its own; `on_lost(reason)` on whichever thread noticed.
    """

    def __init__(self, url: ZkUrl, label: str, data: bytes, parse: Parse[T], *,
                 on_lost: Callable[[str], None], session_timeout: float = 10.0,
                 on_change: Callable[[list[Member[T]] | None], None] | None = None,
                 on_elected: Callable[[], None] | None = None,
                 gone: Callable[[Member[T]], bool] | None = None) -> None:
        self.path = url.path
        self.label = label
        self.data = data
        self.session_timeout = session_timeout
        self.on_change = on_change
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.gone = gone
        self.client = url.client(session_timeout)
        self._where = f"{url.servers}{url.path}"
        self._group = GroupWatch(self.client, self.path, label, parse, self._on_members)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._node: str | None = None
        self._members: list[Member[T]] = []
        self._leading = False
        self._lost = False
        self._closed = False
        self._fence: threading.Timer | None = None
        self._probe_target: Member[T] | None = None
        self._probe_wakeup = threading.Event()

    # -- public ----------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> "Election[T]":
        """Connect and join; LeadershipError when ZooKeeper cannot be reached (call again)."""
        try:
            self.client.start(timeout=timeout)
            self.client.add_listener(self._on_state)
            self.client.ensure_path(self.path)
            self._join()
        except (KazooException, KazooTimeoutError) as error:
            self.client.stop()
            raise LeadershipError(f"cannot contend in {self._where}: {error}") from error
        self._group.start()
        if self.gone is not None:
            threading.Thread(target=self._probe_loop, name="leader-probe", daemon=True).start()
        log.info("contending for leadership as %s/%s", self.path, self._node)
        return self

    @property
    def node(self) -> str | None:
        """Our member node's name, once joined."""
        with self._lock:
            return self._node

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._leading and not self._lost

    def leader(self) -> Member[T] | None:
        """The leading member as ZooKeeper last told us (None: nobody leads, or not known)."""
        with self._lock:
            return self._members[0] if self._members else None

    def members(self) -> list[Member[T]]:
        with self._lock:
            return list(self._members)

    def wait_elected(self, timeout: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._leading or self._closed, timeout) and self._leading

    def abdicate(self) -> None:
        """Give leadership up on purpose: the same way out as losing it."""
        self._lose("abdicated")

    def close(self) -> None:
        """Leave the group (a graceful stop): the session ends, our node with it, and the next
        candidate leads at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._probe_wakeup.set()
        if self._fence:
            self._fence.cancel()
        self._group.stop()
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # closing a broken client must not hide why we are closing
            log.debug("closing the election's ZooKeeper client failed", exc_info=True)

    # -- the group's thread ----------------------------------------------------------

    def _join(self) -> None:
        created = self.client.create(f"{self.path.rstrip('/')}/{self.label}", self.data,
                                     ephemeral=True, sequence=True)
        with self._lock:
            self._node = created.rsplit("/", 1)[1]

    def _on_members(self, members: list[Member[T]] | None) -> None:
        elected = lost = rejoin = False
        with self._changed:
            if self._closed or self._lost:
                return
            self._members = members or []
            names = [m.node for m in self._members]
            if members is None:
                pass  # the session expired: the state listener handles a leader's loss
            elif self._node not in names:
                lost, rejoin = self._leading, not self._leading
            elif names[0] == self._node and not self._leading:
                self._leading = elected = True
            elif self._leading and names[0] != self._node:
                lost = True
            position = names.index(self._node) if self._node in names else -1
            self._probe_target = self._members[0] if position == 1 else None
            self._changed.notify_all()
        self._probe_wakeup.set()
        if self.on_change is not None:
            self.on_change(members)
        if lost:
            self._lose("our node is no longer the first")
        elif rejoin:
            self._rejoin()
        elif elected:
            log.info("elected leader (node %s/%s)", self.path, self._node)
            if self.on_elected is not None:
                threading.Thread(target=self.on_elected, name="leader-elected", daemon=True).start()

    def _rejoin(self) -> None:
        """Our node went while we followed: stand in line again."""
        try:
            self._join()
            log.info("re-entered the election as %s/%s", self.path, self._node)
        except (KazooException, KazooTimeoutError) as error:
            log.warning("cannot re-enter the election yet: %s", error)
            time.sleep(RETRY_SECONDS)
            self._group.refresh()

    # -- kazoo's connection thread: never block ----------------------------------------

    def _on_state(self, state: str) -> None:
        if self._closed:
            return
        if state == KazooState.SUSPENDED:
            if self.is_leader:
                if self._fence:
                    self._fence.cancel()
                # ZooKeeper may expire our session without our hearing of it: stop acting
                # before a successor can have been elected (a Mesos master forces the expiry
                # itself on a timer).
                delay = self.session_timeout * FENCE_FRACTION
                log.warning("ZooKeeper connection suspended while leading; fencing in %.1fs", delay)
                self._fence = threading.Timer(delay, self._lose,
                                              args=("ZooKeeper unreachable for a session timeout",))
                self._fence.daemon = True
                self._fence.start()
        elif state == KazooState.CONNECTED:
            if self._fence:
                self._fence.cancel()
                self._fence = None
        elif state == KazooState.LOST:
            if self.is_leader:
                threading.Thread(target=self._lose, args=("ZooKeeper session expired",), daemon=True).start()

    # -- losing ----------------------------------------------------------------------

    def _lose(self, reason: str) -> None:
        with self._changed:
            if self._lost or self._closed:
                return
            self._lost = True
            was_leading = self._leading
            self._leading = False
            node = self._node
            self._changed.notify_all()
        log.warning("leadership lost: %s", reason)
        if node:
            try:  # bounded: cut off from ZooKeeper, the node goes with the session anyway
                self.client.delete_async(f"{self.path.rstrip('/')}/{node}").get(timeout=DELETE_SECONDS)
            except Exception:
                log.debug("could not delete our member node", exc_info=True)
        if was_leading or reason == "abdicated":
            self.on_lost(reason)

    # -- fast take-over ----------------------------------------------------------------

    def _probe_loop(self) -> None:
        assert self.gone is not None
        failures = 0
        watched: str | None = None
        while not self._closed and not self._lost:
            target = self._probe_target
            if target is None:
                failures, watched = 0, None
                self._probe_wakeup.wait(1.0)
                self._probe_wakeup.clear()
                continue
            if target.node != watched:
                failures, watched = 0, target.node
            if self.gone(target):
                failures += 1
                if failures >= PROBE_FAILURES:
                    log.warning("leader %s is gone: taking its node away", target.node)
                    try:
                        self.client.delete(f"{self.path.rstrip('/')}/{target.node}")
                    except NoNodeError:
                        pass
                    except (KazooException, KazooTimeoutError) as error:
                        log.warning("cannot remove the dead leader's node: %s", error)
                    failures = 0
            else:
                failures = 0
            self._probe_wakeup.wait(PROBE_INTERVAL)
            self._probe_wakeup.clear()
