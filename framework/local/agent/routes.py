"""The agent's HTTP surface: executor API, files API, /state, monitor, health, metrics.

Handlers translate HTTP to calls on `Agent` and back; the rules live there.
The executor API answers as the real agent does (src/slave/http.cpp, `Http::executor`).

Every route says who may call it (framework/security/gate.py): READ for the
views (realm `mesos-agent-readonly`), WRITE for the debug API `/api/v1`
(realm `mesos-agent-readwrite`, framework/local/agent/api.py), EXECUTOR for the
executor API (realm `mesos-agent-executor`, executor tokens only), OPEN for
`/health`; the agent's flags decide which levels authenticate
(framework/local/agent/security.py).

Executor calls are read under limits (framework/bodies.py): at most
`--max-request-bytes` (`MAX_BODY_BYTES` unless set; 413, before a byte of a larger body
is read), nested at most `MAX_JSON_DEPTH` deep, no NaN or infinities (400); a malformed
call is a 4xx, never a 500. Protobuf is answered as the master answers it
(docs/mesos-compatibility.md).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import AsyncIterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from framework import bodies
from framework.local.agent import api, views
from framework.local.agent.core import Agent
from framework.local.agent.model import AgentConfig, ExecutorCallError
from framework.local.agent.files_api import FilesApi
from framework.local.agent.nested_io import coalesced
from framework.local.master.validation import EXECUTOR_CALL, shape_error
from framework.mesos.messages import valid_uuid
from framework.security.acls import ALLOW_ALL
from framework.security.gate import Access, principal_name, principal_of, route

log = logging.getLogger(__name__)

CALL_TYPES = {"SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT", "UNKNOWN"}
MAX_BODY_BYTES = AgentConfig.max_request_bytes  # the default of --max-request-bytes
MAX_JSON_DEPTH = 64
JSON, PROTOBUF = "application/json", "application/x-protobuf"


def text(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status)


def _id_value(obj: object) -> str | None:
    """`obj["value"]` of a Mesos ID message, when `obj` is one (a string value)."""
    value = obj.get("value") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def missing_fields(call: dict) -> list[str]:
    """The proto2 `required` fields of executor.proto's Call the JSON lacks (stout's conversion
    refuses such a call before anything validates it)."""
    missing = [f"{name}.value" if isinstance(call.get(name), dict) else name
               for name in ("executor_id", "framework_id") if _id_value(call.get(name)) is None]
    update = call.get("update")
    if isinstance(update, dict):
        status = update.get("status")
        if not isinstance(status, dict):
            missing.append("update.status")
        else:
            if _id_value(status.get("task_id")) is None:
                missing.append("update.status.task_id")
            if "state" not in status:
                missing.append("update.status.state")
    if isinstance(call.get("message"), dict) and "data" not in call["message"]:
        missing.append("message.data")
    return missing


def validate_call(call: dict) -> str | None:
    """src/common/validation.cpp `validateExecutorCall`: the reason a call is malformed, or None."""
    kind = call.get("type")
    if kind not in CALL_TYPES:
        return "Expecting 'type' to be present"  # an unknown enum value is dropped by the conversion
    executor_id, framework_id = call["executor_id"]["value"], call["framework_id"]["value"]
    if kind == "SUBSCRIBE" and not isinstance(call.get("subscribe"), dict):
        return "Expecting 'subscribe' to be present"
    if kind == "MESSAGE" and not isinstance(call.get("message"), dict):
        return "Expecting 'message' to be present"
    if kind == "UPDATE":
        if not isinstance(call.get("update"), dict):
            return "Expecting 'update' to be present"
        status = call["update"]["status"]
        if "uuid" not in status:
            return "Expecting 'uuid' to be present"
        if not isinstance(status["uuid"], str) or not valid_uuid(status["uuid"]):
            return "Not a valid UUID"
        if "executor_id" in status and _id_value(status["executor_id"]) != executor_id:
            return (f"ExecutorID in Call: {executor_id} does not match ExecutorID in TaskStatus: "
                    f"{_id_value(status['executor_id'])}")
        if status.get("source") != "SOURCE_EXECUTOR":
            return (f"Received Call from executor {executor_id} of framework {framework_id} with invalid "
                    f"source, expecting 'SOURCE_EXECUTOR'")
        if status["state"] == "TASK_STAGING":
            return f"Received TASK_STAGING from executor {executor_id} of framework {framework_id} which is not allowed"
    return None


class AgentMetrics:
    """Prometheus collector reading the agent's numbers at scrape time."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self):  # noqa: ANN201 - prometheus-client's protocol
        for name, value in views.summary(self.agent).items():
            metric = "dockyard_agent_" + name.removeprefix("slave/").replace("/", "_").lower()
            yield GaugeMetricFamily(metric, f"Mesos agent metric {name}", value=value)


