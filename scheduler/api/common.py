"""Error rendering and request helpers shared by every API module.

Errors keep Marathon's shape (`{"message", "details"?}`) because existing
clients parse it: 400 "Invalid JSON", 422 "Object is not valid" with a
`details` entry per field path, 404 and 409 with a message.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Awaitable, Callable, Mapping

import yaml
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from framework.errors import ConflictError, DockyardError, SpecError, StoreError
from framework.security.gate import Access, access_of
from framework.security.gate import route as gated_route

Handler = Callable[[Request], Awaitable[Response]]


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


def render_error(error: Exception) -> JSONResponse:
    """Translate the domain's errors at the boundary; anything else is a 500."""
    if isinstance(error, ApiError):
        return error_response(error.status, error.message, error.details, **error.extra)
    details = getattr(error, "details", None)
    if isinstance(error, SpecError):
        if error.field == "/" and error.message.startswith("Invalid JSON"):
            return error_response(400, "Invalid JSON", [{"path": "/", "errors": [error.message]}])
        return error_response(422, "Object is not valid",
                              details or [{"path": error.field, "errors": [error.message]}])
    kind = type(error).__name__
    if kind == "NotFound":
        return error_response(404, str(error))
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
        return await endpoint(request)

    handler.access = access  # type: ignore[attr-defined]
    return handler


def guard(handler: Handler) -> Handler:
    """Wrap a handler so every domain error becomes Marathon's error answer."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as error:  # rendered, never swallowed: the client sees the reason
            response = render_error(error)
            if response.status_code >= 500:
                import logging

                logging.getLogger(__name__).exception("%s %s failed", request.method, request.url.path)
            return response
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    wrapped.__dict__.update(handler.__dict__)
    return wrapped


def describe(summary: str, request: type | None = None, response: type | None = None,
             status: int = 200) -> Callable[[Handler], Handler]:
    """Attach OpenAPI facts to a handler (read by `scheduler.api.app.openapi`)."""
    def mark(handler: Handler) -> Handler:
        handler.__dict__["openapi"] = {"summary": summary, "request": request, "response": response,
                                       "status": status}
        return handler
    return mark


async def body_document(request: Request) -> Any:
    """The request body as JSON or YAML; 400 "Invalid JSON" when it is neither."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["empty body"]}])
    kind = request.headers.get("content-type", "")
    try:
        if "yaml" in kind:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except ValueError:
        pass
    except yaml.YAMLError as error:
        raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": [str(error)]}]) from None
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError:
        document = None
    if not isinstance(document, (dict, list)):
        raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["error.expected.jsobject"]}])
    return document


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
