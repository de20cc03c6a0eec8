"""How the scheduler's HTTP server bounds its clients: connections, slow headers, header size.

uvicorn accepts every connection and waits for its headers forever: some 20,000
connections that sent nothing held as many file descriptors until the scheduler
could open no more (not even its store). The protocol below, uvicorn's httptools
protocol with three checks added, keeps each client and all of them together
under `--max-connections-per-client` and `--max-connections` (a connection past
either is answered 503 and closed at once), gives a request `--header-timeout`
seconds to send its headers (408, then closed) and refuses headers larger than
`max_header_bytes` (431). Bodies are bounded by `framework.bodies.BodyLimit`;
idle keep-alive connections by uvicorn's `timeout_keep_alive`.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from scheduler.limits import Limits

log = logging.getLogger("dockyard.scheduler.http")

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def _answer(status: int, message: str) -> bytes:
    body = json.dumps({"message": message, "details": [{"path": "/", "errors": [message]}]}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, REASONS[status], len(body))) + body


def guarded_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol class, bounded by `limits` (one class per server: it holds
    that server's count of connections per client)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    per_client: Counter[str] = Counter()
    warned: set[str] = set()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _client_key: str | None = None
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _oversized = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            key = self.client[0] if self.client else ""
            if len(self.connections) > limits.max_connections:
                self._refuse(503, f"more than {limits.max_connections} connections: try again later", key)
                return
            if per_client[key] >= limits.max_connections_per_client:
                self._refuse(503, f"more than {limits.max_connections_per_client} connections from {key}", key)
                return
            per_client[key] += 1
            self._client_key = key
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            key, self._client_key = self._client_key, None
            if key is not None:
                per_client[key] -= 1
                if per_client[key] <= 0:
                    del per_client[key]
                    warned.discard(key)
            super().connection_lost(exc)

        def _refuse(self, status: int, message: str, key: str) -> None:
            if key not in warned:  # once per client while it is over: a flood must not flood the log
                warned.add(key)
                log.warning("refusing a connection from %s: %s", key or "?", message)
            self.transport.write(_answer(status, message))
            self.transport.close()

        # -- slow headers ------------------------------------------------------------
        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(limits.header_timeout, self._headers_too_slow)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(_answer(408, f"request headers not received within {limits.header_timeout:g} s"))
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        # -- header size -------------------------------------------------------------
        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > limits.max_header_bytes:
                self._oversized = True
                raise ValueError("request headers too large")  # the parser stops; uvicorn answers 400

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if not self._oversized:
                super().send_400_response(msg)
                return
            self.transport.write(_answer(431, f"request line and headers larger than {limits.max_header_bytes} bytes"))
            self.transport.close()

    return GuardedHttpToolsProtocol


def uvicorn_options(limits: Limits) -> dict[str, Any]:
    """The uvicorn.Config options that carry `limits` (with `guarded_protocol` as `http`)."""
    return {"http": guarded_protocol(limits), "limit_concurrency": limits.max_connections + 1,
            "timeout_keep_alive": limits.keep_alive_timeout,
            "h11_max_incomplete_event_size": limits.max_header_bytes}
