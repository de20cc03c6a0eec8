"""The drivers' keep-alive HTTP/1.1 connection: against uvicorn (what our master and agent
run), and against a raw socket server for the framings and faults uvicorn never produces."""
from __future__ import annotations

import http.client
import threading
import time
from typing import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from framework.mesos.connection import Connection
from tests.support.procs import free_port, raw_server, wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, list[tuple[bytes, dict]]]]:
    seen: list[tuple[bytes, dict]] = []

    async def accepted(request: Request) -> Response:
        seen.append((await request.body(), dict(request.headers)))
        return Response(status_code=202)

    async def refused(request: Request) -> Response:
        return PlainTextResponse("Failed to validate scheduler::Call: Expecting 'type'", status_code=400)

    port = free_port()
    app = Starlette(routes=[Route("/ok", accepted, methods=["POST"]), Route("/bad", refused, methods=["POST"])])
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                             timeout_keep_alive=1))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    wait_for(lambda: instance.started, 10, what="the test server")
    yield port, seen
    instance.should_exit = True
    thread.join(10)


def test_posts_reuse_one_connection_and_carry_body_and_headers(server) -> None:
    port, seen = server
    conn = Connection("127.0.0.1", port, timeout=5, connect_timeout=5)
    try:
        for n in range(3):
            answer = conn.post("/ok", b'{"n": %d}' % n, {"Content-Type": "application/json", "Mesos-Stream-Id": "s1"})
            assert (answer.status, answer.body, answer.will_close) == (202, b"", False)
        first_socket = conn._sock
        answer = conn.post("/bad", b"{}", {"Content-Type": "application/json"})
        assert answer.status == 400 and "Expecting 'type'" in answer.text
        assert conn._sock is first_socket  # an error answer keeps the connection
    finally:
        conn.close()
    bodies = [body for body, _ in seen[-3:]]
    assert bodies == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    headers = seen[-1][1]
    assert headers["mesos-stream-id"] == "s1" and headers["host"] == f"127.0.0.1:{port}"


def test_a_connection_the_server_closed_fails_before_any_answer(server) -> None:
    port, _ = server
    conn = Connection("127.0.0.1", port, timeout=5, connect_timeout=5)
    try:
        assert conn.post("/ok", b"{}", {}).status == 202
        time.sleep(1.5)  # past uvicorn's keep-alive timeout (1 s here): it closes the idle connection
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.post("/ok", b"{}", {})
    finally:
        conn.close()


@pytest.mark.parametrize("reply, status, body, closes", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
     200, b"hello world", False),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 202, b"", False),
    (b"HTTP/1.0 307 Temporary Redirect\r\nLocation: //127.0.0.2:5050/api/v1/scheduler\r\n\r\nmoved", 307, b"moved", True),
    (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 9\r\n\r\nno leader", 503, b"no leader",
     True),
])
def test_answer_framings(reply: bytes, status: int, body: bytes, closes: bool) -> None:
    port, thread = raw_server(lambda peer: peer.sendall(reply))
    conn = Connection("127.0.0.1", port, timeout=5, connect_timeout=5)
    try:
        answer = conn.post("/api/v1/scheduler", b'{"type":"REVIVE"}', {"Content-Type": "application/json"})
    finally:
        conn.close()
    thread.join(5)
    assert (answer.status, answer.body, answer.will_close) == (status, body, closes)


@pytest.mark.parametrize("reply, error", [
    (b"", http.client.RemoteDisconnected),
    (b"SSH-2.0-OpenSSH_9.2\r\n", http.client.BadStatusLine),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", http.client.IncompleteRead),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", http.client.HTTPException),
])
def test_garbled_or_cut_answers_raise_what_http_client_raises(reply: bytes, error: type) -> None:
    port, thread = raw_server(lambda peer: peer.sendall(reply))
    conn = Connection("127.0.0.1", port, timeout=5, connect_timeout=5)
    try:
        with pytest.raises(error):
            conn.post("/x", b"{}", {})
    finally:
        conn.close()
    thread.join(5)


def test_a_silent_server_times_out() -> None:
    port, thread = raw_server(lambda peer: time.sleep(1.0))
    conn = Connection("127.0.0.1", port, timeout=0.2, connect_timeout=5)
    try:
        with pytest.raises(OSError):  # socket.timeout
            conn.post("/x", b"{}", {})
    finally:
        conn.close()
    thread.join(5)
