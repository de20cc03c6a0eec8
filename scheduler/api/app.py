"""The scheduler's HTTP app: Metronome and Marathon routes (`/ping` among them), `/metrics`, `/openapi.json`.

The OpenAPI document is generated from the mounted routes and the pydantic
models their handlers declare (`common.describe`), so it cannot drift from
what the server actually serves.

Every route is made with its access decision (`common.api_route`); the app's
gate (`ctx.config.security.gate`) enforces them. `/ping` and `/health` are
open (Marathon 1.5+ answers `/ping` to anyone; supervisors and load balancers
probe `/health`); `/metrics` and `/openapi.json` are for viewers.
"""
from __future__ import annotations

import re
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from framework.bodies import BodyLimit, json_render
from framework.security.gate import Access
from scheduler.api import marathon, metronome
from scheduler.api.common import api_route
from scheduler.api.errors import render_refusal
from scheduler.context import Context
from scheduler.secrets import api as secrets_api
from scheduler.ui import ui_routes

BOOLEAN = {"type": "boolean"}
TEXT = {"type": "string", "maxLength": 1024}
# The query parameters handlers read, typed once (a handler lists the names it reads).
QUERY: dict[str, dict] = {
    "force": BOOLEAN, "scale": BOOLEAN, "dryRun": BOOLEAN, "partialUpdate": BOOLEAN, "all": BOOLEAN,
    "stopCurrentJobRuns": BOOLEAN, "embed": TEXT, "id": TEXT, "cmd": TEXT, "label": TEXT, "host": TEXT,
    "status": TEXT, "event_type": TEXT, "jobId": TEXT, "runId": TEXT, "wipe": BOOLEAN, "backup": TEXT,
    "restore": TEXT,
}
ERROR_SCHEMA = {
    "type": "object", "required": ["message"],
    "properties": {"message": {"type": "string"},
                   "details": {"type": "array", "items": {
                       "type": "object", "required": ["path", "errors"],
                       "properties": {"path": {"type": "string"},
                                      "errors": {"type": "array", "items": {"type": "string"}}}}}},
}
ERRORS = {"400": "Invalid JSON", "401": "Not authenticated", "403": "Not authorized", "404": "Not found",
          "408": "Request body too slow", "409": "Conflict (an existing object, or a locked app)",
          "413": "Request body too large", "422": "Object is not valid", "503": "Not ready to act"}


def _model_schemas(models: list[type]) -> tuple[dict[type, dict], dict[str, Any]]:
    """Each model's schema and the components they refer to, made in one pass so that two
    models of one name (services' and jobs' `Volume`) get two names."""
    from pydantic.json_schema import models_json_schema

    keyed, definitions = models_json_schema([(m, "validation") for m in models], by_alias=True,
                                            ref_template="#/components/schemas/{model}")
    schemas = dict(definitions.get("$defs", {}))
    return {model: keyed[(model, "validation")] for model in models}, schemas


def _ref(model: type, refs: dict[type, dict], schemas: dict[str, Any], partial: bool = False) -> dict:
    """A `$ref` to `model`'s schema; `partial` (a partial update) refers to a copy without `required`."""
    ref = refs[model]
    if not partial:
        return ref
    name = ref["$ref"].rsplit("/", 1)[-1]
    update = dict(schemas[name])
    update.pop("required", None)
    schemas[name + "Update"] = update
    return {"$ref": f"#/components/schemas/{name}Update"}


def openapi(routes: list[BaseRoute], title: str = "dockyard scheduler",
            models: tuple[type, ...] = ()) -> dict:
    """OpenAPI 3.1 from routes: path and query parameters, summaries, request/response schemas.

    `models` are added to the components whether or not a route names them (schemas
    given as JSON refer to them)."""
    facts_of = [(route, getattr(route.endpoint, "openapi", None) or {}) for route in routes
                if isinstance(route, Route)]
    named = list(models)
    for _, facts in facts_of:
        for key in ("request", "response"):
            if isinstance(facts.get(key), type) and facts[key] not in named:
                named.append(facts[key])
    refs, schemas = _model_schemas(named) if named else ({}, {})
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict] = {}
    for route, facts in facts_of:
        params = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            status = str(facts.get("status", 200))
            operation: dict[str, Any] = {
                "summary": facts.get("summary") or (route.endpoint.__doc__ or route.name or "").strip().split("\n")[0],
                "operationId": f"{method.lower()}_{route.name}",
                "responses": {status: {"description": "OK"}},
            }
            parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                          for p in params]
            parameters += [{"name": q, "in": "query", "required": False, "schema": QUERY[q]}
                           for q in facts.get("query", ())]
            if parameters:
                operation["parameters"] = parameters
            request = facts.get("request")
            if request is not None and method in ("POST", "PUT", "PATCH"):
                schema = request if isinstance(request, dict) else _ref(request, refs, schemas,
                                                                        partial=facts.get("partial", False))
                if facts.get("array"):
                    schema = {"type": "array", "items": schema}
                content = {"application/json": {"schema": schema}, "application/yaml": {"schema": schema}}
                operation["requestBody"] = {"required": True, "content": content}
            response = facts.get("response")
            if response is not None:
                operation["responses"][status]["content"] = {"application/json": {"schema": refs[response]}}
            for code, description in ERRORS.items():
                operation["responses"].setdefault(code, {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
            paths.setdefault(path, {})[method.lower()] = operation
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
            "security": [{"basic": []}]}


def health_state(ctx: Context) -> dict:
    """What `/health` says of a leading (or the only) scheduler; healthy when `subscribed`."""
    core = ctx.core
    state = {"subscribed": core.subscribed.is_set(), "frameworkId": core.framework_id,
             "reconciled": core.reconciled.is_set()}
    if core.failure:
        state.update(subscribed=False, error=core.failure)
    return state


def build_app(ctx: Context) -> Starlette:
    routes: list[BaseRoute] = [*metronome.routes(ctx), *secrets_api.routes(ctx), *marathon.routes(ctx)]

    async def health(request: Request) -> Response:
        """200 once subscribed to a master; 503 before, and for good once the master removed us."""
        state = health_state(ctx)
        return JSONResponse(state, status_code=200 if state["subscribed"] else 503)

    async def metrics(request: Request) -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    own = [api_route("/health", health, ["GET"], Access.OPEN),
           api_route("/metrics", metrics, ["GET"], Access.READ)]
    document: dict[str, Any] = {}

    async def openapi_json(request: Request) -> Response:
        """This API, described."""
        if not document:
            document.update(openapi(own + routes, models=_models()))
        return JSONResponse(document)

    own.append(api_route("/openapi.json", openapi_json, ["GET"], Access.READ))
    limits = ctx.config.limits
    app = Starlette(routes=own + routes + ui_routes(ctx), middleware=[
        Middleware(BodyLimit, max_bytes=limits.max_request_bytes, render=json_render,
                   body_timeout=limits.body_timeout)], exception_handlers={HTTPException: render_refusal})
    app.state.gate = ctx.config.security.gate
    app.state.security = ctx.config.security
    app.state.limits = limits
    app.state.halted = lambda: ctx.core.failure
    return app


def _models() -> tuple[type, ...]:
    """The spec models request schemas refer to by name."""
    from scheduler.jobs.specs import JobSpec, Schedule
    from scheduler.services.specs import AppDefinition

    return (AppDefinition, JobSpec, Schedule)
