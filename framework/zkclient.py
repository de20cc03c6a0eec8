"""One way to open a ZooKeeper client, for every dockyard process that uses one.

Kazoo, like ZooKeeper's Java client, waits `session timeout / servers listed` for a
server to answer its connect request. A ZooKeeper that is just starting can take a
connection and never answer it (seen about once in 25 restarts of ZooKeeper 3.8
here). With one server listed, that single attempt outlasts the whole session
timeout, and a leading master or scheduler, which must step down once ZooKeeper
has been unreachable for most of its session timeout, steps down although
ZooKeeper was back within a second, its session intact. Listing each server
several times keeps every attempt short, and the next one follows at once.

Between rounds of attempts kazoo backs off, by default doubling up to an hour: after
a ZooKeeper outage of a minute, clients came back up to a minute after ZooKeeper
did. Here the pause stops growing at RETRY_MAX_DELAY seconds.
"""
from __future__ import annotations

import math
from typing import Any

HANDSHAKE_SECONDS = 2.0  # the longest one connection attempt may wait for an answer
RETRY_MAX_DELAY = 2.0    # the longest pause between two rounds of connection attempts


def kazoo_client(hosts: str, timeout: float, **options: Any) -> Any:
    """A KazooClient on `hosts` ("h1:2181,h2:2181[/chroot]") with session timeout `timeout`
    seconds whose connection attempts give up after ~HANDSHAKE_SECONDS."""
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry

    servers_part, slash, chroot = hosts.partition("/")
    servers = [server.strip() for server in servers_part.split(",") if server.strip()]
    repeat = max(1, math.ceil(timeout / HANDSHAKE_SECONDS / max(len(servers), 1)))
    return KazooClient(hosts=",".join(servers * repeat) + slash + chroot, timeout=timeout,
                       connection_retry=KazooRetry(max_tries=-1, max_delay=RETRY_MAX_DELAY), **options)
