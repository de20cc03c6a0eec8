"""Which of the `dockyard scheduler --zk` instances leads (docs/ha.md).

Why: several schedulers share one ZooKeeper store, but only one may subscribe to
Mesos and act on it, or two would launch the same instance twice. The others stand
by, forward the API to the leader (scheduler/proxy.py) and take over when it dies.

Each instance is a `member_<seq>` member of `<--zk path>/leader` in the election that
the masters use too (framework/election.py); its data is its advertised address and a
random id of the process, as JSON. The lowest member leads.

A dead leader's node lives until its session expires (`SESSION_TIMEOUT`). To fail over
faster, the instance next in line probes the leader's `/ping`: refused, or answered by
another process, three times in a row, the leader process is gone, and its node is
removed. A slow or unreachable leader (timeouts) is never pre-empted: only ZooKeeper
expires those.

Losing leadership stops the instance from acting by exiting the process, as Marathon
does; its supervisor starts it again as a follower.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from framework.election import Election
from framework.errors import LeadershipError
from framework.store.zk import DEFAULT_ROOT
from framework.zkclient import ZkUrl, parse_zk_url
from framework.zkgroup import Member, read_members

log = logging.getLogger("dockyard.leader")

MEMBER_PREFIX = "member_"
SESSION_TIMEOUT = 10.0          # seconds; ZooKeeper may round it to its tick bounds
INSTANCE_HEADER = "X-Dockyard-Instance"  # on every answer: which process gave it


@dataclass(frozen=True)
class Instance:
    """A contending scheduler, as its member node says."""

    address: str       # "ip:port" of its REST API
    instance: str      # random id of the process (tells a restarted process on the same port apart)


def read_instance(data: bytes) -> Instance:
    info = json.loads(data)
    return Instance(str(info["address"]), str(info.get("instance", "")))


def election_url(zk_url: str) -> ZkUrl:
    """Where the instances contend: `leader` under the state's path."""
    url = parse_zk_url(zk_url, default_path=DEFAULT_ROOT)
    return replace(url, path=f"{url.path}/leader")


def current_leader(zk_url: str, timeout: float = 10.0) -> str | None:
    """"ip:port" of the leading scheduler under `zk_url`, None when nobody leads (one-shot read)."""
    url = election_url(zk_url)
    client = url.client(timeout)
    try:
        client.start(timeout=timeout)
        members = read_members(client, url.path, MEMBER_PREFIX, read_instance)
    except NoNodeError:
        return None
    except (KazooException, KazooTimeoutError) as error:
        raise LeadershipError(f"cannot read the leader from {zk_url}: {error}") from error
    finally:
        client.stop()
        client.close()
    return members[0].data.address if members else None


def lost_leadership(reason: str) -> None:
    """Stop acting by exiting (code 3), as Marathon does; a supervisor restarts us as a follower."""
    log.error("lost leadership (%s): exiting so that no two schedulers act", reason)
    logging.shutdown()
    os._exit(3)


class SchedulerElection(Election[Instance]):
    """This instance's candidacy, with what its API says of it (who leads, at which URL)."""

    def __init__(self, zk_url: str, address: str, *, session_timeout: float = SESSION_TIMEOUT,
                 on_elected: Callable[[], None] | None = None,
                 on_lost: Callable[[str], None] = lost_leadership,
                 fast_takeover: bool = True, scheme: str = "http",
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.address = address
        self.scheme = scheme                # how every instance's API is served (all alike)
        self.instance = uuid.uuid4().hex
        self._probe_context = ssl_context if scheme == "https" else None
        data = json.dumps({"address": address, "instance": self.instance, "pid": os.getpid(),
                           "hostname": socket.gethostname()}).encode()
        super().__init__(election_url(zk_url), MEMBER_PREFIX, data, read_instance,
                         session_timeout=session_timeout, on_elected=on_elected, on_lost=on_lost,
                         gone=self._gone if fast_takeover else None)

    def leader_address(self) -> str | None:
        member = self.leader()
        return member.data.address if member else None

    def url_of(self, address: str) -> str:
        return f"{self.scheme}://{address}"

    def _gone(self, member: Member[Instance]) -> bool:
        return probe_gone(member.data, ssl_context=self._probe_context)


def probe_gone(member: Instance, timeout: float = 1.0, ssl_context: ssl.SSLContext | None = None) -> bool:
    """True only when the member's process is surely not serving: refused, or another instance there.

    A timeout or a slow answer is *not* proof (a partition or a busy leader looks
    the same); those wait for ZooKeeper to expire the session. `/ping` is open, so
    the probe needs no credentials; over HTTPS it verifies the member (`ssl_context`).
    """
    host, _, port = member.address.rpartition(":")
    connection: http.client.HTTPConnection
    if ssl_context is not None:
        connection = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=ssl_context)
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", "/ping")
        response = connection.getresponse()
        response.read()
        instance = response.getheader(INSTANCE_HEADER)
        return instance is not None and instance != member.instance
    except ConnectionRefusedError:
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def contend(election: SchedulerElection, server: Any) -> None:
    """Join the election once our port answers (the take-over probe relies on it); retry until
    ZooKeeper lets us in or the server stops."""
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    while not server.should_exit:
        try:
            election.start()
            return
        except LeadershipError as error:
            log.warning("%s; retrying", error)
            time.sleep(1.0)
