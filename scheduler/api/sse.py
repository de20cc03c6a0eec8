"""Server-sent event streams: Marathon's `/v2/events` and the jobs' `/v1/events`, one way.

A stream subscribes to an `EventBus` (scheduler/events.py), opens with
`event_stream_attached` (or, when a filter leaves that out, an SSE comment, so the
headers go out and the client knows it is attached), then writes each event as
`event: TYPE` and `data: JSON`, the JSON encoded once for every subscriber.

Keep-alive as Marathon's: Marathon serves `/v2/events` through Jetty's
EventSourceServlet (Marathon's HttpEventStreamServlet extends it), whose heartbeat
writes a blank line (CRLF) every 10 seconds; here a blank line goes out after 10
seconds without an event. It keeps proxies from closing a quiet stream and finds a
client that went away.

Bounds (scheduler/limits.py): a subscriber whose unread events pass
`--event-stream-bytes` is dropped and its stream ends; each write is handed over in
pieces of at most `SSE_PIECE` bytes, each within `SSE_WRITE_TIMEOUT` seconds, or the
client is dropped.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Send

from scheduler.api.common import client_ip, request_limits
from scheduler.events import EventBus, Subscription, encode, marathon_time

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 10.0
KEEPALIVE = b"\r\n"
ATTACHED_QUIETLY = b":\n\n"  # an SSE comment: the headers go out, no event is shown
SSE_PIECE = 64 << 10  # what one write hands the transport: a large event never sits there whole
SSE_WRITE_TIMEOUT = 30.0

Refine = Callable[[dict, bytes], Awaitable[tuple[dict, bytes]]]


def requested_types(request: Request) -> list[str]:
    """The `event_type` filter: repeated, or comma-separated (empty: every type)."""
    return [t for value in request.query_params.getlist("event_type") for t in value.split(",") if t]


def event_stream(request: Request, bus: EventBus, types: list[str], *, attached: bool = True,
                 match: Callable[[dict], bool] | None = None, refine: Refine | None = None,
                 detached: Callable[[str], Any] | None = None) -> "EventStream":
    """The stream of `bus`'s events of `types` (all when empty) that satisfy `match`.

    `attached`: open with `event_stream_attached`; `refine(event, data)`: a chance to
    complete an event before it is written (answers the event and its JSON);
    `detached(client_ip)`: called once the stream has ended."""
    subscription = bus.subscribe(types or None, match=match, max_bytes=request_limits(request).event_stream_bytes)
    return EventStream(_frames(subscription, client_ip(request), attached, refine, detached))


async def _frames(subscription: Subscription, client: str, attached: bool, refine: Refine | None,
                  detached: Callable[[str], Any] | None) -> AsyncIterator[bytes]:
    try:
        if attached:
            hello = {"eventType": "event_stream_attached", "timestamp": marathon_time(), "remoteAddress": client}
            yield b"".join(sse_frame("event_stream_attached", encode(hello)))
        else:
            yield ATTACHED_QUIETLY
        while True:
            item = await subscription.aget_encoded(KEEPALIVE_SECONDS)
            if subscription.overflowed:
                log.warning("event stream of %s dropped: it read too slowly", client or "?")
                return
            if item is None:
                yield KEEPALIVE
                continue
            event, data = item
            if refine is not None:
                event, data = await refine(event, data)
            for piece in sse_frame(event["eventType"], data):
                yield piece
    finally:
        subscription.close()
        if detached is not None:
            detached(client)


def sse_frame(event_type: str, data: bytes) -> list[bytes]:
    """One SSE event as pieces (`data` is shared by every stream, never copied into a frame)."""
    return [f"event: {event_type}\ndata: ".encode(), data, b"\n\n"]


class EventStream(StreamingResponse):
    """Server-sent events to one client, written in `SSE_PIECE` pieces, each within
    `write_timeout` seconds. A client that reads nothing for that long is dropped (the
    connection closed): otherwise its stalled write would hold the stream open for good."""

    def __init__(self, frames: AsyncIterator[bytes], write_timeout: float = SSE_WRITE_TIMEOUT) -> None:
        super().__init__(frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.write_timeout = write_timeout

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        frames = self.body_iterator
        try:
            async for frame in frames:
                view = memoryview(frame)
                for start in range(0, len(view), SSE_PIECE):
                    piece = bytes(view[start:start + SSE_PIECE])
                    try:
                        await asyncio.wait_for(send({"type": "http.response.body", "body": piece, "more_body": True}),
                                               self.write_timeout)
                    except asyncio.TimeoutError:
                        log.warning("dropping an event-stream client that read nothing for %g s", self.write_timeout)
                        return
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
