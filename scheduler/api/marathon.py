"""Marathon v2 REST API over the service manager. Handlers only translate.

App ids are greedy paths (`/v2/apps/group/app/tasks`), and the double slash the
`marathon` client sends (`/v2/apps//app`) is accepted. Every change answers with a
deployment (`deploymentId`, `version`, header `Marathon-Deployment-Id`); a locked
app answers 409 listing the deployments that hold it.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from framework.security.gate import Access
from scheduler.api.common import (ApiError, api_route, body_document, describe, embeds, error_response, flag, guard,
                                  in_thread)
from scheduler.api.sandbox import sandbox_finder
from scheduler.events import EVENT_TYPES
from scheduler.services.manager import Conflict, NotFound, ServiceManager
from scheduler.services.specs import AppDefinition, normalise_id, parse_app

KEEPALIVE_SECONDS = 15.0
READ, WRITE = Access.READ, Access.WRITE


def _app_id(request: Request) -> str:
    try:
        return normalise_id(request.path_params["app_id"])
    except ValueError as error:
        raise ApiError(422, "Object is not valid", [{"path": "/id", "errors": [str(error)]}]) from None


def _deployment_result(deployment: Any, status: int = 200, body: dict | None = None,
                       headers: dict | None = None) -> Response:
    payload = body if body is not None else {"deploymentId": deployment.id, "version": deployment.version}
    return JSONResponse(payload, status_code=status,
                        headers={"Marathon-Deployment-Id": deployment.id, **(headers or {})})


def handle(handler: Any) -> Any:
    """`guard`, plus Marathon's 409 body (`deployments`) for a locked app."""
    guarded = guard(handler)

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Conflict as error:
            extra = {"deployments": [{"id": d} for d in error.deployments]} if error.deployments else {}
            return error_response(409, str(error), **extra)
        except NotFound as error:
            return error_response(404, str(error))
        except Exception:
            return await guarded(request)
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    wrapped.__dict__.update(handler.__dict__)
    return wrapped


