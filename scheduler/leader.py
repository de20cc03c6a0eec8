"""Leader election among `dockyard scheduler --zk` instances, and the API of the others.

Why: several schedulers share one ZooKeeper store, but only one may subscribe
to Mesos and act on it, or two would launch the same instance twice. The
others stand by, answer every REST call by forwarding it to the leader (as
Marathon does), and take over when it dies.

Recipe (ZooKeeper's own, no kazoo lock): every instance creates an ephemeral
sequential node `<path>/leader/member_<seq>` whose data is its advertised
address as JSON; the lowest sequence leads. Each instance watches the
children, so `current_leader()` is always what ZooKeeper says.

A dead leader's node lives until its session expires (`session_timeout`).
To fail over faster than that, the instance next in line probes the leader's
HTTP port: when the address refuses connections, or answers as another
instance, three times in a row, the leader process is gone, and the
successor deletes its stale node. A slow or unreachable leader (timeouts)
is never pre-empted: only ZooKeeper expires those.

Losing leadership (node gone, session lost, ZooKeeper unreachable for a whole
session timeout) stops the instance from acting by exiting the process, as
Marathon does; its supervisor starts it again as a follower.

Security: a follower is no open relay. It authenticates every caller itself
with the same gate as the leader's API, keeps its local paths' decisions
(`/ping` and `/health` open, `/metrics` and `GET /v2/leader` for viewers,
`DELETE /v2/leader` for admins), and forwards the caller's own `Authorization`
header unchanged, never one of its own: the leader authenticates the caller
again and decides what that caller may do. With TLS on, it forwards (and
probes) over HTTPS, verifying the leader with the CA and presenting its own
certificate.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState

from framework.errors import LeadershipError
from framework.security.authn import Unauthorized
from framework.security.gate import OPEN_GATE, Access, Forbidden, Gate
from framework.security.peer import Peer
from framework.store.zk import parse_zk_url
from framework.zkclient import kazoo_client

log = logging.getLogger("dockyard.leader")

MEMBER_PREFIX = "member_"
SESSION_TIMEOUT = 10.0          # seconds; ZooKeeper may round it to its tick bounds
PROBE_INTERVAL = 0.5            # successor's probe of the leader's HTTP port
PROBE_FAILURES = 3              # consecutive "nobody of that identity there" before take-over
INSTANCE_HEADER = "X-Dockyard-Instance"
VIA_HEADER = "X-Marathon-Via"
LEADER_HEADER = "X-Marathon-Leader"


@dataclass(frozen=True)
class Member:
    """One contending instance, as stored in its node."""

    node: str          # node name, `member_0000000003`
    address: str       # "ip:port" of its REST API
    instance: str      # random id of the process (tells a restarted process on the same port apart)


def _sequence(node: str) -> int:
    return int(node[len(MEMBER_PREFIX):]) if node[len(MEMBER_PREFIX):].isdigit() else 1 << 62


def _members(client: KazooClient, path: str) -> list[Member]:
    """Every readable member under `path`, lowest sequence first."""
    found = []
    names = sorted((c for c in client.get_children(path) if c.startswith(MEMBER_PREFIX)), key=_sequence)
    for name in names:
        try:
            data, _ = client.get(f"{path}/{name}")
            info = json.loads(data)
            found.append(Member(name, str(info["address"]), str(info.get("instance", ""))))
        except NoNodeError:
            continue  # gone between listing and reading
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable member %s/%s", path, name)
    return found


def current_leader(zk_url: str, timeout: float = 10.0) -> str | None:
    """"ip:port" of the leading scheduler under `zk_url`, None when nobody leads (one-shot read)."""
    hosts, root = parse_zk_url(zk_url)
    client = kazoo_client(hosts, timeout)
    try:
        client.start(timeout=timeout)
        members = _members(client, f"{root}/leader")
    except NoNodeError:
        return None
    except (KazooException, KazooTimeoutError) as error:
        raise LeadershipError(f"cannot read the leader from {zk_url}: {error}") from error
    finally:
        client.stop()
        client.close()
    return members[0].address if members else None


def lost_leadership(reason: str) -> None:
    """Stop acting by exiting (code 3), as Marathon does; a supervisor restarts us as a follower."""
    log.error("lost leadership (%s): exiting so that no two schedulers act", reason)
    logging.shutdown()
    os._exit(3)


class Election:
    """This instance's candidacy; thread-safe; callbacks run on their own threads."""

    def __init__(self, zk_url: str, address: str, *, session_timeout: float = SESSION_TIMEOUT,
                 on_elected: Callable[[], None] | None = None,
                 on_lost: Callable[[str], None] = lost_leadership,
                 fast_takeover: bool = True, scheme: str = "http",
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.hosts, root = parse_zk_url(zk_url)
        self.path = f"{root}/leader"
        self.address = address
        self.scheme = scheme                # how every instance's API is served (all alike)
        self.ssl_context = ssl_context      # for the take-over probe over HTTPS
        self.instance = uuid.uuid4().hex
        self.session_timeout = session_timeout
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.fast_takeover = fast_takeover
        self.client = kazoo_client(self.hosts, session_timeout)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._node: str | None = None
        self._members: list[Member] = []
        self._leading = False
        self._lost = False
        self._closed = False
        self._fence: threading.Timer | None = None
        self._probe_target: Member | None = None
        self._probe_wakeup = threading.Event()
        self._refresh_needed = threading.Event()
        self.elected_at: float | None = None

    # -- public ----------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> "Election":
        """Connect and contend; raises LeadershipError when ZooKeeper cannot be reached."""
        try:
            self.client.start(timeout=timeout)
            self.client.add_listener(self._on_state)
            self.client.ensure_path(self.path)
            self._create_node()
            threading.Thread(target=self._refresh_loop, name="leader-refresh", daemon=True).start()
            self.client.ChildrenWatch(self.path, self._on_children)
        except (KazooException, KazooTimeoutError) as error:
            self.client.stop()
            raise LeadershipError(f"cannot contend in {self.hosts}{self.path}: {error}") from error
        if self.fast_takeover:
            threading.Thread(target=self._probe_loop, name="leader-probe", daemon=True).start()
        log.info("contending for leadership as %s (%s)", self._node, self.address)
        return self

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._leading and not self._lost

    def leader(self) -> Member | None:
        """The leading member as ZooKeeper last told us (None: nobody leads, or not known yet)."""
        with self._lock:
            return self._members[0] if self._members else None

    def leader_address(self) -> str | None:
        member = self.leader()
        return member.address if member else None

    def url_of(self, address: str) -> str:
        return f"{self.scheme}://{address}"

    def members(self) -> list[Member]:
        with self._lock:
            return list(self._members)

    def wait_elected(self, timeout: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._leading or self._closed, timeout) and self._leading

    def abdicate(self) -> None:
        """Give leadership up on purpose (`DELETE /v2/leader`): same path as losing it."""
        self._lose("abdicated")

    def close(self) -> None:
        """Leave the election (graceful stop): the node goes, the next instance leads at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._probe_wakeup.set()
        self._refresh_needed.set()
        if self._fence:
            self._fence.cancel()
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # closing a broken client must not hide why we are closing
            log.debug("closing the election's ZooKeeper client failed", exc_info=True)

    # -- ZooKeeper callbacks (kazoo threads: never block) -------------------------

    def _create_node(self) -> None:
        data = json.dumps({"address": self.address, "instance": self.instance, "pid": os.getpid(),
                           "hostname": socket.gethostname()}).encode()
        created = self.client.create(f"{self.path}/{MEMBER_PREFIX}", data, ephemeral=True, sequence=True)
        with self._lock:
            self._node = created.rsplit("/", 1)[1]

    def _on_children(self, children: list[str]) -> bool | None:
        if self._closed:
            return False
        # Reading the members' data is a round trip per child: do it off the event thread,
        # in one worker, so that an older view can never overwrite a newer one.
        self._refresh_needed.set()
        return None

    def _refresh_loop(self) -> None:
        while not self._closed and not self._lost:
            self._refresh_needed.wait()
            self._refresh_needed.clear()
            if not self._closed and not self._refresh():
                # ZooKeeper did not answer (it may be restarting): the change that woke us
                # must not be missed, so read again shortly.
                time.sleep(0.5)
                self._refresh_needed.set()

    def _refresh(self) -> bool:
        """Re-read the members and act on what changed; False when ZooKeeper did not answer."""
        try:
            members = _members(self.client, self.path)
        except (KazooException, KazooTimeoutError) as error:
            log.warning("cannot read the election members: %s", error)
            return False
        elected = lost = recreate = False
        with self._changed:
            if self._closed or self._lost:
                return True
            names = [m.node for m in members]
            self._members = members
            if self._node not in names:
                if self._leading:
                    lost = True
                else:
                    recreate = True  # our session was lost while following: stand in line again
            elif names[0] == self._node and not self._leading:
                self._leading = elected = True
                self.elected_at = time.time()
            elif self._leading and names[0] != self._node:
                lost = True
            position = names.index(self._node) if self._node in names else -1
            self._probe_target = members[0] if position == 1 else None
            self._changed.notify_all()
        self._probe_wakeup.set()
        if lost:
            self._lose("our node is no longer the first")
        elif recreate:
            try:
                self._create_node()
                log.info("re-entered the election as %s", self._node)
            except (KazooException, KazooTimeoutError) as error:
                log.warning("cannot re-enter the election yet: %s", error)
                return False
        elif elected:
            log.info("elected leader (%s, node %s)", self.address, self._node)
            if self.on_elected is not None:
                threading.Thread(target=self.on_elected, name="leader-elected", daemon=True).start()
        leader = members[0].address if members else "none"
        log.debug("leader: %s; members: %s", leader, [m.node for m in members])
        return True

    def _on_state(self, state: str) -> None:
        if self._closed:
            return
        if state == KazooState.SUSPENDED:
            if self.is_leader:
                if self._fence:
                    self._fence.cancel()
                # ZooKeeper may expire us without our hearing of it: stop acting when a whole
                # session timeout has passed unheard, before a successor can have been elected.
                log.warning("ZooKeeper connection suspended while leading; fencing in %.1fs",
                            self.session_timeout)
                self._fence = threading.Timer(self.session_timeout * 0.9, self._lose,
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

    def _lose(self, reason: str) -> None:
        with self._changed:
            if self._lost or self._closed:
                return
            self._lost = True
            was_leading = self._leading
            self._leading = False
            self._changed.notify_all()
        log.warning("leadership lost: %s", reason)
        try:
            if self._node:
                self.client.delete(f"{self.path}/{self._node}")
        except Exception:  # the session may be gone already; the node goes with it
            log.debug("could not delete our member node", exc_info=True)
        if was_leading or reason == "abdicated":
            self.on_lost(reason)

    # -- fast take-over ---------------------------------------------------------------

    def _probe_loop(self) -> None:
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
            if probe_gone(target, ssl_context=self.ssl_context if self.scheme == "https" else None):
                failures += 1
                if failures >= PROBE_FAILURES:
                    log.warning("leader %s (%s) is gone (its port refuses us): taking its node away",
                                target.address, target.node)
                    try:
                        self.client.delete(f"{self.path}/{target.node}")
                    except NoNodeError:
                        pass
                    except (KazooException, KazooTimeoutError) as error:
                        log.warning("cannot remove the dead leader's node: %s", error)
                    failures = 0
            else:
                failures = 0
            self._probe_wakeup.wait(PROBE_INTERVAL)
            self._probe_wakeup.clear()


def probe_gone(member: Member, timeout: float = 1.0, ssl_context: ssl.SSLContext | None = None) -> bool:
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


# -- the HTTP side ------------------------------------------------------------------------

Send = Callable[[dict], Any]
Receive = Callable[[], Any]
ASGIApp = Callable[[dict, Receive, Send], Any]

# Answered by every instance itself, leader or not, with the app's decisions for them
# (scheduler/api/app.py); (path, None) holds for every method.
LOCAL_ACCESS: dict[tuple[str, str | None], Access] = {
    ("/ping", None): Access.OPEN, ("/health", None): Access.OPEN, ("/metrics", None): Access.READ,
    ("/v2/leader", "GET"): Access.READ, ("/v2/leader", "HEAD"): Access.READ,
    ("/v2/leader", "DELETE"): Access.WRITE,
}


def proxy_access(path: str, method: str) -> Access:
    """What the proxy asks of a caller: its local paths' decisions; anything it passes on needs an
    authenticated caller (READ), and the leader decides again what that caller may do."""
    return LOCAL_ACCESS.get((path, None)) or LOCAL_ACCESS.get((path, method)) or Access.READ

# Not copied from the leader's answer: we decode its body, and we stamp our own identity.
FORWARD_DROPPED = {"content-encoding", INSTANCE_HEADER.lower(), LEADER_HEADER.lower()}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


class LeaderProxy:
    """ASGI front of an HA scheduler: the real API on the leader, a forwarder elsewhere.

    Until this instance leads, `inner` is None and every API call goes to the
    leader (SSE `/v2/events` and `/v1/events` get a 307 instead: a long stream should not hang
    on a follower). Once elected, `attach(app, ready)` installs the leader's
    app; calls that arrive while it starts wait for it (bounded) rather than
    fail.
    """

    def __init__(self, election: Election, *, gate: Gate = OPEN_GATE, peer: Peer | None = None,
                 start_wait: float = 30.0, forward_timeout: float = 60.0) -> None:
        import httpx

        self.election = election
        self.gate = gate
        self.inner: ASGIApp | None = None
        self.ready: Callable[[], dict] = lambda: {}
        self.start_wait = start_wait
        # TLS only: the caller's own Authorization goes to the leader, never our principal.
        context = (peer or Peer()).ssl_context()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(forward_timeout, connect=3.0),
                                         verify=context if context is not None else True)

    def attach(self, app: ASGIApp, ready: Callable[[], dict]) -> None:
        """Serve `app` from now on; `ready()` says whether the leader may act (health JSON)."""
        self.ready = ready
        self.inner = app

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        send = self._stamped(send)
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        refusal = self._refusal(scope, path, method)
        if refusal is not None:
            await self.gate.render(refusal)(scope, receive, send)
        elif path == "/ping":
            await _respond(send, 200, b"pong", "text/plain")
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            await _respond(send, 200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path == "/v2/leader" and method == "GET":
            leader = self.election.leader_address()
            if leader is None:
                await _json(send, 404, {"message": "There is no leader"})
            else:
                await _json(send, 200, {"leader": leader})
        elif path == "/v2/leader" and method == "DELETE" and self.election.is_leader:
            await _json(send, 200, {"message": "Leadership abdicated"})
            asyncio.get_running_loop().call_later(0.2, self.election.abdicate)
        elif path == "/health":
            await self._health(send)
        elif self.election.is_leader:
            await self._serve_leader(scope, receive, send)
        else:
            await self._forward(scope, receive, send)

    def _refusal(self, scope: dict, path: str, method: str) -> Unauthorized | Forbidden | None:
        """Authenticate (and, on our own paths, authorize) the caller before anything else."""
        authorization = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        decision = self.gate.check(proxy_access(path, method), authorization)
        return decision if isinstance(decision, (Unauthorized, Forbidden)) else None

    def _stamped(self, send: Send) -> Send:
        """Every answer says which process gave it and who leads (Marathon's header)."""
        extra = [(INSTANCE_HEADER.lower().encode(), self.election.instance.encode())]
        leader = self.election.leader_address()
        if leader:
            extra.append((LEADER_HEADER.lower().encode(), self.election.url_of(leader).encode()))

        async def stamped(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)
        return stamped

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _health(self, send: Send) -> None:
        if self.election.is_leader:
            state = {"role": "leader", **(self.ready() if self.inner is not None else {"subscribed": False})}
            ok = bool(state.get("subscribed"))
        else:
            state = {"role": "standby", "leader": self.election.leader_address()}
            ok = True  # a healthy standby: connected and waiting
        await _json(send, 200 if ok else 503, state)

    async def _serve_leader(self, scope: dict, receive: Receive, send: Send) -> None:
        deadline = time.monotonic() + self.start_wait
        while self.inner is None and self.election.is_leader and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the new leader is loading its state: hold the call briefly
        if self.inner is None:
            await _json(send, 503, {"message": "The leader is starting; try again"})
            return
        await self.inner(scope, receive, send)

    async def _forward(self, scope: dict, receive: Receive, send: Send) -> None:
        import httpx

        leader = self.election.leader_address()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        if leader is None or leader == self.election.address:
            await _json(send, 503, {"message": "Could not determine the current leader"})
            return
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        target = self.election.url_of(leader) + path + (f"?{query}" if query else "")
        if scope["path"].startswith(("/v2/events", "/v1/events")):
            await _respond(send, 307, b"", "text/plain", [(b"location", target.encode())])
            return
        if any(k.lower() == VIA_HEADER.lower() for k, _ in headers):
            # A forwarded call reached another non-leader: leadership is moving; do not loop.
            await _json(send, 503, {"message": "Leader is changing; try again"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        out_headers = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        out_headers.append((VIA_HEADER, f"1.1 {self.election.address}"))
        request = self._client.build_request(scope["method"], target, headers=out_headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            await _json(send, 503, {"message": f"Leader {leader} is not reachable: {error}"})
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k.encode("latin-1"), v.encode("latin-1"))
                                    for k, v in response.headers.multi_items()
                                    if k.lower() not in HOP_BY_HOP | FORWARD_DROPPED]})
            async for chunk in response.aiter_bytes():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _respond(send: Send, status: int, body: bytes, content_type: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, value: Any) -> None:
    await _respond(send, status, json.dumps(value).encode(), "application/json")


# -- running an HA scheduler ----------------------------------------------------------------

def contend(election: Election, server: Any) -> None:
    """Join the election once our port answers (the take-over probe relies on it); retry until
    ZooKeeper lets us in or the server stops (scheduler/main.py `serve` runs this on a thread)."""
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    while not server.should_exit:
        try:
            election.start()
            return
        except LeadershipError as error:
            log.warning("%s; retrying", error)
            time.sleep(1.0)
