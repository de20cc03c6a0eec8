"""Marathon's `/v2/events` and the jobs' `/v1/events` are one kind of stream (scheduler/api/sse.py).

Requests go straight to the ASGI app, built as `dockyard scheduler` builds it around a
real store (tests/scheduler/test_limits.py's `Api`). The keep-alive period is shortened
so that a quiet stream shows its heartbeat within the test: both streams must send
Marathon's blank line (Jetty's EventSourceServlet heartbeat) and nothing else.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from framework.security.bundle import Bundle
from scheduler.api import sse
from tests.scheduler.test_limits import Api

QUIET = 0.2  # seconds without an event before a keep-alive, in these tests


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("streams") / "security").ensure()


@pytest.fixture
def api(tmp_path: Path, bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", QUIET)
    made = Api(tmp_path, bundle)
    yield made
    made.close()


def read_stream(api: Api, path: str, enough: Callable[[bytes], bool], timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, what the stream wrote) once `enough(body)` holds; then the client goes away."""
    async def run() -> tuple[int, bytes]:
        path_part, _, query = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path_part, "raw_path": path_part.encode(), "root_path": "",
                 "query_string": query.encode(), "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in api.auth.items()]}
        gone = asyncio.Event()
        answer: dict[str, Any] = {"status": 0, "body": b""}
        first = True

        async def receive() -> dict:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")
                if enough(answer["body"]) or not message.get("more_body"):
                    gone.set()

        task = asyncio.ensure_future(api.app(scope, receive, send))
        try:
            await asyncio.wait_for(asyncio.shield(gone.wait()), timeout)
        finally:
            gone.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout)
        return answer["status"], answer["body"]

    return asyncio.run(run())


def attached_then_keepalive(body: bytes) -> bool:
    return body.endswith(b"\n\n" + sse.KEEPALIVE)


@pytest.mark.parametrize("path", ["/v2/events", "/v1/events", "/v1/events?jobId=nightly"])
def test_both_streams_open_with_attached_and_keep_alive_as_marathon(api: Api, path: str) -> None:
    status, body = read_stream(api, path, attached_then_keepalive)
    assert status == 200
    frame, rest = body.split(b"\n\n", 1)
    kind, data = frame.split(b"\n")
    assert kind == b"event: event_stream_attached"
    assert json.loads(data.removeprefix(b"data: "))["eventType"] == "event_stream_attached"
    assert rest == sse.KEEPALIVE == b"\r\n"  # a blank line: no event, no comment


def test_a_filter_that_leaves_attached_out_still_sends_the_headers_at_once(api: Api) -> None:
    status, body = read_stream(api, "/v2/events?event_type=deployment_success",
                               lambda b: b.endswith(sse.KEEPALIVE))
    assert status == 200 and body == sse.ATTACHED_QUIETLY + sse.KEEPALIVE


def test_events_reach_the_stream_and_a_leaving_marathon_client_is_announced(api: Api) -> None:
    watcher = api.ctx.events.subscribe(["event_stream_detached"])

    def published_then_seen(body: bytes) -> bool:
        if body == sse.ATTACHED_QUIETLY:  # attached: now something happens
            api.ctx.events.publish("deployment_success", id="d1")
        return b"event: deployment_success\n" in body

    status, body = read_stream(api, "/v2/events?event_type=deployment_success", published_then_seen)
    assert status == 200 and json.loads(body.split(b"data: ", 1)[1].split(b"\n\n")[0])["id"] == "d1"
    detached = watcher.get(timeout=5)
    assert detached is not None and detached["remoteAddress"] == "127.0.0.1"


@pytest.mark.parametrize("path, known", [("/v2/events?event_type=nonsense", False),
                                         ("/v1/events?event_type=nonsense", True)])
def test_an_unknown_event_type_is_a_400_in_marathons_shape(api: Api, path: str, known: bool) -> None:
    status, body, _ = api.call("GET", path)
    assert status == 400 and body["message"].startswith("Unknown event type(s): nonsense")
    assert ("known: job_created" in body["message"]) is known
