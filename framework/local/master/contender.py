"""The embedded master's candidacy in ZooKeeper, as a real Mesos master's
(src/master/contender/zookeeper.cpp): a `json.info_<seq>` member holding its MasterInfo JSON
under the `--zk` path, in the one election every dockyard process uses (framework/election.py).

Schedulers and agents detect the leader from the same nodes (framework/mesos/detector.py),
so `zk://` detection is exercised against a real ZooKeeper.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from framework.election import Election
from framework.local.master.core import Master
from framework.local.master.registry import ZooKeeperRegistry
from framework.mesos.detector import LEADER_PREFIX, parse_master_info
from framework.zkclient import parse_zk_url
from framework.zkgroup import Member

log = logging.getLogger("dockyard.master.zk")


def lost_leadership(reason: str) -> None:
    """A real master that loses leadership aborts; a supervisor restarts it as a candidate."""
    log.error("lost leadership (%s): exiting", reason)
    logging.shutdown()
    os._exit(1)


class ZooKeeperContender:
    """Registers a master in ZooKeeper and tells it, on its event loop, who leads."""

    def __init__(self, master: Master, url: str, loop: asyncio.AbstractEventLoop,
                 timeout: float = 10.0) -> None:
        self.master = master
        self.loop = loop
        zk = parse_zk_url(url)
        # Read as every Mesos detector reads it, so the master leads only from a node they follow.
        self.election: Election[tuple[str, dict[str, Any]]] = Election(
            zk, LEADER_PREFIX, json.dumps(master.info).encode(), parse_master_info, session_timeout=timeout,
            on_change=self._on_change, on_lost=lost_leadership)
        # The registry shares the election's session; it is in place before the master can lead.
        registry = ZooKeeperRegistry(self.election.client, zk.path)
        loop.call_soon_threadsafe(setattr, master, "registry", registry)

    def start(self) -> None:
        """Connect and contend; LeadershipError when ZooKeeper cannot be reached (call again)."""
        self.election.start()

    def stop(self) -> None:
        self.election.close()

    def _on_change(self, members: list[Member[tuple[str, dict[str, Any]]]] | None) -> None:
        leader = members[0].data[1] if members else None  # None: nobody leads, or not known
        self.loop.call_soon_threadsafe(self.master.set_leader, leader)
