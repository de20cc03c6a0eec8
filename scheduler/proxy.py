"""The API of an HA scheduler (`--zk`): the real app on the leader, a forwarder on the others.

A follower answers every REST call by forwarding it to the leader (as Marathon does) and
gives back its answer unchanged; it answers `/ping`, `/health`, `/metrics` and
`/v2/leader` itself (docs/ha.md).

Security: a follower is no open relay. It authenticates every caller itself with the
same gate as the leader's API, keeps its local paths' decisions (`/ping` and `/health`
open, `/metrics` and `GET /v2/leader` for viewers, `DELETE /v2/leader` for admins), and
forwards the caller's own `Authorization` header unchanged, never one of its own: the
leader authenticates the caller again and decides what that caller may do. With TLS on,
it forwards over HTTPS, verifying the leader with the CA and presenting its own
certificate.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framework.security.authn import Unauthorized
from framework.security.gate import OPEN_GATE, Access, Forbidden, Gate
from framework.security.peer import Peer
from scheduler.api.common import ping_answer
from scheduler.leader import INSTANCE_HEADER, SchedulerElection

VIA_HEADER = "X-Marathon-Via"
LEADER_HEADER = "X-Marathon-Leader"


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

    def __init__(self, election: SchedulerElection, *, gate: Gate = OPEN_GATE, peer: Peer | None = None,
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            accept = dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1") or None
            status, body, media_type = ping_answer(accept)
            await _respond(send, status, body, media_type or "text/plain")
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

    def _refusal(self, scope: Scope, path: str, method: str) -> Unauthorized | Forbidden | None:
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

        async def stamped(message: Message) -> None:
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

    async def _serve_leader(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = time.monotonic() + self.start_wait
        while self.inner is None and self.election.is_leader and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the new leader is loading its state: hold the call briefly
        if self.inner is None:
            await _json(send, 503, {"message": "The leader is starting; try again"})
            return
        await self.inner(scope, receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
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
