"""ZooKeeper leader election for the embedded master, as a real Mesos master does it.

Each contending master creates an ephemeral sequential child `json.info_<seq>`
holding its MasterInfo JSON under the `--zk` path; the lowest sequence leads.
Schedulers and agents detect the leader from the same nodes (framework/mesos/
detector.py), so `zk://` detection is exercised against a real ZooKeeper.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError

from framework.local.master import Master
from framework.zkclient import kazoo_client

log = logging.getLogger("dockyard.master.zk")

PREFIX = "json.info_"


def parse_zk_url(url: str) -> tuple[str, str, tuple[str, str] | None]:
    """`zk://[user:pass@]h1:p1,h2:p2/path` -> (hosts, path, credentials)."""
    parts = urlsplit(url)
    if parts.scheme != "zk":
        raise ValueError(f"not a zk:// URL: {url!r}")
    netloc = parts.netloc
    credentials = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, _, password = auth.partition(":")
        credentials = (user, password)
    path = parts.path.rstrip("/") or "/"
    return netloc, path, credentials


class ZooKeeperContender:
    """Registers a master in ZooKeeper and tells it who leads (on its event loop)."""

    def __init__(self, master: Master, url: str, loop: asyncio.AbstractEventLoop,
                 timeout: float = 10.0) -> None:
        self.master = master
        self.loop = loop
        self.hosts, self.path, credentials = parse_zk_url(url)
        self._auth = [("digest", f"{credentials[0]}:{credentials[1]}")] if credentials else None
        self._timeout = timeout
        self.client: KazooClient | None = None
        self.node: str | None = None
        self._was_leading = False
        self._stopped = False
        self._fence: asyncio.TimerHandle | None = None  # armed while leading and cut off

    def start(self) -> None:
        """Connect and contend; raises when ZooKeeper cannot be reached (caller retries)."""
        client = kazoo_client(self.hosts, self._timeout, auth_data=self._auth)
        client.start(timeout=self._timeout)
        client.add_listener(self._on_state)
        self.client = client
        from framework.local.registry import ZooKeeperRegistry

        registry = ZooKeeperRegistry(client, self.path)
        self.loop.call_soon_threadsafe(setattr, self.master, "registry", registry)
        self._contend()

    def stop(self) -> None:
        self._stopped = True
        if self.client is None:
            return
        try:
            if self.node:
                self.client.delete(self.node)
        except Exception:  # the session may already be gone; ephemeral nodes die with it
            log.debug("could not delete %s", self.node, exc_info=True)
        self.client.stop()
        self.client.close()

    def _contend(self) -> None:
        assert self.client is not None
        self.client.ensure_path(self.path)
        data = json.dumps(self.master.info).encode()
        self.node = self.client.create(f"{self.path.rstrip('/')}/{PREFIX}", data,
                                       ephemeral=True, sequence=True)
        log.info("contending for leadership as %s", self.node)
        self.client.ChildrenWatch(self.path, self._on_children)

    def _on_children(self, children: list[str]) -> bool:
        if self._stopped:
            return False
        assert self.client is not None
        candidates = sorted(c for c in children if c.startswith(PREFIX))
        leader: dict[str, Any] | None = None
        for child in candidates:
            try:
                data, _ = self.client.get(f"{self.path.rstrip('/')}/{child}")
                leader = json.loads(data)
                break
            except (NoNodeError, ValueError):
                continue  # gone between listing and reading, or not ours to parse
        self.loop.call_soon_threadsafe(self._apply, leader)
        return True

    def _apply(self, leader: dict[str, Any] | None) -> None:
        self.master.set_leader(leader)
        if self._was_leading and not self.master.leading:
            # A real master that loses leadership aborts; its successor takes over.
            log.error("lost leadership: exiting")
            os._exit(1)
        self._was_leading = self.master.leading

    def _on_state(self, state: str) -> None:
        if self._stopped:
            return
        if state == KazooState.LOST:
            log.warning("ZooKeeper session lost")
            self.loop.call_soon_threadsafe(self._session_lost)
        elif state == KazooState.SUSPENDED:
            self.loop.call_soon_threadsafe(self._suspended)
        elif state == KazooState.CONNECTED:
            self.loop.call_soon_threadsafe(self._reconnected)

    def _suspended(self) -> None:
        """Cut off from ZooKeeper while leading: ZooKeeper may expire the session without our
        hearing of it and elect a successor, so stop before that can happen (a Mesos master
        forces the expiry itself on a timer); 90% of the session timeout is the limit."""
        if self._was_leading and self._fence is None:
            log.warning("ZooKeeper connection suspended while leading; fencing in %.1fs", self._timeout * 0.9)
            self._fence = self.loop.call_later(self._timeout * 0.9, self._fenced)

    def _reconnected(self) -> None:
        if self._fence is not None:
            self._fence.cancel()
            self._fence = None

    def _fenced(self) -> None:
        log.error("ZooKeeper unreachable for most of a session timeout while leading: exiting")
        os._exit(1)

    def _session_lost(self) -> None:
        if self._was_leading:
            log.error("ZooKeeper session lost while leading: exiting")
            os._exit(1)
        self.master.set_leader(None)
        # Re-contend once the client reconnects (kazoo retries on its own thread).
        self.loop.run_in_executor(None, self._recontend)

    def _recontend(self) -> None:
        try:
            assert self.client is not None
            self.client.retry(self._contend)
        except Exception:
            log.exception("could not re-contend after session loss")
