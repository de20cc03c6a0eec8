"""How tests speak to secured servers: who they are, what they trust, and where the server is.

A test cluster is secured by default (tests/support/cluster.py), so every client
in the tests goes through an `Endpoint`: a base URL, the identity sent as HTTP
Basic, and the SSL context that verifies the server (None for plain HTTP).

    api = cluster.master_api()                 # the operator, the cluster's CA
    api.get_json("/master/state")
    status, headers, body = api.call("POST", "/api/v1", {"type": "GET_HEALTH"})
    api.as_(bundle.viewer).call("GET", "/state")
    api.as_(None)                              # no credentials at all

`tls_flags(bundle)` and `client_context(bundle)` are the TLS half for processes a
test starts by hand.
"""
from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from framework.security import client as client_settings
from framework.security.bundle import Bundle, Identity
from framework.security.tls import Tls

LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]
CERT_NAME = "cluster"


def tls_flags(bundle: Bundle, hosts: list[str] | None = None, mutual: bool = False) -> list[str]:
    """`--tls-*` flags with the bundle's certificate for `hosts` (default: loopback)."""
    cert, key = bundle.certificate(CERT_NAME, hosts or LOOPBACK_HOSTS)
    return bundle.tls_flags(cert, key, mutual)


def client_context(bundle: Bundle, with_cert: bool = True) -> ssl.SSLContext:
    """Trusts the bundle's CA; presents the bundle's certificate (for mutual TLS) unless told not to."""
    if not with_cert:
        return Tls.client(ca=str(bundle.ca_cert)).client_context()
    cert, key = bundle.directory / f"{CERT_NAME}.pem", bundle.directory / f"{CERT_NAME}.key"
    if not cert.exists():
        cert, key = bundle.certificate(CERT_NAME, LOOPBACK_HOSTS)
    return Tls.client(ca=str(bundle.ca_cert), cert=str(cert), key=str(key)).client_context()


def authorization(identity: Identity) -> dict[str, str]:
    token = base64.b64encode(f"{identity.principal}:{identity.secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def executor_token(bundle: Bundle, executor: dict[str, Any]) -> str:
    """The token the agent gives an executor, from its agent /state entry plus "framework_id"
    (`cluster.wait_executor`): tests hold the agent's key."""
    from framework.security import tokens

    return tokens.issue(bundle.executor_key_file.read_bytes(), framework_id=executor["framework_id"],
                        executor_id=executor["id"], container_id=executor.get("container") or "")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(method: str, url: str, identity: Identity | None = None, body: Any = None,
         headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-case headers, body) of one request; HTTP errors are answers, not exceptions
    (a connection that fails raises OSError)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    merged = {"Content-Type": "application/json"} if data is not None else {}
    if identity is not None:
        merged.update(authorization(identity))
    merged.update(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=merged)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return raw.decode(errors="replace")


@dataclass(frozen=True)
class Endpoint:
    """One server as one caller sees it: `url` ("https://127.0.0.1:5050"), the identity sent
    with every request (None: none) and the context that verifies the server (None: plain HTTP)."""

    url: str
    identity: Identity | None = None
    context: ssl.SSLContext | None = None

    @classmethod
    def from_client_file(cls, path: Path, which: str = "url") -> "Endpoint":
        """The server a client.json names (`url`: the scheduler, `master`: the master), as its user."""
        settings = client_settings.load(str(path))
        url = settings.url if which == "url" else settings.master
        if url is None:
            raise ValueError(f"{path} names no {which!r}")
        identity = Identity(settings.principal, settings.secret) if settings.auth else None
        context = settings.ssl_context() if url.startswith("https://") else None
        return cls(url.rstrip("/"), identity, context)

    @property
    def address(self) -> str:
        """"host:port", as a Mesos driver or an agent's --master takes it."""
        return urlsplit(self.url).netloc

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    def as_(self, identity: Identity | None) -> "Endpoint":
        """The same server as another caller (None: without credentials)."""
        return replace(self, identity=identity)

    def at(self, address: str) -> "Endpoint":
        """Another server ("host:port") of the same cluster, with the same caller and trust."""
        return replace(self, url=f"{self.scheme}://{address}")

    def headers(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        """`headers` plus this caller's Authorization (unless `headers` sets one)."""
        merged = authorization(self.identity) if self.identity is not None else {}
        merged.update(headers or {})
        return merged

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-case headers, raw body); HTTP errors are answers, not exceptions."""
        return call(method, self.url + path, self.identity, body, headers, self.context, timeout)

    def json(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """(status, decoded JSON or text or None)."""
        status, _, raw = self.call(method, path, body, timeout=timeout)
        return status, _decoded(raw)

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """The JSON of a GET that must succeed; anything else raises OSError (so polls retry)."""
        status, _, raw = self.call("GET", path, timeout=timeout)
        if status >= 400:
            raise OSError(f"GET {self.url}{path} answered {status}: {raw[:300]!r}")
        return json.loads(raw)

    def ok(self, path: str = "/health", timeout: float = 2.0) -> bool:
        """Answers 2xx (False also when it does not answer at all)."""
        try:
            return 200 <= self.call("GET", path, timeout=timeout)[0] < 300
        except OSError:
            return False

    def httpx_options(self) -> dict[str, Any]:
        """`auth` and `verify` for an httpx client of this endpoint."""
        auth = (self.identity.principal, self.identity.secret) if self.identity is not None else None
        return {"auth": auth, "verify": self.context if self.context is not None else True}

    def driver_options(self) -> dict[str, Any]:
        """`principal`, `secret` and `ssl_context` for a MesosSchedulerDriver of this master."""
        return {"principal": self.identity.principal if self.identity else None,
                "secret": self.identity.secret if self.identity else None, "ssl_context": self.context}

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client that authenticates and verifies as this endpoint does; paths are
        relative to `url` (absolute URLs work too)."""
        return httpx.Client(**{"timeout": 10.0, "base_url": self.url, **self.httpx_options(), **options})

    def http_connection(self, timeout: float = 10.0) -> Any:
        """An http.client connection to this server (HTTPS with our context when TLS is on)."""
        import http.client

        parts = urlsplit(self.url)
        if self.context is not None:
            return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=self.context)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def client_settings(self) -> dict[str, str]:
        """What a client.json says for this endpoint as the scheduler URL (see write_client_file)."""
        settings = {"url": self.url}
        if self.identity is not None:
            settings.update(principal=self.identity.principal, secret=self.identity.secret)
        return settings


def write_client_file(path: Path, scheduler: Endpoint, master: Endpoint | None = None,
                      bundle: Bundle | None = None) -> Path:
    """A client.json for the CLI (`--config`): where the scheduler and master are, who we are,
    the CA that verifies them when they serve TLS."""
    settings = scheduler.client_settings()
    if master is not None:
        settings["master"] = master.url
    if bundle is not None and scheduler.context is not None:
        settings["ca"] = str(bundle.ca_cert)
    client_settings.write(path, settings)
    return path
