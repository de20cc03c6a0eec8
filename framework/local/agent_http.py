"""The agent's HTTP surface: executor API, files API, /state, monitor, health, metrics.

Handlers translate HTTP to calls on `Agent` and back; the rules live there.
The executor API answers as the real agent does (reference §3, §8.12).

Every route says who may call it (framework/security/gate.py): READ for the
views (realm `mesos-agent-readonly`), EXECUTOR for the executor API (realm
`mesos-agent-executor`, executor tokens only), OPEN for `/health`; the agent's
flags decide which levels authenticate (framework/local/agent_security.py).

Executor calls are read under limits (framework/bodies.py): at most
`MAX_BODY_BYTES` (413), nested at most `MAX_JSON_DEPTH` deep, no NaN or
infinities (400); a malformed call is a 4xx, never a 500.
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
from framework.local.agent import Agent, ExecutorCallError
from framework.local.files_api import FilesApi
from framework.local.validation import EXECUTOR_CALL, shape_error
from framework.mesos.messages import valid_uuid
from framework.security.acls import ALLOW_ALL
from framework.security.gate import Access, principal_name, principal_of, route

log = logging.getLogger(__name__)

CALL_TYPES = {"SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT"}
MAX_BODY_BYTES = 16 << 20  # a status update's `data` may be large; nothing an executor sends is larger
MAX_JSON_DEPTH = 64


def text(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status)


def _id_value(obj: object) -> str | None:
    """`obj["value"]` of a Mesos ID message, when `obj` is one (a non-empty string value)."""
    value = obj.get("value") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def validate_call(call: dict) -> str | None:
    """Mesos's validateExecutorCall: the reason a call is malformed, or None."""
    kind = call.get("type")
    if not isinstance(kind, str) or kind not in CALL_TYPES:
        return "Expecting 'type' to be present"
    if _id_value(call.get("executor_id")) is None:
        return "Expecting 'executor_id' to be present"
    if _id_value(call.get("framework_id")) is None:
        return "Expecting 'framework_id' to be present"
    if kind == "SUBSCRIBE" and not isinstance(call.get("subscribe", {}), dict):
        return "Expecting 'subscribe' to be present"
    if kind == "MESSAGE" and not isinstance(call.get("message"), dict):
        return "Expecting 'message' to be present"
    if kind == "MESSAGE" and not isinstance(call["message"].get("data", ""), str):
        return "Expecting 'message.data' to be bytes (base64)"
    if kind == "UPDATE":
        update = call.get("update")
        if not isinstance(update, dict) or not isinstance(update.get("status"), dict):
            return "Expecting 'update' to be present"
        status = update["status"]
        if _id_value(status.get("task_id")) is None or not isinstance(status.get("state"), str) \
                or not status["state"]:
            return "Missing required fields in 'update.status'"
        if "uuid" not in status:
            return "Expecting 'uuid' to be present"
        if not isinstance(status["uuid"], str) or not valid_uuid(status["uuid"]):
            return "Not a valid UUID"
        if status.get("source", "SOURCE_MASTER") != "SOURCE_EXECUTOR":
            return f"Received Call from executor with invalid source {str(status.get('source', 'SOURCE_MASTER'))[:64]}"
        if status["state"] == "TASK_STAGING":
            return "Received TASK_STAGING from executor"
        if "executor_id" in status and _id_value(status["executor_id"]) != call["executor_id"]["value"]:
            return "ExecutorID in Call does not match ExecutorID in TaskStatus"
    return None


class AgentMetrics:
    """Prometheus collector reading the agent's numbers at scrape time."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self):  # noqa: ANN201 - prometheus-client's protocol
        for name, value in self.agent.summary().items():
            metric = "dockyard_agent_" + name.removeprefix("slave/").replace("/", "_").lower()
            yield GaugeMetricFamily(metric, f"Mesos agent metric {name}", value=value)


def build_app(agent: Agent, lifespan=None) -> Starlette:  # noqa: ANN001
    security = agent.config.security

    def may_read_sandbox(request: Request, path: Path) -> bool:
        """Mesos's `access_sandboxes`: object = the executor's user, else its framework's."""
        return security.acls.authorized("access_sandboxes", principal_name(request), agent.sandbox_user(path))

    files = FilesApi(agent.config.work_dir) if security.acls is ALLOW_ALL else \
        FilesApi(agent.config.work_dir, authorize=may_read_sandbox)
    registry = CollectorRegistry()
    registry.register(AgentMetrics(agent))

    async def executor_api(request: Request) -> Response:
        if request.method != "POST":
            return text(405, "Expecting 'POST'")
        content_type = request.headers.get("content-type")
        if content_type is None:
            return text(400, "Expecting 'Content-Type' to be present")
        if content_type != "application/json":
            return text(415, "Expecting 'Content-Type' of application/json")
        accept = request.headers.get("accept", "*/*")
        if not any(a.strip().split(";")[0] in ("*/*", "application/*", "application/json")
                   for a in accept.split(",")):
            return text(406, "Expecting 'Accept' to allow application/json")
        try:
            call = bodies.loads(await bodies.read_body(request.receive, MAX_BODY_BYTES), MAX_JSON_DEPTH)
            if not isinstance(call, dict):
                raise ValueError("not an object")
        except bodies.BodyTooLarge as error:
            return text(413, error.message)
        except (ValueError, UnicodeDecodeError) as error:
            return text(400, f"Failed to parse body into Call: {error}")
        problem = shape_error(call, EXECUTOR_CALL)
        if problem:
            return text(400, f"Failed to convert JSON into Call protobuf: {problem}")
        problem = validate_call(call)
        if problem:
            return text(400, f"Failed to validate executor::Call: {problem}")
        if call["type"] == "HEARTBEAT":
            return Response(status_code=202)
        framework_id, executor_id = call["framework_id"]["value"], call["executor_id"]["value"]
        try:
            # Before anything else happens: a token acts for its own executor only.
            agent.check_principal(principal_of(request), framework_id, executor_id)
            if call["type"] == "SUBSCRIBE":
                queue = agent.subscribe(framework_id, executor_id, call.get("subscribe") or {})
                _, executor = agent.lookup(framework_id, executor_id)
                return StreamingResponse(stream(executor, queue), media_type="application/json")
            agent.require_subscribed(framework_id, executor_id)
            if call["type"] == "UPDATE":
                agent.update(framework_id, executor_id, call["update"]["status"])
            else:
                agent.message(framework_id, executor_id, call["message"].get("data", ""))
        except ExecutorCallError as error:
            return text(error.status, error.message)
        return Response(status_code=202)

    async def stream(executor, queue: asyncio.Queue) -> AsyncIterator[bytes]:  # noqa: ANN001
        try:
            while True:
                record = await queue.get()
                if record is None:
                    return
                batch = [record]
                while not queue.empty():  # coalesce what is ready into one chunk
                    more = queue.get_nowait()
                    if more is None:
                        yield b"".join(batch)
                        return
                    batch.append(more)
                yield b"".join(batch)
        finally:
            agent.unsubscribed(executor, queue)

    async def state(request: Request) -> Response:
        return JSONResponse(agent.state())

    async def monitor(request: Request) -> Response:
        return JSONResponse(agent.monitor_statistics())

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    async def snapshot(request: Request) -> Response:
        return JSONResponse(agent.summary())

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
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(bodies.BodyLimit, max_bytes=MAX_BODY_BYTES)])
    app.state.gate = security.gate()
    return app
