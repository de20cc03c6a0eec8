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

from framework.zkclient import kazoo_client

log = logging.getLogger(__name__)

DEFAULT_PORT = 5050
LEADER_PREFIX = "json.info_"

Listener = Callable[["str | None"], None]


def parse_master_info(data: bytes | str) -> tuple[str, dict]:
    """Return ("host:port", info) from a MasterInfo JSON blob.

    Prefers `address.ip`, then `address.hostname`, then the legacy `ip`
    (IPv4 as a network-order uint32 read as a host integer), then `hostname`.
    """
    info = json.loads(data)
    address = info.get("address") or {}
    port = address.get("port") or info.get("port") or DEFAULT_PORT
    host = address.get("ip") or address.get("hostname")
    if not host and info.get("ip"):
        host = socket.inet_ntoa(struct.pack("<I", int(info["ip"])))
    host = host or info.get("hostname")
    if not host:
        raise ValueError("MasterInfo has no address")
    return f"{host}:{int(port)}", info


def sequence_of(child: str) -> int | None:
    """Sequence number of a `json.info_<seq>` child, None for anything else."""
    if not child.startswith(LEADER_PREFIX):
        return None
    digits = child[len(LEADER_PREFIX):]
    return int(digits) if digits.isdigit() else None


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
    `on_change(cb)` calls `cb(leader_or_None)` on every change (from a kazoo
    thread for zk:// URIs, so callbacks must not block).
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
        self._zk_args: dict | None = None
        self._client_for_watch: Any = None
        self._watching_children = False
        if uri.startswith(("zk://", "zoo://")):
            self._start_zk(uri, zk_timeout)
        else:
            self._leader = static_address(uri)

    # -- public API ---------------------------------------------------------

    @property
    def is_zk(self) -> bool:
        return self._zk_args is not None

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
        rest = uri.split("://", 1)[1]
        auth = None
        if "@" in rest.split("/", 1)[0]:
            credentials, rest = rest.split("@", 1)
            auth = [("digest", credentials)]
        hosts, slash, path = rest.partition("/")
        self._path = "/" + path.rstrip("/") if slash and path.strip("/") else "/"
        self._zk_args = {"hosts": hosts, "timeout": timeout, "auth_data": auth}
        self._zk = self._connect()
        if self._zk is None:
            # ZooKeeper unreachable now: keep trying in the background, as Mesos
            # detectors do; until then there is simply no known leader.
            threading.Thread(target=self._connect_until_closed, name="zk-detector-connect",
                             daemon=True).start()

    def _connect(self) -> Any:
        """A started KazooClient watching the path, or None when ZooKeeper did not answer."""
        from kazoo.handlers.threading import KazooTimeoutError
        from kazoo.protocol.states import KazooState

        client = kazoo_client(**self._zk_args)

        expired = threading.Event()

        def on_state(state: str) -> None:
            if state == KazooState.LOST:
                # Session gone: ephemeral nodes we saw may be stale. No leader until the
                # new session has read them again.
                expired.set()
                self._set(None, None)
            elif state == KazooState.CONNECTED and expired.is_set():
                # The watches re-arm by themselves but stay silent when the children did
                # not change (the same master still leads): read them here (a listener
                # must not block kazoo's connection thread).
                expired.clear()
                client.handler.spawn(self._reread, client)

        client.add_listener(on_state)
        try:
            client.start(timeout=self._zk_args["timeout"])
        except KazooTimeoutError:
            log.warning("ZooKeeper at %s did not answer; retrying", self._zk_args["hosts"])
            return None
        self._client_for_watch = client
        # A DataWatch fires on creation too, so a path that does not exist yet
        # (no master ever started) is picked up when the first master registers.
        client.DataWatch(self._path, self._on_path)
        return client

    def _connect_until_closed(self) -> None:
        delay = 0.5
        while not self._closed:
            client = self._connect()
            if client is not None:
                with self._lock:
                    if not self._closed:
                        self._zk = client
                        return
                client.stop()
                client.close()
                return
            with self._changed:
                self._changed.wait_for(lambda: self._closed, delay)
            delay = min(delay * 2, 10.0)

    def _reread(self, client: Any) -> None:
        from kazoo.exceptions import KazooException

        try:
            children = client.get_children(self._path)
        except KazooException as error:  # path gone (its DataWatch says so) or cut off again
            log.info("cannot re-read masters in %s after a new session: %s", self._path, error)
            return
        self._on_children(children)

    def _on_path(self, data: Any, stat: Any) -> bool | None:
        if self._closed:
            return False
        if stat is None:
            self._watching_children = False
            self._set(None, None)
            return None
        if not self._watching_children:
            self._watching_children = True
            self._client_for_watch.ChildrenWatch(self._path, self._on_children)
        return None

    def _on_children(self, children: list[str]) -> bool | None:
        if self._closed:
            return False
        contenders = sorted((seq, child) for child in children
                            if (seq := sequence_of(child)) is not None)
        for _, child in contenders:
            node = self._path.rstrip("/") + "/" + child
            try:
                data, _ = self._client_for_watch.get(node)
                leader, info = parse_master_info(data)
            except Exception as error:  # node gone in between, or garbage: try the next one
                log.warning("cannot read master info from %s: %s", node, error)
                continue
            self._set(leader, info)
            return None
        self._set(None, None)
        return None

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
