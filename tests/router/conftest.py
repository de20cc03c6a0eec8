"""Real HAProxy, real HTTP servers and a steady client for the router tests (loopback only)."""
from __future__ import annotations

import http.server
import shutil
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from scheduler.router.haproxy import HAProxy


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy is not installed: run the tests through `make test` (Debian's haproxy)")
    return binary


@pytest.fixture
def haproxy(tmp_path: Path, haproxy_binary: str) -> Iterator[HAProxy]:
    """An HAProxy owned by a router work directory; stopped at the end whatever happened."""
    proxy = HAProxy(tmp_path / "router", binary=haproxy_binary)
    yield proxy
    proxy.stop()


class Answering(http.server.ThreadingHTTPServer):
    daemon_threads = True
    name = ""

    def handle_error(self, request: object, client_address: object) -> None:
        """An old HAProxy worker resets its idle keep-alive connections as it exits: not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_servers() -> Iterator[list[Answering]]:
    """Three HTTP servers on loopback, each answering its own name (`one`, `two`, `three`)."""
    servers = []
    for name in ("one", "two", "three"):
        server = Answering(("127.0.0.1", 0), _Handler)
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on loopback (held together while picked, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
