"""The scheduler's HTTP app: Metronome and Marathon routes, `/ping`, `/metrics`, `/openapi.json`.

The OpenAPI document is generated from the mounted routes and the pydantic
models their handlers declare (`common.describe`), so it cannot drift from
what the server actually serves.

Every route is made with its access decision (`common.api_route`); the app's
gate (`ctx.config.security.gate`) enforces them. `/ping` and `/health` are
open (Marathon 1.5+ answers `/ping` to anyone; supervisors and load balancers
probe `/health`); `/metrics` and `/openapi.json` are for viewers.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from framework.security.gate import Access
from scheduler.api import metronome
from scheduler.api.common import api_route

log = logging.getLogger(__name__)


def openapi(routes: list[BaseRoute], title: str = "dockyard scheduler") -> dict:
    """OpenAPI 3.1 from routes: path parameters, summaries, request/response schemas."""
    paths: dict[str, dict] = {}
    schemas: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        facts = getattr(route.endpoint, "openapi", None) or {}
        params = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "summary": facts.get("summary") or (route.endpoint.__doc__ or route.name or "").strip().split("\n")[0],
                "operationId": f"{method.lower()}_{route.name}",
                "responses": {str(facts.get("status", 200)): {"description": "OK"}},
            }
            if params:
                operation["parameters"] = [{"name": p, "in": "path", "required": True,
                                            "schema": {"type": "string"}} for p in params]
            for key, where in (("request", "requestBody"), ("response", "responses")):
                model = facts.get(key)
                if model is None:
                    continue
                schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    schemas[name] = definition
                schemas[model.__name__] = schema
                ref = {"$ref": f"#/components/schemas/{model.__name__}"}
                content = {"application/json": {"schema": ref}, "application/yaml": {"schema": ref}}
                if key == "request":
                    operation["requestBody"] = {"required": True, "content": content}
                else:
                    operation["responses"][str(facts.get("status", 200))]["content"] = {
                        "application/json": {"schema": ref}}
            if method in ("POST", "PUT", "PATCH"):
                operation["responses"].setdefault("400", {"description": "Invalid JSON"})
                operation["responses"].setdefault("422", {"description": "Object is not valid"})
            paths.setdefault(path, {})[method.lower()] = operation
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": paths,
            "components": {"schemas": schemas}}


def health_state(ctx: Any) -> dict:
    """What `/health` says of a leading (or the only) scheduler; healthy when `subscribed`."""
    core = ctx.core
    reconciled = getattr(core, "reconciled", None)
    state = {"subscribed": core.subscribed.is_set(), "frameworkId": core.framework_id,
             "reconciled": reconciled.is_set() if reconciled is not None else None}
    failure = getattr(core, "failure", None)
    if failure:
        state.update(subscribed=False, error=failure)
    return state


def build_app(ctx: Any) -> Starlette:
    routes: list[BaseRoute] = []
    if ctx.jobs is not None:
        routes += metronome.routes(ctx)
    try:
        from scheduler.api import marathon
    except ImportError:
        marathon = None  # the services engineer's module; absent until it lands
    if marathon is not None:
        try:
            routes += marathon.routes(ctx)
        except Exception:  # a broken Marathon API must not take the jobs API down with it
            log.exception("Marathon routes failed to load")

    async def ping(request: Request) -> Response:
        """Liveness: `pong`, as Marathon answers."""
        return PlainTextResponse("pong")

    async def health(request: Request) -> Response:
        """200 once subscribed to a master; 503 before, and for good once the master removed us."""
        state = health_state(ctx)
        return JSONResponse(state, status_code=200 if state["subscribed"] else 503)

    async def metrics(request: Request) -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    own = [api_route("/ping", ping, ["GET"], Access.OPEN), api_route("/health", health, ["GET"], Access.OPEN),
           api_route("/metrics", metrics, ["GET"], Access.READ)]
    document: dict[str, Any] = {}

    async def openapi_json(request: Request) -> Response:
        """This API, described."""
        if not document:
            document.update(openapi(own + routes))
        return JSONResponse(document)

    own.append(api_route("/openapi.json", openapi_json, ["GET"], Access.READ))
    app = Starlette(routes=own + routes)
    app.state.gate = ctx.config.security.gate
    app.state.halted = lambda: getattr(ctx.core, "failure", None)
    return app
