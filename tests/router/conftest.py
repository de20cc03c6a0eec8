"""Real HAProxy, real HTTP servers and a steady client for the router tests (loopback only);
for the cluster tests a module's own cluster, scheduler and router process (tests/router/cluster.py)."""
from __future__ import annotations

import http.server
import random
import shutil
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from scheduler.router.haproxy import HAProxy
from tests.router import cluster as pieces
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess


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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One agent whose host ports are a slice of 21000-29999 picked at random: the other tests'
    clusters on this machine offer 31000 and up, and a port they hold would fail our instances."""
    begin = random.randrange(21000, 29800, 200)
    resources = f"cpus:8;mem:8192;disk:10000;ports:[{begin}-{begin + 199}]"
    with Cluster(tmp_path_factory.mktemp("router-cluster"), agents=1, resources=resources).start() as started:
        yield started


@pytest.fixture(scope="module")
def scheduler(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    with SchedulerProcess.start(cluster, tmp_path_factory.mktemp("router-scheduler")) as started:
        yield started


@pytest.fixture(scope="module")
def router(scheduler: SchedulerProcess, tmp_path_factory: pytest.TempPathFactory,
           haproxy_binary: str) -> Iterator[pieces.RouterProcess]:
    work_dir = tmp_path_factory.mktemp("rt") / "router"
    running = pieces.RouterProcess(scheduler, work_dir, free_ports(1)[0])
    try:
        yield running.start()
    finally:
        running.stop()
        HAProxy(work_dir, binary=haproxy_binary).stop()


@pytest.fixture(autouse=True)
def _python_for_tasks(task_python: str) -> None:
    pieces.PYTHON = task_python


@pytest.fixture(autouse=True)
def _no_app_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "scheduler" not in request.fixturenames:
        return
    scheduler = request.getfixturevalue("scheduler")
    for app in scheduler.call("GET", "/v2/apps")["apps"]:
        scheduler.status("DELETE", f"/v2/apps/{app['id'].strip('/')}?force=true")
    wait_for(lambda: not scheduler.call("GET", "/v2/tasks")["tasks"], timeout=60, what="every app's tasks ended")
