"""The agent's calls to the master: its keep-alive POST connection and its ordered lanes,
against a real uvicorn server."""
from __future__ import annotations

import asyncio
import json
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

from framework.local.agent.link import CallFailed, Lanes, PostConnection
from tests.support.procs import free_port, raw_server, wait_for


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


class HeldServer:
    """A master stand-in that holds the first POST until released and records every body;
    `batches=False` answers a BATCH 400, as a master from before batches does."""

    def __init__(self, batches: bool = True) -> None:
        self.seen: list[dict] = []
        self.release = threading.Event()
        self.batches = batches
        port = free_port()
        self.target = f"127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(
            Starlette(routes=[Route("/internal/agent", self.record, methods=["POST"])]),
            host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def record(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.seen.append(body)
        if len(self.seen) == 1:
            await asyncio.to_thread(self.release.wait, 10)
        if body["type"] == "BATCH" and not self.batches:
            return Response("Unknown agent call type 'BATCH'", status_code=400)
        return Response(status_code=202)

    def __enter__(self) -> "HeldServer":
        self.thread.start()
        wait_for(lambda: self.server.started, 10, what="the test server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(10)


def deliver_while_held(server: HeldServer, count: int) -> list[asyncio.Event]:
    """Submit a call of one task, and `count - 1` more while its POST is held; then release it."""

    async def scenario() -> list[asyncio.Event]:
        connection = PostConnection()

        async def post(call: dict, conn: PostConnection) -> int:
            status, _ = await connection.post(server.target, "/internal/agent", json.dumps(call).encode(), 10)
            return status

        registered = asyncio.Event()
        registered.set()
        lanes = Lanes(post, registered)
        lanes.start()
        done = [lanes.submit("task-1", {"type": "UPDATE", "n": 0})]
        await asyncio.to_thread(wait_for, lambda: server.seen, 10, 0.01, "the first POST")
        done += [lanes.submit("task-1", {"type": "UPDATE", "n": n}) for n in range(1, count)]
        server.release.set()
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in done)), 10)
        await lanes.stop()
        connection.close()
        return done

    return asyncio.run(scenario())


def test_calls_queued_behind_a_post_go_in_one_batch_in_order() -> None:
    with HeldServer() as server:
        done = deliver_while_held(server, 6)
    assert all(event.is_set() for event in done)
    assert server.seen[0] == {"type": "UPDATE", "n": 0}
    assert server.seen[1]["type"] == "BATCH"
    assert [call["n"] for call in server.seen[1]["calls"]] == [1, 2, 3, 4, 5]
    assert len(server.seen) == 2


def test_a_master_without_batches_gets_the_calls_one_by_one_in_order() -> None:
    with HeldServer(batches=False) as server:
        deliver_while_held(server, 4)
    singles = [body["n"] for body in server.seen if body["type"] == "UPDATE"]
    assert singles == [0, 1, 2, 3]
    assert [body["type"] for body in server.seen].count("BATCH") == 1  # asked once, then never again


def test_a_garbled_answer_is_a_call_failure() -> None:
    port, thread = raw_server(lambda peer: peer.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))

    async def scenario() -> None:
        with pytest.raises(CallFailed, match="BadStatusLine"):
            await PostConnection().post(f"127.0.0.1:{port}", "/internal/agent", b"{}", 5)

    asyncio.run(scenario())
    thread.join(5)
