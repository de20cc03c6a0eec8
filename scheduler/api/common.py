"""Error rendering and request helpers shared by every API module.

Errors keep Marathon's shape (`{"message", "details"?}`) because existing
clients parse it: 400 "Invalid JSON", 422 "Object is not valid" with a
`details` entry per field path, 404 and 409 with a message.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

from framework import bodies
from framework.errors import ConflictError, DockyardError, SpecError, StoreError
from framework.security.gate import Access, access_of, principal_name
from framework.security.gate import route as gated_route
from scheduler.secrets.refs import acting_as

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger(__name__)


class ApiError(DockyardError):
    """An answer other than success, raised by handlers and rendered by `guard`."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.extra = extra


def error_response(status: int, message: str, details: list[dict] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"message": message, **extra}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def invalid(path: str, *errors: str) -> ApiError:
    return ApiError(422, "Object is not valid", [{"path": path, "errors": list(errors)}])


def validation_details(error: ValidationError) -> list[dict]:
    """Marathon's `details` from a pydantic error: one entry per `/path`, messages kept."""
    grouped: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        parts: list[str] = []
        for part in item["loc"]:
            if isinstance(part, int):
                parts[-1:] = [f"{parts[-1]}({part})"] if parts else [f"({part})"]
            elif not str(part).startswith("function-"):
                parts.append(str(part))
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        grouped.setdefault("/" + "/".join(parts), []).append(message)
    return [{"path": path, "errors": errors} for path, errors in grouped.items()]


def render_error(error: Exception) -> JSONResponse:
    """Translate the domain's errors at the boundary; anything else is a 500."""
    if isinstance(error, ApiError):
        return error_response(error.status, error.message, error.details, **error.extra)
    if isinstance(error, bodies.BodyError):
        message = {400: "Invalid JSON", 408: "Request Timeout", 413: "Request Entity Too Large"}.get(
            error.status, "Object is not valid")
        response = error_response(error.status, message, [{"path": error.path, "errors": [error.message]}])
        if error.status in (408, 413):  # the rest of the body is not read: the connection cannot go on
            response.headers["Connection"] = "close"
        return response
    if isinstance(error, ValidationError):  # a stored or computed spec that no longer validates
        return error_response(422, "Object is not valid", validation_details(error))
    details = getattr(error, "details", None)
    if isinstance(error, SpecError):
        if error.field == "/" and error.message.startswith("Invalid JSON"):
            return error_response(400, "Invalid JSON", [{"path": "/", "errors": [error.message]}])
        return error_response(422, "Object is not valid",
                              details or [{"path": error.field, "errors": [error.message]}])
    kind = type(error).__name__
    if kind == "NotFound":
        return error_response(404, str(error))
    if kind == "Forbidden":
        return error_response(403, str(error))
    if kind == "Conflict" or isinstance(error, ConflictError):
        return error_response(409, str(error))
    if isinstance(error, StoreError):  # the store is down, not the request wrong: try again later
        return error_response(503, f"state store unavailable: {error}")
    return error_response(500, f"{kind}: {error}")


def api_route(path: str, endpoint: Handler, methods: list[str],
              access: Access | Mapping[str, Access]) -> Route:
    """A route of the scheduler's API, made with its access decision (framework/security/gate.py).

    READ: viewers and admins (GETs, event streams); WRITE: admins (what changes state).
    While the scheduler cannot act (`app.state.halted()` says why: the master removed
    our framework), WRITE calls answer 503 with that reason instead of pretending.
    """
    return gated_route(path, _unless_halted(endpoint, access), methods=methods, access=access)


def _unless_halted(endpoint: Handler, access: Access | Mapping[str, Access]) -> Handler:
    @functools.wraps(endpoint)
    async def handler(request: Request) -> Response:
        if access_of(handler, request.method) == Access.WRITE:
            halted = getattr(request.app.state, "halted", None)
            reason = halted() if halted is not None else None
            if reason:
                return error_response(503, reason)
        with acting_as(principal_name(request)):  # whom the secrets a change references are checked for
            return await endpoint(request)

    handler.access = access  # type: ignore[attr-defined]
    return handler


