"""Find the leading Mesos master from a master URI.

`http(s)://host:port` and bare `host[:port]` name the master directly (a
non-leading master answers 307, which the scheduler driver follows). A
`zk://[user:pass@]host:port[,host:port]/path` URI is watched the way Mesos
detectors do it: every contending master owns an ephemeral sequential child
`json.info_<seq>` holding its MasterInfo JSON, and the lowest sequence leads.
Only reads; registering a master is the embedded master's job.
"""
from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from typing import Any, Callable
from urllib.parse import urlsplit

from framework.zkclient import SCHEMES, ZkUrl, parse_zk_url
from framework.zkgroup import GroupWatch, Member

log = logging.getLogger(__name__)

DEFAULT_PORT = 5050
LEADER_PREFIX = "json.info_"

Listener = Callable[["str | None"], None]


def parse_master_info(data: bytes | str) -> tuple[str, dict]:
    """Return ("host:port", info) from a MasterInfo JSON blob; ValueError when it names no master.

    Prefers `address.ip`, then `address.hostname`, then the legacy `ip`
    (IPv4 as a network-order uint32 read as a host integer), then `hostname`.
    """
    info = json.loads(data)
    if not isinstance(info, dict):
        raise ValueError("MasterInfo is not a JSON object")
    address = info.get("address") or {}
    if not isinstance(address, dict):
        raise ValueError("MasterInfo's address is not a JSON object")
    port = address.get("port") or info.get("port") or DEFAULT_PORT
    host = address.get("ip") or address.get("hostname")
    if not host and info.get("ip"):
        try:
            host = socket.inet_ntoa(struct.pack("<I", int(info["ip"])))
        except struct.error as error:
            raise ValueError(f"MasterInfo ip {info['ip']!r}: {error}") from error
    host = host or info.get("hostname")
    if not host:
        raise ValueError("MasterInfo has no address")
    return f"{host}:{int(port)}", info


def static_address(uri: str) -> str:
    """"host:port" from `http(s)://host:port[/...]` or `host[:port]`."""
    if "://" in uri:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported master URI scheme: {uri!r}")
        host = parts.hostname
        port = parts.port or DEFAULT_PORT
    else:
        host, _, port_text = uri.rpartition(":") if ":" in uri else (uri, "", "")
        port = int(port_text) if port_text else DEFAULT_PORT
    if not host:
        raise ValueError(f"master URI has no host: {uri!r}")
    return f"{host}:{port}"


class MasterDetector:
    """Tracks the leading master of one master URI; thread-safe.

    `leader()` answers "host:port" or None; `wait()` blocks until one is known;
    `on_change(cb)` calls `cb(leader_or_None)` on every change (for zk:// URIs from
    the thread that follows the masters, so callbacks must not block).
    """

    def __init__(self, uri: str, *, zk_timeout: float = 10.0) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listeners: list[Listener] = []
        self._leader: str | None = None
        self._info: dict | None = None
        self._closed = False
        self._zk: Any = None
        self._url: ZkUrl | None = None
        self._group: GroupWatch | None = None
        if uri.startswith(SCHEMES):
            self._start_zk(uri, zk_timeout)
        else:
            self._leader = static_address(uri)

    # -- public API ---------------------------------------------------------

    @property
    def is_zk(self) -> bool:
        return self._url is not None

    def leader(self) -> str | None:
        with self._lock:
            return self._leader

    def info(self) -> dict | None:
        """The leader's MasterInfo (zk:// only), None when unknown."""
        with self._lock:
            return self._info

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until a leader is known (or `timeout` passes); return it or None."""
        with self._changed:
            self._changed.wait_for(lambda: self._leader is not None or self._closed, timeout)
            return self._leader

    def wait_change(self, current: str | None, timeout: float | None = None) -> str | None:
        """Block until the leader differs from `current`; return the new value."""
        with self._changed:
            self._changed.wait_for(lambda: self._leader != current or self._closed, timeout)
            return self._leader

    def on_change(self, callback: Listener) -> None:
        with self._lock:
            self._listeners.append(callback)

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        if self._group is not None:
            self._group.stop()
        if self._zk is not None:
            try:
                self._zk.stop()
                self._zk.close()
            except Exception:  # closing a broken client must not mask the caller's error
                log.debug("closing ZooKeeper client failed", exc_info=True)

    def __enter__(self) -> "MasterDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ZooKeeper ----------------------------------------------------------

    def _start_zk(self, uri: str, timeout: float) -> None:
        self._url = parse_zk_url(uri)
        self._timeout = timeout
        self._zk = self._connect(self._url)
        if self._zk is None:
            # ZooKeeper unreachable now: keep trying in the background, as Mesos
            # detectors do; until then there is simply no known leader.
            threading.Thread(target=self._connect_until_closed, args=(self._url,), name="zk-detector-connect",
                             daemon=True).start()

    def _connect(self, url: ZkUrl) -> Any:
        """A started KazooClient following the masters, or None when ZooKeeper did not answer."""
        from kazoo.handlers.threading import KazooTimeoutError

        client = url.client(self._timeout)
        try:
            client.start(timeout=self._timeout)
        except KazooTimeoutError:
            log.warning("ZooKeeper at %s did not answer; retrying", url.servers)
            return None
        # A path that does not exist yet (no master ever started) is followed once it does.
        self._group = GroupWatch(client, url.path, LEADER_PREFIX, parse_master_info, self._on_masters).start()
        return client

    def _connect_until_closed(self, url: ZkUrl) -> None:
        delay = 0.5
        while not self._closed:
            client = self._connect(url)
            if client is not None:
                with self._lock:
                    if not self._closed:
                        self._zk = client
                        return
                if self._group is not None:
                    self._group.stop()
                client.stop()
                client.close()
                return
            with self._changed:
                self._changed.wait_for(lambda: self._closed, delay)
            delay = min(delay * 2, 10.0)

    def _on_masters(self, masters: list[Member[tuple[str, dict]]] | None) -> None:
        """The lowest readable `json.info_` member leads; None while our session is lost."""
        if masters:
            self._set(*masters[0].data)
        else:
            self._set(None, None)

    def _set(self, leader: str | None, info: dict | None) -> None:
        with self._changed:
            if self._closed:
                return
            changed = leader != self._leader
            self._leader, self._info = leader, info
            listeners = list(self._listeners)
            self._changed.notify_all()
        if changed:
            log.info("leading master: %s", leader or "none")
            for listener in listeners:
                try:
                    listener(leader)
                except Exception:
                    log.exception("master change listener failed")


def detect(master_uri: str, **kwargs: Any) -> MasterDetector:
    """A detector for `master_uri` (see `MasterDetector`)."""
    return MasterDetector(master_uri, **kwargs)