def _label_filter(selector: str):
    """Marathon's label selector: `k`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`."""
    checks = []
    for part in filter(None, (p.strip() for p in selector.split(","))):
        if "==" in part:
            key, value = part.split("==", 1)
            checks.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) == v)
        elif "!=" in part:
            key, value = part.split("!=", 1)
            checks.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) != v)
        else:
            checks.append(lambda labels, k=part: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def _tasks_text(views: list[dict]) -> str:
    """`text/plain` tasks: `appId servicePort host:port...` per line, as Marathon."""
    lines = []
    for task in views:
        for index, port in enumerate(task.get("servicePorts") or [0]):
            hosts = [f"{task['host']}:{task['ports'][index]}"] if index < len(task["ports"]) else []
            lines.append("\t".join([task["appId"].strip("/").replace("/", "_"), str(port), *hosts]))
    return "\n".join(lines) + ("\n" if lines else "")


def routes(ctx: Any) -> list[Route]:
    services: ServiceManager | None = ctx.services
    if services is None:
        return []

    def record_of(task_id: str) -> Any:
        record = ctx.core.get(task_id)
        if record is None or not record.owner.startswith("app:"):
            raise NotFound(f"Task '{task_id}' does not exist")
        return record

    # -- apps -------------------------------------------------------------------------------

    @handle
    @describe("List apps (embed=apps.tasks|apps.counts|apps.deployments|apps.lastTaskFailure|...)")
    async def list_apps(request: Request) -> Response:
        embed = embeds(request)
        wanted_id = request.query_params.get("id")
        wanted_cmd = request.query_params.get("cmd")
        label = _label_filter(request.query_params.get("label", ""))
        out = []
        for app_id, state in sorted(list(services.apps.items())):
            if state.deleting:
                continue
            if wanted_id and wanted_id not in app_id:
                continue
            if wanted_cmd and wanted_cmd not in (state.app.cmd or ""):
                continue
            if not label(state.app.labels):
                continue
            out.append(services.app_view(state, embed))
        return JSONResponse({"apps": out})

    @handle
    @describe("Create an app (a deployment starts it)", request=AppDefinition, status=201)
    async def create_app(request: Request) -> Response:
        document = await body_document(request)
        app = parse_app(document)
        state, deployment = await in_thread(services.create, app)
        ctx.events.publish("api_post_event", clientIp=request.client.host if request.client else "",
                           uri=request.url.path, appDefinition=state.app.out())
        body = services.app_view(state, set())
        return _deployment_result(deployment, 201, body, {"Location": f"/v2/apps{state.app.id}"})

    @handle
    @describe("Update many apps")
    async def update_apps(request: Request) -> Response:
        documents = await body_document(request)
        if not isinstance(documents, list):
            raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["error.expected.jsarray"]}])
        last = None
        for document in documents:
            app_id = normalise_id(str(document.get("id", "")))
            _, last, _ = await in_thread(services.update, app_id, document,
                                         partial=request.method == "PATCH" or flag_default(request),
                                         force=flag(request, "force"))
        if last is None:
            raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["no apps given"]}])
        return _deployment_result(last)

    def flag_default(request: Request) -> bool:
        return request.query_params.get("partialUpdate", "true").lower() != "false"

    @handle
    @describe("Show an app (tasks, counts, deployments and lastTaskFailure embedded)")
    async def get_app(request: Request) -> Response:
        state = services.get(_app_id(request))
        return JSONResponse({"app": services.app_view(state, embeds(request), single=True)})

    @handle
    @describe("Replace or patch an app (a new version); {\"version\": v} rolls back", request=AppDefinition)
    async def put_app(request: Request) -> Response:
        app_id = _app_id(request)
        document = await body_document(request)
        if not isinstance(document, dict):
            raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["error.expected.jsobject"]}])
        if "id" in document and normalise_id(str(document["id"])) != app_id:
            raise ApiError(422, "Object is not valid",
                           [{"path": "/id", "errors": ["the id in the body differs from the URL"]}])
        partial = request.method == "PATCH" or flag_default(request)
        state, deployment, created = await in_thread(services.update, app_id, document, partial=partial,
                                                     force=flag(request, "force"))
        ctx.events.publish("api_post_event", clientIp=request.client.host if request.client else "",
                           uri=request.url.path, appDefinition=state.app.out())
        return _deployment_result(deployment, 201 if created else 200)

    @handle
    @describe("Delete an app (its instances are stopped)")
    async def delete_app(request: Request) -> Response:
        deployment = await in_thread(services.delete, _app_id(request), flag(request, "force"))
        return _deployment_result(deployment)

    @handle
    @describe("Restart every instance (rolling, following upgradeStrategy)")
    async def restart_app(request: Request) -> Response:
        deployment = await in_thread(services.restart, _app_id(request), flag(request, "force"))
        return _deployment_result(deployment)

    @handle
    @describe("An app's tasks")
    async def app_tasks(request: Request) -> Response:
        state = services.get(_app_id(request))
        views = [services.task_view(r, state) for r in services.records(state.app.id)]
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse(_tasks_text(views))
        return JSONResponse({"tasks": views})

    @handle
    @describe("Kill an app's tasks (host=, scale=true lowers instances)")
    async def kill_app_tasks(request: Request) -> Response:
        state = services.get(_app_id(request))
        host = request.query_params.get("host")
        records = [r for r in services.records(state.app.id) if not host or r.hostname == host]
        ids = [r.task_id for r in records]
        result = await in_thread(services.kill_tasks, ids, flag(request, "scale"), flag(request, "force"))
        if flag(request, "scale") and result:
            return _deployment_result(result[-1])
        return JSONResponse({"tasks": [services.task_view(r, state) for r in records]})

    @handle
    @describe("Kill one task (scale=true lowers instances)")
    async def kill_app_task(request: Request) -> Response:
        state = services.get(_app_id(request))
        record = record_of(request.path_params["task_id"])
        result = await in_thread(services.kill_tasks, [record.task_id], flag(request, "scale"),
                                 flag(request, "force"))
        if flag(request, "scale") and result:
            return _deployment_result(result[-1])
        return JSONResponse({"task": services.task_view(record, state)})

    @handle
    @describe("An app's versions")
    async def app_versions(request: Request) -> Response:
        state = services.get(_app_id(request))
        return JSONResponse({"versions": sorted(state.versions, reverse=True)})

    @handle
    @describe("An app as it was at a version")
    async def app_version(request: Request) -> Response:
        state = services.get(_app_id(request))
        version = request.path_params["version"]
        if version not in state.versions:
            raise NotFound(f"App '{state.app.id}' does not exist in version {version}")
        return JSONResponse(AppDefinition.model_validate(state.versions[version]).out())

    # -- tasks -------------------------------------------------------------------------------

    @handle
    @describe("Every app task (status=running|staging|...)")
    async def list_tasks(request: Request) -> Response:
        wanted = {s.lower() for v in request.query_params.getlist("status") for s in v.split(",") if s}
        views = []
        for app_id, state in sorted(list(services.apps.items())):
            for record in services.records(app_id):
                view = services.task_view(record, state)
                if wanted and view["state"].removeprefix("TASK_").lower() not in wanted:
                    continue
                views.append(view)
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse(_tasks_text(views))
        return JSONResponse({"tasks": views})

    @handle
    @describe("Kill tasks by id (scale=true lowers their apps' instances)")
    async def delete_tasks(request: Request) -> Response:
        document = await body_document(request)
        ids = document.get("ids") if isinstance(document, dict) else None
        if not isinstance(ids, list):
            raise ApiError(400, "Invalid JSON", [{"path": "/ids", "errors": ["error.expected.jsarray"]}])
        try:
            records = [record_of(str(t)) for t in ids]
        except NotFound as error:
            raise ApiError(400, str(error)) from None
        result = await in_thread(services.kill_tasks, [r.task_id for r in records], flag(request, "scale"),
                                 flag(request, "force"))
        if flag(request, "scale") and result:
            return _deployment_result(result[-1])
        return JSONResponse({"tasks": [services.task_view(r) for r in records]})

    # -- deployments ---------------------------------------------------------------------------

    @handle
    @describe("Running deployments")
    async def list_deployments(request: Request) -> Response:
        return JSONResponse([d.view() for d in list(services.deployments.values())])

    @handle
    @describe("Cancel a deployment: roll back (200), or with force=true just stop (202)")
    async def delete_deployment(request: Request) -> Response:
        force = flag(request, "force")
        rollback = await in_thread(services.cancel, request.path_params["deployment_id"], force)
        if force or rollback is None:
            return Response(status_code=202)
        return _deployment_result(rollback)

    # -- groups (the basics: a tree built from app ids) --------------------------------------------

    def group_view(group_id: str, embed: set[str]) -> dict:
        prefix = group_id.rstrip("/") + "/"
        apps = [s for i, s in sorted(list(services.apps.items())) if i.startswith(prefix) and not s.deleting]
        direct = [s for s in apps if "/" not in s.app.id[len(prefix):]]
        children = sorted({prefix + s.app.id[len(prefix):].split("/")[0] for s in apps if s not in direct})
        versions = [s.app.version or "" for s in apps]
        return {"id": group_id or "/", "apps": [services.app_view(s, embed) for s in direct],
                "groups": [group_view(c, embed) for c in children], "pods": [], "dependencies": [],
                "version": max(versions) if versions else None, "enforceRole": False}

    @handle
    @describe("The group tree")
    async def get_group(request: Request) -> Response:
        raw = request.path_params.get("group_id", "").strip("/")
        group_id = "/" + raw if raw else "/"
        if group_id != "/" and not any(i.startswith(group_id + "/") for i in list(services.apps)):
            raise NotFound(f"Group '{group_id}' does not exist")
        return JSONResponse(group_view(group_id if group_id != "/" else "", embeds(request)))

    @handle
    @describe("Create or update a group's apps (scaleBy, dryRun=true)")
    async def put_group(request: Request) -> Response:
        raw = request.path_params.get("group_id", "").strip("/")
        document = await body_document(request)
        if not isinstance(document, dict):
            raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["error.expected.jsobject"]}])
        group_id = "/" + (raw or str(document.get("id", "")).strip("/"))
        deployments = []
        if "scaleBy" in document:
            factor = float(document["scaleBy"])
            for app_id, state in list(services.apps.items()):
                if app_id.startswith(group_id.rstrip("/") + "/"):
                    deployments.append(await in_thread(services.scale, app_id,
                                                       int(round(state.app.instances * factor)),
                                                       flag(request, "force")))
        members = []
        for app in document.get("apps") or []:
            app_id = str(app.get("id", ""))
            if not app_id.startswith("/"):
                app_id = group_id.rstrip("/") + "/" + app_id
            members.append((normalise_id(app_id), app))
        # the whole group is checked before any of it is deployed: a bad member changes nothing
        if flag(request, "dryRun"):
            for app_id, app in members:
                parse_app({**app, "id": app_id})
        services.check_dependencies({app_id: list(app["dependencies"]) for app_id, app in members
                                     if isinstance(app.get("dependencies"), list)})
        for app_id, app in members if not flag(request, "dryRun") else []:
            _, deployment, _ = await in_thread(services.update, app_id, {**app, "id": app_id}, partial=True,
                                               force=flag(request, "force"))
            deployments.append(deployment)
        if flag(request, "dryRun"):
            return JSONResponse({"steps": []})
        if not deployments:
            return JSONResponse({"deploymentId": None, "version": None})
        status = 201 if request.method == "POST" else 200
        return _deployment_result(deployments[-1], status)

    @handle
    @describe("Delete a group and its apps")
    async def delete_group(request: Request) -> Response:
        group_id = "/" + request.path_params.get("group_id", "").strip("/")
        last = None
        for app_id in list(services.apps):
            if app_id.startswith(group_id.rstrip("/") + "/"):
                last = await in_thread(services.delete, app_id, True)
        if last is None:
            raise NotFound(f"Group '{group_id}' does not exist")
        return _deployment_result(last)

    # -- queue, info, leader, events -------------------------------------------------------------

    @handle
    @describe("Apps waiting to launch: backoff delay and the offers they saw (embed=lastUnusedOffers)")
    async def get_queue(request: Request) -> Response:
        last_unused = "lastUnusedOffers" in embeds(request)
        return JSONResponse({"queue": await in_thread(services.queue_view, last_unused)})

    @handle
    @describe("Reset an app's launch backoff")
    async def reset_delay(request: Request) -> Response:
        await in_thread(services.reset_delay, _app_id(request))
        return Response(status_code=204)

    @handle
    @describe("About this Marathon-compatible server")
    async def info(request: Request) -> Response:
        config = ctx.config
        leader = f"{config.ip}:{config.port}"
        return JSONResponse({
            "name": "dockyard", "version": "1.10.0", "buildref": "dockyard", "elected": True, "leader": leader,
            "frameworkId": ctx.core.framework_id,
            "marathon_config": {"master": config.master, "framework_name": config.name, "hostname": config.ip,
                                "checkpoint": True, "failover_timeout": 604800, "ha": bool(config.zk),
                                "mesos_role": None, "mesos_user": None, "webui_url": None,
                                "decline_offer_duration": 120000, "features": []},
            "zookeeper_config": {"zk": config.zk, "zk_timeout": 10000, "zk_session_timeout": 10000,
                                 "zk_max_versions": 50},
            "http_config": {"http_port": config.port, "https_port": 8443},
        })

    @handle
    @describe("The leading scheduler")
    async def leader(request: Request) -> Response:
        return JSONResponse({"leader": f"{ctx.config.ip}:{ctx.config.port}"})

    async def events(request: Request) -> Response:
        """Server-sent events with Marathon's event types (`event_type` filters)."""
        types = [t for v in request.query_params.getlist("event_type") for t in v.split(",") if t]
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            return error_response(400, f"Unknown event type(s): {', '.join(unknown)}")
        subscription = ctx.events.subscribe(types or None)
        client = request.client.host if request.client else ""
        attached = {"eventType": "event_stream_attached", "remoteAddress": client}

        async def stream() -> AsyncIterator[bytes]:
            try:
                if not types or "event_stream_attached" in types:
                    from scheduler.events import marathon_time

                    attached["timestamp"] = marathon_time()
                    yield f"event: event_stream_attached\ndata: {json.dumps(attached)}\n\n".encode()
                else:
                    yield b":\n\n"  # headers out now: the client knows it is attached
                while True:
                    event = await subscription.aget(KEEPALIVE_SECONDS)
                    if event is None:
                        yield b"\n"  # keep-alive
                        continue
                    yield f"event: {event['eventType']}\ndata: {json.dumps(event)}\n\n".encode()
            except asyncio.CancelledError:
                raise
            finally:
                subscription.close()
                ctx.events.publish("event_stream_detached", remoteAddress=client)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def subscriptions_gone(request: Request) -> Response:
        """Removed in Marathon 1.5: the event stream replaces callbacks."""
        return error_response(404, "Event subscriptions are not supported; use /v2/events")

    @handle
    @describe("dockyard: where an app's instances would go now, and why not (no launch)")
    async def plan_app(request: Request) -> Response:
        app = parse_app(await body_document(request))
        return JSONResponse(await in_thread(services.plan_preview, app))

    @handle
    @describe("dockyard: where a task's output lives (for `dockyard task logs`)")
    async def task_files(request: Request) -> Response:
        record = record_of(request.path_params["task_id"])
        agent = ctx.core.agent(record.agent_id) if record.agent_id else None
        url = (agent or {}).get("url")
        sandbox = None
        if url:
            finder = sandbox_finder(ctx)
            directory = await in_thread(finder.executor_directory, url, ctx.core.framework_id, record.task_id)
            if directory:
                relative = record.sandbox or "."
                sandbox = directory if relative in (".", "") else f"{directory}/{relative}"
        state = services.task_view(record)["state"]
        return JSONResponse({"id": record.task_id, "state": state, "sandbox": sandbox, "agentUrl": url})

    app_path = "/v2/apps/{app_id:path}"
    return [
        api_route("/v2/apps", list_apps, ["GET"], READ),
        api_route("/v2/apps", create_app, ["POST"], WRITE),
        api_route("/v2/apps", update_apps, ["PUT", "PATCH"], WRITE),
        api_route(app_path + "/tasks/{task_id}", kill_app_task, ["DELETE"], WRITE),
        api_route(app_path + "/tasks", app_tasks, ["GET"], READ),
        api_route(app_path + "/tasks", kill_app_tasks, ["DELETE"], WRITE),
        api_route(app_path + "/restart", restart_app, ["POST"], WRITE),
        api_route(app_path + "/versions/{version}", app_version, ["GET"], READ),
        api_route(app_path + "/versions", app_versions, ["GET"], READ),
        api_route(app_path, get_app, ["GET"], READ),
        api_route(app_path, put_app, ["PUT", "PATCH"], WRITE),
        api_route(app_path, delete_app, ["DELETE"], WRITE),
        api_route("/v2/tasks", list_tasks, ["GET"], READ),
        api_route("/v2/tasks/delete", delete_tasks, ["POST"], WRITE),
        api_route("/v2/deployments", list_deployments, ["GET"], READ),
        api_route("/v2/deployments/{deployment_id}", delete_deployment, ["DELETE"], WRITE),
        api_route("/v2/groups", get_group, ["GET"], READ),
        api_route("/v2/groups", put_group, ["POST", "PUT", "PATCH"], WRITE),
        api_route("/v2/groups/{group_id:path}", get_group, ["GET"], READ),
        api_route("/v2/groups/{group_id:path}", put_group, ["POST", "PUT", "PATCH"], WRITE),
        api_route("/v2/groups/{group_id:path}", delete_group, ["DELETE"], WRITE),
        api_route("/v2/queue", get_queue, ["GET"], READ),
        api_route("/v2/queue/{app_id:path}/delay", reset_delay, ["DELETE"], WRITE),
        api_route("/v2/info", info, ["GET"], READ),
        api_route("/v2/leader", leader, ["GET"], READ),
        api_route("/v2/events", events, ["GET"], READ),
        api_route("/v2/eventSubscriptions", subscriptions_gone, ["GET", "POST", "DELETE"],
                  {"GET": READ, "POST": WRITE, "DELETE": WRITE}),
        # A dry run: it changes nothing, so a viewer may ask where an app would go.
        api_route("/dockyard/v1/plan", plan_app, ["POST"], READ),
        api_route("/dockyard/v1/tasks/{task_id}", task_files, ["GET"], READ),
    ]