def render_failure(request: Request, error: Exception) -> JSONResponse:
    """The answer to a handler's exception (`render_error`); a 5xx is logged with its traceback."""
    response = render_error(error)
    if response.status_code >= 500 and response.status_code != 503:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return response


def guard(handler: Handler) -> Handler:
    """Wrap a handler so every domain error becomes Marathon's error answer."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as error:  # rendered, never swallowed: the client sees the reason
            return render_failure(request, error)
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    wrapped.__dict__.update(handler.__dict__)
    return wrapped


def describe(summary: str, request: type | dict | None = None, response: type | None = None,
             status: int = 200, *, partial: bool = False, array: bool = False,
             query: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    """Attach OpenAPI facts to a handler (read by `scheduler.api.app.openapi`).

    `request`: the body's pydantic model, or a JSON schema (`$ref`s to models named in
    `components`); `partial`: every field optional (a partial update); `array`: a list
    of them; `query`: the query parameters the handler reads (`app.QUERY` types them)."""
    def mark(handler: Handler) -> Handler:
        handler.__dict__["openapi"] = {"summary": summary, "request": request, "response": response,
                                       "status": status, "partial": partial, "array": array, "query": query}
        return handler
    return mark


def request_limits(request: Request) -> Any:
    """The app's limits (scheduler/limits.py), else the process's."""
    from scheduler import limits

    return getattr(request.app.state, "limits", None) or limits.current()


async def body_document(request: Request) -> Any:
    """The request body as JSON or YAML; 400 "Invalid JSON" when it is neither.

    Read in chunks up to `--max-request-bytes` (413 past it), nesting checked before
    anything parses it (422), NaN and infinities refused (400), YAML without aliases."""
    limit = request_limits(request)
    raw = b"".join([chunk async for chunk in _limited_stream(request, limit.max_request_bytes)])
    if not raw.strip():
        raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["empty body"]}])
    kind = request.headers.get("content-type", "")
    if "yaml" not in kind:
        try:
            return bodies.loads(raw, limit.max_json_depth)
        except bodies.BodyError:
            raise
        except ValueError as error:
            why = str(error)
    try:
        document = bodies.yaml_loads(raw, limit.max_json_depth)
    except bodies.BodyError:
        raise
    except ValueError as error:
        raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": [str(error)[:500]]}]) from None
    if "yaml" not in kind and not isinstance(document, (dict, list)):
        raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": [why[:500]]}])
    return document


async def _limited_stream(request: Request, max_bytes: int) -> Any:
    """The body's chunks, refusing (413) once more than `max_bytes` arrived."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise bodies.BodyTooLarge(max_bytes)
        yield chunk


def check_privileged(request: Request, paths: list[str]) -> None:
    """422 naming each field that reaches past the container, unless the caller may have them
    (scheduler/privileged.py)."""
    from scheduler import privileged

    if paths and not privileged.may_run_privileged(request):
        raise ApiError(422, "Object is not valid", privileged.details(paths))


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("1", "true", "yes")


def embeds(request: Request) -> set[str]:
    """`embed=a&embed=b` or `embed=a,b`, prefixes like `job.` dropped."""
    out = set()
    for value in request.query_params.getlist("embed"):
        for item in value.split(","):
            item = item.strip()
            out.add(item.split(".", 1)[1] if "." in item else item)
    return out


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking domain code (locks, store I/O) off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


SSE_PIECE = 64 << 10  # what one write hands the transport: a large event never sits there whole
SSE_WRITE_TIMEOUT = 30.0


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


def sse_frame(event_type: str, data: bytes) -> list[bytes]:
    """One SSE event as pieces (`data` is shared by every stream, never copied into a frame)."""
    return [f"event: {event_type}\ndata: ".encode(), data, b"\n\n"]
