"""How a component calls the others: its own identity and its TLS setting, in one place.

The scheduler reads the master's `/state` and the agents' `/state` and `/files`,
and a follower forwards to the leading scheduler; each of those calls must
present the caller's principal (HTTP Basic) and, when the process runs TLS,
speak HTTPS, verify the peer with the configured CA and present the process's
own certificate (mutual TLS), as libprocess does for every socket of a process
(3rdparty/libprocess/src/openssl.cpp; docs/security.md).

    peer = Peer(principal="dockyard", secret="...", tls=Tls.resolve(cert, key, ca))
    peer.base_url("127.0.0.1:5050")        # "https://127.0.0.1:5050"
    httpx.Client(**peer.httpx_options())   # Basic auth, our CA, our certificate
    peer.get_json("https://agent:5051/state")
"""
from __future__ import annotations

import base64
import functools
import json
import ssl
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from framework.security.tls import Tls


@dataclass(frozen=True)
class Peer:
    """One process's outgoing identity: a principal and secret (either may be absent) and TLS."""

    principal: str | None = None
    secret: str | None = None
    tls: Tls | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Peer(principal={self.principal!r}, tls={self.tls is not None})"

    @property
    def auth(self) -> tuple[str, str] | None:
        """(principal, secret) for HTTP Basic, None when we do not authenticate."""
        if self.principal is None or self.secret is None:
            return None
        return (self.principal, self.secret)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def base_url(self, address: str) -> str:
        """`scheme://host:port` for `host:port`; a URL that names its scheme keeps it."""
        if "://" in address:
            parts = urlsplit(address)
            return f"{parts.scheme}://{parts.netloc}"
        return f"{self.scheme}://{address}"

    def headers(self) -> dict[str, str]:
        """The `Authorization` header of our principal (empty when we have none)."""
        if self.auth is None:
            return {}
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode("utf-8")).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    @functools.cached_property
    def _context(self) -> ssl.SSLContext | None:
        # Made once: loading the CA and our key costs milliseconds, and calls are frequent.
        return self.tls.client_context() if self.tls is not None else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifies peers with our CA and presents our certificate; None when TLS is off."""
        return self._context

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client`/`AsyncClient`: our credentials and TLS."""
        context = self.ssl_context()
        return {"auth": self.auth, "verify": context if context is not None else True}

    def get_json(self, url: str, timeout: float = 5.0) -> Any:
        """GET a JSON document with our credentials (standard library: no client to keep)."""
        request = urllib.request.Request(url, headers={"Accept": "application/json", **self.headers()})
        context = self.ssl_context() if url.startswith("https://") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.loads(response.read())
