"""A ZooKeeper group as Mesos keeps one (src/zookeeper/group.cpp): members are ephemeral
sequential children `<label><seq>` of one path, lowest sequence first.

Masters are the `json.info_` members of their `--zk` path (Mesos's MASTER_INFO_JSON_LABEL;
the `log_replicas` and `registry` children beside them are not members); schedulers are the
`member_` members of `<--zk path>/leader`. `framework/election.py` contends in a group,
`framework/mesos/detector.py` only follows one.

Reading a member's data is a round trip per member. `GroupWatch` does it on a thread of its
own, never on kazoo's event thread: a blocking read there holds up every other watch of the
client, and while ZooKeeper is away it waits without a bound.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState

log = logging.getLogger("dockyard.zkgroup")

T = TypeVar("T")
# What a member's data becomes; raises ValueError, KeyError or TypeError for data it cannot use.
Parse = Callable[[bytes], T]
RETRY_SECONDS = 0.5  # after ZooKeeper did not answer a read: the change that asked for it must not be missed


@dataclass(frozen=True)
class Member(Generic[T]):
    """One member of a group, as its node says."""

    node: str        # the child's name, `json.info_0000000003`
    sequence: int
    data: T          # what the group's `parse` made of the node's data


def sequence_of(child: str, label: str) -> int | None:
    """The sequence of a `<label><digits>` child, None for any other child."""
    digits = child[len(label):]
    return int(digits) if child.startswith(label) and digits.isdigit() else None


def read_members(client: Any, path: str, label: str, parse: Parse[T], watch: Callable | None = None
                 ) -> list[Member[T]]:
    """Every member under `path` whose data `parse` takes, lowest sequence first; members that go
    while being read, or whose data is unusable, are left out. NoNodeError when `path` is absent."""
    children = client.get_children(path, watch=watch)
    found = []
    for sequence, child in sorted((s, c) for c in children if (s := sequence_of(c, label)) is not None):
        node = f"{path.rstrip('/')}/{child}"
        try:
            data, _ = client.get(node)
            found.append(Member(child, sequence, parse(data)))
        except NoNodeError:
            continue  # gone between listing and reading
        except (ValueError, KeyError, TypeError) as error:
            log.warning("ignoring unreadable member %s: %s", node, error)
    return found


class GroupWatch(Generic[T]):
    """Follows one group: every change of its members, and every new session, leads to one
    fresh read, made on this watch's own thread and handed to `on_members` in order (an older
    view never overwrites a newer one).

    `on_members(members)` gets every member (`[]`: none, or no such path yet: a path
    created later is followed), or None when the session expired: what it saw may be stale,
    and nothing is known until the new session has read the group again.
    """

    def __init__(self, client: Any, path: str, label: str, parse: Parse[T],
                 on_members: Callable[[list[Member[T]] | None], None]) -> None:
        self.client = client
        self.path = path
        self.label = label
        self.parse = parse
        self.on_members = on_members
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._expired = False

    def start(self) -> "GroupWatch[T]":
        """Read the group once on the caller's thread (what is there is known when this returns),
        then follow it on our own."""
        self.client.add_listener(self._on_state)
        self._update()
        threading.Thread(target=self._run, name=f"zk-group{self.path}", daemon=True).start()
        return self

    def refresh(self) -> None:
        """Read the group again soon (from any thread)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        self.client.remove_listener(self._on_state)

    # -- kazoo's threads: never block --------------------------------------------------

    def _on_event(self, event: Any) -> None:
        self._wake.set()

    def _on_state(self, state: str) -> None:
        if state == KazooState.LOST:
            self._expired = True  # ZooKeeper dropped the old session's watches with it
            self._wake.set()
        elif state == KazooState.CONNECTED:
            self._wake.set()  # reconnected: read again (a new session's watches stay silent on an unchanged group)

    # -- this watch's thread -----------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait()
            self._wake.clear()
            if not self._stopped.is_set():
                self._update()

    def _update(self) -> None:
        """One read, handed on; when ZooKeeper did not answer, another one shortly."""
        if self._expired:
            self._expired = False
            self._deliver(None)
        members = self._read()
        if members is None:
            self._stopped.wait(RETRY_SECONDS)
            self._wake.set()
        elif not self._stopped.is_set():
            self._deliver(members)

    def _read(self) -> list[Member[T]] | None:
        """The members, with a watch on them (or on the path's creation); None when ZooKeeper
        did not answer."""
        try:
            while True:
                try:
                    return read_members(self.client, self.path, self.label, self.parse, watch=self._on_event)
                except NoNodeError:
                    if self.client.exists(self.path, watch=self._on_event) is None:
                        return []
                    # created in between: read it
        except (KazooException, KazooTimeoutError) as error:
            log.warning("cannot read the members of %s: %s", self.path, error)
            return None

    def _deliver(self, members: list[Member[T]] | None) -> None:
        try:
            self.on_members(members)
        except Exception:  # one failing owner must not end the watch
            log.exception("handling the members of %s failed", self.path)
