"""The agent's keep-alive POST connection against a real uvicorn server."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from framework.local.agent_link import CallFailed, PostConnection
from tests.support.procs import free_port, wait_for


@pytest.fixture
def server() -> Iterator[tuple[str, list[bytes]]]:
    """A server that closes idle keep-alive connections after 0.1 s, as uvicorn does after 5 s."""
    seen: list[bytes] = []

    async def record(request: Request) -> Response:
        seen.append(await request.body())
        return Response(status_code=202)

    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/internal/agent", record, methods=["POST"])]),
                                             host="127.0.0.1", port=port, log_level="warning",
                                             timeout_keep_alive=0.1))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    wait_for(lambda: instance.started, 10, what="the test server")
    yield f"127.0.0.1:{port}", seen
    instance.should_exit = True
    thread.join(10)


def closed_by_peer(connection: PostConnection) -> bool:
    fd = connection._writer.get_extra_info("socket").fileno()  # type: ignore[union-attr]
    with socket.socket(fileno=os.dup(fd)) as sock:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False


def test_a_connection_the_server_closed_is_replaced_transparently(server: tuple[str, list[bytes]]) -> None:
    target, seen = server

    async def scenario() -> None:
        connection = PostConnection()
        connection.IDLE_SECONDS = 3600  # force reuse of the stale connection
        assert await connection.post(target, "/internal/agent", b'{"n":1}', 5) == (202, b"")
        await asyncio.to_thread(wait_for, lambda: closed_by_peer(connection), 10, 0.02, "the server to close")
        assert await connection.post(target, "/internal/agent", b'{"n":2}', 5) == (202, b"")
        connection.close()

    asyncio.run(scenario())
    assert seen == [b'{"n":1}', b'{"n":2}']


def test_no_server_is_a_call_failure() -> None:
    async def scenario() -> None:
        with pytest.raises(CallFailed):
            await PostConnection().post(f"127.0.0.1:{free_port()}", "/internal/agent", b"{}", 2)

    asyncio.run(scenario())
