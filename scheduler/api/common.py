"""What every scheduler API module shares: route tables, request reading, flags.

An API module declares its routes as a table of `Endpoint`s (path, handler, methods,
access decision); `serve(table, ctx)` makes them Starlette routes behind the gate
(framework/security/gate.py), each handler called with the request and the
scheduler's `Context`. Handlers only translate: they read the request, call the
domain, render; whatever they raise is answered by `errors.render_failure`.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from framework import bodies
from framework.security import origin
from framework.security.gate import Access, access_of, principal_name
from framework.security.gate import route as gated_route
from scheduler import limits, privileged
from scheduler.api.errors import INVALID, ApiError, bad_json, error_response, render_failure
from scheduler.secrets.refs import acting_as

Handler = Callable[[Request], Awaitable[Response]]
ContextHandler = Callable[[Request, Any], Awaitable[Response]]
Described = TypeVar("Described", Handler, ContextHandler)


@dataclass(frozen=True)
class Endpoint:
    """One row of a route table: `handler(request, ctx)` serves `methods` on `path`."""

    path: str
    handler: ContextHandler
    methods: tuple[str, ...]
    access: Access | Mapping[str, Access]


def serve(table: tuple[Endpoint, ...], ctx: Any) -> list[Route]:
    """The routes of a table, each handler given `ctx` (the scheduler's Context)."""
    return [api_route(row.path, _with_context(row.handler, ctx), list(row.methods), row.access) for row in table]


def _with_context(handler: ContextHandler, ctx: Any) -> Handler:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        return await handler(request, ctx)

    return endpoint


def api_route(path: str, endpoint: Handler, methods: list[str],
              access: Access | Mapping[str, Access]) -> Route:
    """A route of the scheduler's API, made with its access decision (framework/security/gate.py).

    READ: viewers and admins (GETs, event streams); WRITE: admins (what changes state).
    While the scheduler cannot act (`app.state.halted()` says why: the master removed
    our framework), WRITE calls answer 503 with that reason instead of pretending.
    An error the endpoint raises is answered in Marathon's shape (scheduler/api/errors.py).
    """
    return gated_route(path, _served(endpoint, access), methods=methods, access=access)


def _served(endpoint: Handler, access: Access | Mapping[str, Access]) -> Handler:
    @functools.wraps(endpoint)
    async def handler(request: Request) -> Response:
        if access_of(handler, request.method) == Access.WRITE:
            halted = getattr(request.app.state, "halted", None)
            reason = halted() if halted is not None else None
            if reason:
                return error_response(503, reason)
            refused = origin.cross_site(request.headers)
            if refused:
                return error_response(403, refused)
        try:
            with acting_as(principal_name(request)):  # whom the secrets a change references are checked for
                response = await endpoint(request)
        except Exception as error:  # rendered, never swallowed: the client sees the reason
            response = render_failure(request, error)
        return _with_warnings(request, response)

    handler.access = access  # type: ignore[attr-defined]
    return handler


MAX_WARNINGS = 50  # warnings in one answer


def warn(request: Request, messages: Iterable[str]) -> None:
    """Keep `messages` (unknown fields in a spec, say) for the answer to `request`.

    Marathon ignores fields it does not know; so do we, but the answer says so:
    a `Warning: 199 dockyard "..."` header each, and a `warnings` list in a JSON object body."""
    kept = getattr(request.state, "warnings", [])
    request.state.warnings = [*kept, *(m for m in messages if m not in kept)]


def _with_warnings(request: Request, response: Response) -> Response:
    messages = getattr(request.state, "warnings", None)
    if not messages:
        return response
    if len(messages) > MAX_WARNINGS:  # a body of a thousand unknown keys gets a bounded answer
        messages = [*messages[:MAX_WARNINGS], f"... and {len(messages) - MAX_WARNINGS} more unknown field(s)"]
    messages = [m if len(m) <= 300 else m[:297] + "..." for m in messages]
    for message in messages:
        quoted = message.replace("\\", "\\\\").replace('"', '\\"')
        quoted = quoted.encode("ascii", "backslashreplace").decode()  # header values are Latin-1: keep them ASCII
        response.headers.append("Warning", f'199 dockyard "{quoted}"')
    if (response.media_type or "").startswith("application/json") and response.body.lstrip().startswith(b"{"):
        document = json.loads(response.body)
        document["warnings"] = [*document.get("warnings", []), *messages]
        response.body = json.dumps(document, separators=(",", ":")).encode()
        response.headers["content-length"] = str(len(response.body))
    return response


def describe(summary: str, request: type | dict | None = None, response: type | None = None,
             status: int = 200, *, partial: bool = False, array: bool = False,
             query: tuple[str, ...] = ()) -> Callable[[Described], Described]:
    """Attach OpenAPI facts to a handler (read by `scheduler.api.app.openapi`).

    `request`: the body's pydantic model, or a JSON schema (`$ref`s to models named in
    `components`); `partial`: every field optional (a partial update); `array`: a list
    of them; `query`: the query parameters the handler reads (`app.QUERY` types them)."""
    def mark(handler: Described) -> Described:
        handler.__dict__["openapi"] = {"summary": summary, "request": request, "response": response,
                                       "status": status, "partial": partial, "array": array, "query": query}
        return handler
    return mark


def request_limits(request: Request) -> limits.Limits:
    """The app's limits (scheduler/limits.py), else the process's (an app a test made bare)."""
    return getattr(request.app.state, "limits", None) or limits.current()


async def body_document(request: Request) -> Any:
    """The request body as JSON or YAML; 400 "Invalid JSON" when it is neither.

    Read in chunks up to `--max-request-bytes` (413 past it), nesting checked before
    anything parses it (422), NaN and infinities refused (400), YAML without aliases."""
    limit = request_limits(request)
    raw = b"".join([chunk async for chunk in _limited_stream(request, limit.max_request_bytes)])
    if not raw.strip():
        raise bad_json("/", "empty body")
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
        raise bad_json("/", str(error)[:500]) from None
    if "yaml" not in kind and not isinstance(document, (dict, list)):
        raise bad_json("/", why[:500])
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
    if paths and not privileged.may_run_privileged(request):
        raise ApiError(422, INVALID, privileged.details(paths))


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("1", "true", "yes")


def embeds(request: Request, *, prefixed: bool = False) -> set[str]:
    """`embed=a&embed=b` or `embed=a,b`, prefixes like `job.` dropped (kept with `prefixed`)."""
    out = set()
    for value in request.query_params.getlist("embed"):
        for item in value.split(","):
            item = item.strip()
            out.add(item.split(".", 1)[1] if "." in item and not prefixed else item)
    return out


def negotiate(accept: str | None, offered: list[str]) -> str | None:
    """The first of `offered` media types an `Accept` header takes, its best-rated range first
    (JAX-RS's variant selection, which Marathon's resources rely on); no `Accept` takes anything.
    None when it takes none of them. An offer may be a range itself (`text/*`)."""
    ranges: list[tuple[float, int, str, str]] = []
    for order, part in enumerate((accept or "*/*").split(",")):
        kind, *params = [p.strip() for p in part.split(";")]
        if "/" not in kind:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        major, minor = kind.lower().split("/", 1)
        ranges.append((quality, order, major, minor))
    for quality, _, major, minor in sorted(ranges, key=lambda r: (-r[0], r[1])):
        if quality <= 0:
            continue
        for offer in offered:
            o_major, o_minor = offer.split("/", 1)
            if major in ("*", o_major) or o_major == "*":
                if minor in ("*", o_minor) or o_minor == "*":
                    return offer
    return None


PING_VARIANTS = ["text/plain", "text/html", "application/json", "text/*"]


def ping_answer(accept: str | None) -> tuple[int, bytes, str | None]:
    """Marathon 1.5+'s `/ping` (SystemResource.ping): `"pong"` as JSON to a client that wants
    JSON, `pong` as text to one that takes text (text/plain for `*/*` or no Accept), and 204
    with no body to one that takes neither. (status, body, content type)."""
    chosen = negotiate(accept, PING_VARIANTS)
    if chosen == "application/json":
        return 200, b'"pong"', "application/json"
    if chosen is not None:
        return 200, b"pong", "text/plain" if chosen.endswith("/*") else chosen
    return 204, b"", None


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking domain code (locks, store I/O) off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)
