"""Security settings for test clusters: a bundle per cluster, the flags that use it, and clients.

    bundle = Bundle(workdir / "security").ensure(agents=["agent0"])
    master_flags(bundle)                    # --credentials ... --acls ...
    agent_flags(bundle, "agent0")           # --credential ... --executor-secret-key ...
    scheduler_flags(bundle)                 # --mesos-authentication-principal dockyard ...
    authorization(bundle.operator)          # {"Authorization": "Basic ..."}

`tls=True` adds a certificate for 127.0.0.1 and the TLS flags.
"""
from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from framework.security.bundle import Bundle, Identity

LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]


def tls_flags(bundle: Bundle, hosts: list[str] | None = None, mutual: bool = False) -> list[str]:
    cert, key = bundle.certificate("cluster", hosts or LOOPBACK_HOSTS)
    return bundle.tls_flags(cert, key, mutual)


def master_flags(bundle: Bundle, tls: bool = False) -> list[str]:
    return bundle.master_flags() + (tls_flags(bundle) if tls else [])


def agent_flags(bundle: Bundle, name: str, tls: bool = False) -> list[str]:
    return bundle.agent_flags(name) + (tls_flags(bundle) if tls else [])


def scheduler_flags(bundle: Bundle, tls: bool = False) -> list[str]:
    return bundle.scheduler_flags() + (tls_flags(bundle) if tls else [])


def authorization(identity: Identity) -> dict[str, str]:
    token = base64.b64encode(f"{identity.principal}:{identity.secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def call(method: str, url: str, identity: Identity | None = None, body: Any = None,
         headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-case headers, body) of one request; HTTP errors are answers, not exceptions."""
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
