"""The scheduler API's one translation of the error tree (framework/errors.py) to HTTP.

Answers keep Marathon's shape (`{"message", "details"?}`) because existing clients
parse it: 400 "Invalid JSON", 422 "Object is not valid" with a `details` entry per
field path, 403, 404 and 409 with a message (a 409 for a locked app also lists the
`deployments` holding it), 503 while the state store is down. Every route served
through `common.api_route` is answered from here when its handler raises, and so is
a request Starlette refuses itself (no such route or method).
"""
from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from framework import bodies
from framework.errors import Conflict, DockyardError, Forbidden, NotFound, SpecError, StoreError
from scheduler.services.deployments import AppLocked

log = logging.getLogger(__name__)
INVALID = "Object is not valid"
BODY_MESSAGES = {400: "Invalid JSON", 408: "Request Timeout", 413: "Request Entity Too Large"}


class ApiError(DockyardError):
    """An answer the API layer itself decides (a malformed request): its status, as given."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def error_response(status: int, message: str, details: list[dict] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"message": message, **extra}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def invalid(path: str, *errors: str) -> ApiError:
    """Marathon's 422 naming one field."""
    return ApiError(422, INVALID, [{"path": path, "errors": list(errors)}])


def bad_json(path: str, error: str) -> ApiError:
    """Marathon's 400 for a body that is not the JSON a route reads."""
    return ApiError(400, "Invalid JSON", [{"path": path, "errors": [error]}])


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
    """The answer to an error a handler raised; anything outside the tree is a 500."""
    if isinstance(error, ApiError):
        return error_response(error.status, error.message, error.details)
    if isinstance(error, bodies.BodyError):
        response = error_response(error.status, BODY_MESSAGES.get(error.status, INVALID),
                                  [{"path": error.path, "errors": [error.message]}])
        if error.status in (408, 413):  # the rest of the body is not read: the connection cannot go on
            response.headers["Connection"] = "close"
        return response
    if isinstance(error, ValidationError):  # a stored or computed spec that no longer validates
        return error_response(422, INVALID, validation_details(error))
    if isinstance(error, SpecError):
        if error.field == "/" and error.message.startswith("Invalid JSON"):
            return error_response(400, "Invalid JSON", [{"path": "/", "errors": [error.message]}])
        return error_response(422, INVALID, error.details or [{"path": error.field, "errors": [error.message]}])
    if isinstance(error, NotFound):
        return error_response(404, str(error))
    if isinstance(error, Forbidden):
        return error_response(403, str(error), error.details)
    if isinstance(error, AppLocked):
        return error_response(409, str(error), deployments=[{"id": d} for d in error.deployments])
    if isinstance(error, Conflict):  # before StoreError: a lost versioned write is a conflict
        return error_response(409, str(error))
    if isinstance(error, StoreError):  # the store is down, not the request wrong: try again later
        return error_response(503, f"state store unavailable: {error}")
    return error_response(500, f"{type(error).__name__}: {error}")


async def render_refusal(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own refusals (no such route, a method the route does not serve), as an
    exception handler of the app: in Marathon's shape, as every other answer of this API."""
    status = getattr(error, "status_code", 500)
    detail = getattr(error, "detail", "") or "error"
    message = f"{detail}: {request.method} {request.url.path}"[:500]
    return JSONResponse({"message": message}, status_code=status, headers=getattr(error, "headers", None))


def render_failure(request: Request, error: Exception) -> JSONResponse:
    """`render_error`, with a 5xx other than 503 logged with its traceback."""
    response = render_error(error)
    if response.status_code >= 500 and response.status_code != 503:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return response
