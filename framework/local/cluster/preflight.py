"""Before `dockyard up` starts anything: every port it needs is free, or it says who holds it.

A second cluster started over a running one must not touch it: its agent would
register with the running master as a restarted agent, and that master would
kill the instances it no longer knows. So nothing starts unless every port binds,
and a taken port is named with what answers there.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Taken:
    port: int
    role: str  # who `up` wanted the port for: "the master", "agent1", ...
    holder: str  # what answers there

    def __str__(self) -> str:
        return f"port {self.port} (for {self.role}) is taken: {self.holder}"


def is_free(ip: str, port: int) -> bool:
    """Whether a server could listen on ip:port now (a socket in TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def _get(host: str, port: int, path: str, tls: bool) -> tuple[int, bytes] | None:
    """(status, body) of one GET, or None when no HTTP answer came."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only asking who is there, sending nothing secret
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=1,
                                                                             context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(4096)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def who_answers(ip: str, port: int) -> str:
    """What listens at the port, asked the way a Mesos agent, master or Marathon answers."""
    host = "127.0.0.1" if ip in ("0.0.0.0", "") else "::1" if ip == "::" else ip
    if not _accepts(host, port):
        return "another program has it (bound, not accepting connections here)"
    for tls in (False, True):
        health = _get(host, port, "/slave(1)/health", tls)
        if health is None:
            continue
        if health[0] == 200:
            return "a Mesos agent answers there (dockyard's or Mesos's)"
        version = _get(host, port, "/version", tls)
        if version is not None and version[0] == 200:
            try:
                number = json.loads(version[1]).get("version")
            except (ValueError, AttributeError):
                number = None
            if number:
                return f"a Mesos master answers there (version {number})"
        ping = _get(host, port, "/ping", tls)
        if ping is not None and ping[0] == 200 and ping[1].strip() == b"pong":
            return "a Marathon-compatible scheduler answers there (dockyard's or Marathon)"
        return f"another program answers there (HTTP {health[0]} to a Mesos probe)"
    return "another program answers there (not HTTP)"


def taken_ports(wanted: dict[int, tuple[str, str]]) -> list[Taken]:
    """The ports of `wanted` (port -> (address, role)) that cannot be bound, each with what holds it."""
    return [Taken(port, role, who_answers(address, port)) for port, (address, role) in wanted.items()
            if not is_free(address, port)]