def build_app(agent: Agent, lifespan=None) -> Starlette:  # noqa: ANN001
    security = agent.config.security

    def may_read_sandbox(request: Request, path: Path) -> bool:
        """Mesos's `access_sandboxes`: object = the executor's user, else its framework's."""
        return security.acls.authorized("access_sandboxes", principal_name(request), views.sandbox_user(agent, path))

    files = FilesApi(agent.config.work_dir) if security.acls is ALLOW_ALL else \
        FilesApi(agent.config.work_dir, authorize=may_read_sandbox)
    registry = CollectorRegistry()
    registry.register(AgentMetrics(agent))

    async def executor_api(request: Request) -> Response:
        """src/slave/http.cpp `Http::executor`: method, body, conversion, validation, then (SUBSCRIBE)
        `Accept`, and only then the framework and executor lookups and the token's claims."""
        if request.method != "POST":
            return PlainTextResponse(f"405 Method Not Allowed. Expecting one of {{ 'POST' }}, but received "
                                     f"'{request.method}'.", status_code=405, headers={"Allow": "POST"})
        content_type = request.headers.get("content-type")
        if content_type is None:
            return text(400, "Expecting 'Content-Type' to be present")
        if content_type not in (JSON, PROTOBUF):
            return text(415, f"Expecting 'Content-Type' of {JSON} or {PROTOBUF}")
        try:
            body = await bodies.read_body(request.receive, agent.config.max_request_bytes)
        except bodies.BodyTooLarge as error:
            return text(413, error.message)
        if content_type == PROTOBUF:  # no executor.proto here: answered as a body Mesos cannot parse
            if body:
                return text(400, "Failed to parse body into Call protobuf")
            call: object = {}
        else:
            try:
                call = bodies.loads(body, MAX_JSON_DEPTH)
            except (ValueError, UnicodeDecodeError) as error:
                return text(400, f"Failed to parse body into JSON: {error}")
        if not isinstance(call, dict):
            return text(400, "Failed to convert JSON into Call protobuf: expected an object")
        problem = shape_error(call, EXECUTOR_CALL)
        if problem is None and missing_fields(call):
            problem = "Missing required fields: " + ", ".join(missing_fields(call))
        if problem:
            return text(400, f"Failed to convert JSON into Call protobuf: {problem}")
        problem = validate_call(call)
        if problem:
            return text(400, f"Failed to validate Executor::Call: {problem}")
        if call["type"] == "SUBSCRIBE":
            accept = request.headers.get("accept", "*/*")
            if not any(a.strip().split(";")[0] in ("*/*", "application/*", JSON) for a in accept.split(",")):
                return text(406, f"Expecting 'Accept' to allow '{PROTOBUF}' or '{JSON}'")
        elif call["type"] == "HEARTBEAT":
            return Response(status_code=202)  # before any lookup, as Mesos: its ids may be dummies
        framework_id, executor_id = call["framework_id"]["value"], call["executor_id"]["value"]
        try:
            agent.lookup(framework_id, executor_id)
            agent.check_principal(principal_of(request), framework_id, executor_id)
            if call["type"] == "SUBSCRIBE":
                queue = agent.subscribe(framework_id, executor_id, call.get("subscribe") or {})
                _, executor = agent.lookup(framework_id, executor_id)
                return StreamingResponse(stream(executor, queue), media_type=JSON)
            agent.require_subscribed(framework_id, executor_id)
            if call["type"] == "UPDATE":
                agent.update(framework_id, executor_id, call["update"]["status"])
            elif call["type"] == "MESSAGE":
                agent.message(framework_id, executor_id, call["message"].get("data", ""))
            else:
                return text(501, "501 Not Implemented.")
        except ExecutorCallError as error:
            return text(error.status, error.message)
        return Response(status_code=202)

    async def stream(executor, queue: asyncio.Queue) -> AsyncIterator[bytes]:  # noqa: ANN001
        try:
            while True:
                record = await queue.get()
                if record is None:
                    return
                chunk, ended = coalesced(queue, record)  # what is ready, in one chunk
                yield chunk
                if ended:
                    return
        finally:
            agent.unsubscribed(executor, queue)

    async def state(request: Request) -> Response:
        return JSONResponse(views.state(agent))

    async def monitor(request: Request) -> Response:
        return JSONResponse(views.monitor_statistics(agent))

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    async def snapshot(request: Request) -> Response:
        return JSONResponse(views.summary(agent))

    read, get = Access.READ, ["GET"]
    executor_methods = ["GET", "POST", "PUT", "DELETE"]
    routes = [
        route("/api/v1/executor", executor_api, methods=executor_methods, access=Access.EXECUTOR),
        route("/slave(1)/api/v1/executor", executor_api, methods=executor_methods, access=Access.EXECUTOR),
        route("/files/browse", files.browse, methods=get, access=read),
        route("/files/browse.json", files.browse, methods=get, access=read),
        route("/files/read", files.read, methods=get, access=read),
        route("/files/read.json", files.read, methods=get, access=read),
        route("/files/download", files.download, methods=get, access=read),
        route("/files/download.json", files.download, methods=get, access=read),
        route("/state", state, methods=get, access=read),
        route("/state.json", state, methods=get, access=read),
        route("/slave(1)/state", state, methods=get, access=read),
        route("/monitor/statistics", monitor, methods=get, access=read),
        route("/monitor/statistics.json", monitor, methods=get, access=read),
        route("/health", health, methods=get, access=Access.OPEN),
        route("/slave(1)/health", health, methods=get, access=Access.OPEN),
        route("/metrics", metrics, methods=get, access=read),
        route("/metrics/snapshot", snapshot, methods=get, access=read),
    ]
    # the debug API: sessions, attach, nested containers; its calls are small, bounded tighter
    routes += api.routes(agent.nested, min(api.MAX_CALL_BYTES, agent.config.max_request_bytes))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[
        Middleware(api.StreamingBodyLimit, max_bytes=agent.config.max_request_bytes)])
    app.state.gate = security.gate()
    return app
