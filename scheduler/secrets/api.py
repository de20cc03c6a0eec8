"""The secret store's REST API, on DC/OS's paths (`/secrets/v1/secret/default/<path>`).

- `PUT` a value (JSON `{"value": "<text>"}`, or the raw bytes as
  `application/octet-stream`): creates the secret (201) or writes a new version (200);
  `PATCH` only writes a new version of an existing one;
- `GET` answers its metadata, never its value (DC/OS answers the value: here only a
  launch ever carries it); `GET .../<prefix>?list=true` lists the paths below, as
  DC/OS, plus each one's metadata;
- `DELETE` removes it (204);
- `POST /secrets/v1/rotate-key` (dockyard's): every secret sealed again with the
  current key of `--secrets-key-file` (`{"generate": true}` first puts a new key on
  top of it, `{"prune": true}` then drops the old ones);
- `GET /dockyard/v1/secrets/usage?appId=/app` (or `jobId=`): which version of
  which secret each task of an app or job was given.

Writes are for admins (the gate), and `--secrets-acls` may narrow them to some paths.
Handlers only translate; `SecretStore` decides.
"""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from framework.errors import SpecError
from framework.security.gate import Access, principal_name
from scheduler.api.common import api_route, describe, flag, in_thread
from scheduler.api.errors import ApiError
from scheduler.secrets.store import FEATURE_OFF, MAX_VALUE_BYTES, SecretStore

PREFIX = "/secrets/v1/secret/default"
READ, WRITE = Access.READ, Access.WRITE


def _store(ctx: Any) -> SecretStore:
    secrets = getattr(ctx, "secrets", None)
    if not isinstance(secrets, SecretStore):
        raise ApiError(404, FEATURE_OFF)
    return secrets


async def _value(request: Request) -> bytes:
    """The value a PUT or PATCH carries: JSON `{"value": text}`, else the body's bytes."""
    raw = await request.body()
    if len(raw) > 4 * MAX_VALUE_BYTES:
        raise ApiError(413, "Request Entity Too Large", [{"path": "/value", "errors": [
            f"a secret holds at most {MAX_VALUE_BYTES} bytes"]}])
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/octet-stream":
        return raw
    try:
        document = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": [
            'expected {"value": "<text>"}, or the value itself as application/octet-stream']}]) from None
    if not isinstance(document, dict) or not isinstance(document.get("value"), str):
        raise SpecError("/value", 'expected {"value": "<text>"}')
    return document["value"].encode()


def routes(ctx: Any) -> list[Route]:
    @describe("A secret's metadata (never its value); ?list=true: the secrets below a path")
    async def get_secret(request: Request) -> Response:
        store = _store(ctx)
        path = request.path_params.get("path", "")
        if flag(request, "list") or not path.strip("/"):
            metas = store.list(path)
            return JSONResponse({"array": [m.path for m in metas], "secrets": [m.to_api() for m in metas]})
        return JSONResponse(store.get(path).to_api())

    @describe("Create a secret, or write a new version of it", status=201)
    async def put_secret(request: Request) -> Response:
        store = _store(ctx)
        value = await _value(request)
        meta, created = await in_thread(store.put, request.path_params["path"], value, principal_name(request))
        return JSONResponse(meta.to_api(), status_code=201 if created else 200)

    @describe("Write a new version of an existing secret")
    async def patch_secret(request: Request) -> Response:
        store = _store(ctx)
        value = await _value(request)
        meta, _ = await in_thread(store.put, request.path_params["path"], value, principal_name(request),
                                  must_exist=True)
        return JSONResponse(meta.to_api())

    @describe("Remove a secret", status=204)
    async def delete_secret(request: Request) -> Response:
        store = _store(ctx)
        await in_thread(store.delete, request.path_params["path"], principal_name(request))
        return Response(status_code=204)

    @describe("Seal every secret again with the current key of --secrets-key-file")
    async def rotate_key(request: Request) -> Response:
        store = _store(ctx)
        raw = await request.body()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["expected a JSON object"]}]) from None
        if not isinstance(options, dict):
            raise SpecError("/", "expected a JSON object")
        result = await in_thread(store.rotate, generate=bool(options.get("generate")),
                                 prune=bool(options.get("prune")))
        return JSONResponse(result)

    @describe("Which version of which secret each task of an app (appId=) or a job (jobId=) was given")
    async def usage(request: Request) -> Response:
        app_id, job_id = request.query_params.get("appId"), request.query_params.get("jobId")
        if bool(app_id) == bool(job_id):
            raise SpecError("/", "give appId or jobId")
        owner = f"app:/{app_id.strip('/')}" if app_id else f"job:{job_id}/"
        records = [r for r in ctx.core.tasks(owner)
                   if (r.owner == owner if app_id else True) and r.secrets]
        return JSONResponse({"tasks": [{"taskId": r.task_id, "state": r.state.value, "secrets": dict(r.secrets)}
                                       for r in sorted(records, key=lambda r: r.created_at)]})

    item = PREFIX + "/{path:path}"
    return [
        api_route(PREFIX, get_secret, ["GET"], READ),
        api_route(item, get_secret, ["GET"], READ),
        api_route(item, put_secret, ["PUT"], WRITE),
        api_route(item, patch_secret, ["PATCH"], WRITE),
        api_route(item, delete_secret, ["DELETE"], WRITE),
        api_route("/secrets/v1/rotate-key", rotate_key, ["POST"], WRITE),
        api_route("/dockyard/v1/secrets/usage", usage, ["GET"], READ),
    ]
