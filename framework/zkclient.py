"""One way to name and open a ZooKeeper client, for every dockyard process that uses one.

`parse_zk_url` reads the `zk://` URLs of every flag (`--zk`, `--master zk://...`) as
Mesos's `zookeeper::URL::parse` (src/zookeeper/url.hpp) does; `ZkUrl.client()` opens it.

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
from dataclasses import dataclass
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


# `zoo://` is pymesos's spelling of the same URL.
SCHEMES = ("zk://", "zoo://")


@dataclass(frozen=True)
class ZkUrl:
    """`zk://[user:password@]host:port[,host:port...]/path`, read."""

    servers: str                    # "h1:2181,h2:2181"
    path: str                       # "/mesos": no trailing slash; "/" for the root
    credentials: str | None = None  # "user:password", for ZooKeeper's digest scheme

    def client(self, timeout: float) -> Any:
        """A KazooClient on these servers (not started), authenticated when the URL says so."""
        auth = [("digest", self.credentials)] if self.credentials else None
        return kazoo_client(self.servers, timeout, auth_data=auth)


def parse_zk_url(url: str, default_path: str = "/") -> ZkUrl:
    """Read a `zk://` URL; `default_path` stands for an empty path. ValueError when it is none.

    As Mesos: the path starts at the first `/`, and credentials end at the last `@`."""
    text = url.strip()
    scheme = next((s for s in SCHEMES if text.startswith(s)), None)
    if scheme is None:
        raise ValueError(f"not a zk:// URL: {url!r}")
    authority, slash, path = text[len(scheme):].partition("/")
    credentials, at, servers = authority.rpartition("@")
    if not servers:
        raise ValueError(f"zk:// URL names no server: {url!r}")
    return ZkUrl(servers, "/" + path.rstrip("/") if slash and path.strip("/") else default_path,
                 credentials if at else None)
