"""The embedded master's HTTP edge: Starlette routes, content negotiation, streams.

Handlers stay thin: check the request the way the real master does (`Master::Http::scheduler`),
call one `Master` method, render. The order of the checks is the real master's,
because frameworks observe it (a 400 versus a 403 tells them different things).

Every route is made with an access level (framework/security/gate.py); the
server's gate authenticates it in the realm Mesos uses for that endpoint
(framework/local/master/security.py) before the handler runs, as libprocess
authenticates before the master sees a request. Handlers find the caller with
`principal_name(request)` and ask the master's ACLs.

Bodies are read under limits (framework/bodies.py): at most `--max-request-bytes`
(`MAX_BODY_BYTES` unless set; 413, before a byte of a larger body is read), JSON
nested at most `MAX_JSON_DEPTH` deep (400: Mesos's parser answers a body it cannot
convert 400), no NaN or infinities. Whatever a call holds, a
malformed one is a 4xx, never a 500.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator, Callable
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from framework import bodies
from framework.mesos import recordio
from framework.mesos.messages import dumps
from framework.local.master import operator_api, validation
from framework.local.master.core import Master
from framework.local.master.config import MasterConfig
from framework.local.master.model import HttpError, Stream
from framework.local.master.security import Views
from framework.security.gate import OPEN_GATE, Access, Gate, principal_name, route

log = logging.getLogger("dockyard.master.http")

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
# A real master also speaks protobuf; this one has no Mesos .proto messages to decode it with
# (docs/mesos-compatibility.md), so it answers such a body as Mesos answers one it cannot parse.
UNPARSABLE_PROTOBUF = "Failed to parse body into Call protobuf"
UNSUPPORTED_MEDIA = f"Expecting 'Content-Type' of {JSON} or {PROTOBUF}"
NOT_ACCEPTABLE = (f"Expecting 'Accept' to allow '{JSON}': the dockyard embedded master answers only in JSON "
                  f"({PROTOBUF} is not supported)")
HEARTBEAT = recordio.encode(dumps({"type": "HEARTBEAT"}))
MAX_BODY_BYTES = MasterConfig.max_request_bytes  # the default of --max-request-bytes
MAX_JSON_DEPTH = 64


FORBIDDEN = "403 Forbidden."  # libprocess's `Forbidden()` body
NOT_IMPLEMENTED = "501 Not Implemented."  # libprocess's `NotImplemented()` body


# Operator calls whose change the registry keeps (framework/local/master/registry.py).
REGISTRY_CALLS = frozenset({"DRAIN_AGENT", "DEACTIVATE_AGENT", "REACTIVATE_AGENT", "UPDATE_QUOTA"})


def _text(status: int, message: str = "") -> Response:
    return Response(message, status_code=status, media_type="text/plain; charset=utf-8")


def _method_not_allowed(method: str) -> Response:
    """libprocess's `MethodNotAllowed({"POST"}, method)`: the allowed methods in `Allow` and the body."""
    return Response(f"405 Method Not Allowed. Expecting one of {{ 'POST' }}, but received '{method}'.",
                    status_code=405, headers={"Allow": "POST"}, media_type="text/plain; charset=utf-8")


def _accepts_json(request: Request) -> bool:
    """True when `Accept` is absent or allows application/json."""
    return bodies.accepts(request.headers.get("accept"), JSON)


async def _read_json(request: Request, max_bytes: int) -> Any:
    """After redirection and authentication (`Master::Http::scheduler`, `Master::Http::api`):
    Content-Type exactly application/json (else 415; protobuf is answered as a body Mesos cannot
    parse: an empty one is an empty Call, anything else 400), then a parsable body."""
    ctype = request.headers.get("content-type")
    if ctype is None:
        raise HttpError(400, "Expecting 'Content-Type' to be present")
    if ctype not in (JSON, PROTOBUF):
        raise HttpError(415, UNSUPPORTED_MEDIA)
    try:
        body = await bodies.read_body(request.receive, max_bytes)
    except bodies.BodyTooLarge as error:
        raise HttpError(413, error.message) from None
    if ctype == PROTOBUF:
        if body:
            raise HttpError(400, UNPARSABLE_PROTOBUF)
        return {}
    try:
        return bodies.loads(body, MAX_JSON_DEPTH)
    except (ValueError, UnicodeDecodeError) as error:  # BodyError (too deep) included
        raise HttpError(400, f"Failed to parse body into JSON: {error}") from None


class MasterHttp:
    """Routes of one master; `create_app` wires them into Starlette."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(operator_api.MasterCollector(master))  # type: ignore[arg-type]
        self.subscribers = operator_api.Subscribers(master)

    async def _read_json(self, request: Request) -> Any:
        return await _read_json(request, self.master.config.max_request_bytes)

    def views(self, request: Request) -> Views:
        """What the caller may see (the `view_*` ACLs filter; they never refuse)."""
        return Views(self.master.acls, principal_name(request))

    # -- leadership ----------------------------------------------------------------
    def _not_leader(self, request: Request) -> Response | None:
        """First of all (`Master::Http::scheduler`): 307 to the leader (protocol-relative), 503 when none is known."""
        if self.master.leading:
            return None
        leader = self.master.leader_info
        if leader is None:
            return _text(503, "No leader elected")
        location = f"//{leader['hostname']}:{leader['port']}{request.url.path}"
        return Response(status_code=307, headers={"Location": location})

    async def _leader_call(self, request: Request, parse: Callable[[Any], dict]) -> dict | Response:
        """The steps both v1 APIs take before validation, in Mesos's order: a follower redirects,
        then the method, then the body read and parsed into a call (or the answer to give)."""
        redirect = self._not_leader(request)
        if redirect is not None:
            return redirect
        if request.method != "POST":
            return _method_not_allowed(request.method)
        try:
            return parse(await self._read_json(request))
        except HttpError as error:
            return _text(error.status, error.message)
        except validation.CallError as error:
            return _text(400, str(error))

    # -- scheduler API -------------------------------------------------------------
    async def scheduler(self, request: Request) -> Response:
        call = await self._leader_call(request, validation.parse_call)
        if isinstance(call, Response):
            return call
        principal = principal_name(request)
        problem = validation.validate_call(call, principal)
        if problem is not None:
            return _text(400, f"Failed to validate scheduler::Call: {problem}")
        if call["type"] == "SUBSCRIBE":
            if not _accepts_json(request):
                return _text(406, NOT_ACCEPTABLE)
            if "mesos-stream-id" in request.headers:
                return _text(400, "Subscribe calls should not include the 'Mesos-Stream-Id' "
                                  "header")
            info = call["subscribe"]["framework_info"]
            if principal is not None and "principal" not in info:
                # As master/http.cpp: an authenticated framework that names no principal
                # is registered under the one it authenticated with.
                log.warning("setting 'principal' in FrameworkInfo to '%s': the framework "
                            "authenticated with it but did not set it", principal)
                call["subscribe"] = {**call["subscribe"], "framework_info": {**info, "principal": principal}}
            stream = self.master.subscribe(call)
            return self._stream(request, stream, self.master.config.heartbeat_interval,
                                self.master.stream_closed, {"Mesos-Stream-Id": stream.id})
        try:
            fw = self.master.lookup(call["framework_id"]["value"],
                                    request.headers.get("mesos-stream-id"), principal)
        except HttpError as error:
            return _text(error.status, error.message)
        status, body = self.master.call(fw, call)
        if body is None:
            return Response(status_code=status)
        return _text(status, str(body))

    def _stream(self, request: Request, stream: Stream, heartbeat: float,
                closed: Callable[[Stream], None], headers: dict[str, str]) -> StreamingResponse:
        return StreamingResponse(_records(request, stream, heartbeat, closed), status_code=200,
                                 media_type=JSON, headers=headers)

    # -- internal agent protocol -----------------------------------------------------
    async def agent(self, request: Request) -> Response:
        redirect = self._not_leader(request)
        if redirect is not None:
            return redirect
        if request.method != "POST":
            return _text(405, "Expecting 'POST'")
        try:
            body = await self._read_json(request)
            if not isinstance(body, dict):
                raise HttpError(400, "Expecting a JSON object")
            calls = body.get("calls") if body.get("type") == "BATCH" else None
            for index, one in enumerate([body, *(calls if isinstance(calls, list) else [])]):
                problem = validation.agent_call_error(one, f"calls[{index - 1}]" if index else "")
                if problem is not None:
                    raise HttpError(400, f"Failed to convert JSON into the agent's call: {problem}")
            kind = body.get("type")
            principal = principal_name(request)
            if kind == "REGISTER":
                stream = self.master.agent_register(body, principal)
            elif kind == "REREGISTER":
                stream = self.master.agent_reregister(body, principal)
            elif kind == "BATCH":
                refused = self.master.agent_batch(body, principal)
                return JSONResponse({"refused": refused}, status_code=202) if refused else Response(status_code=202)
            else:
                self.master.agent_call(body, principal)
                return Response(status_code=202)
        except HttpError as error:
            return _text(error.status, error.message)
        return self._stream(request, stream, self.master.config.agent_ping_interval,
                            self.master.agent_stream_closed, {})

    # -- operator API ----------------------------------------------------------------
    async def operator_api(self, request: Request) -> Response:
        """`Master::Http::api`: leader, method, body, conversion, validation, then `Accept`."""
        call = await self._leader_call(request, validation.parse_operator_call)
        if isinstance(call, Response):
            return call
        problem = validation.validate_operator_call(call)
        if problem is not None:
            return _text(400, f"Failed to validate master::Call: {problem}")
        if not _accepts_json(request):
            return _text(406, NOT_ACCEPTABLE)
        kind = call["type"]
        principal = principal_name(request)
        try:
            if kind == "UNKNOWN":
                return _text(501, NOT_IMPLEMENTED)
            if kind == "SUBSCRIBE":
                stream = self.subscribers.subscribe(self.views(request))
                return self._stream(request, stream, self.master.config.heartbeat_interval,
                                    self.subscribers.closed, {})
            if kind == "TEARDOWN":
                fid = call["teardown"]["framework_id"]["value"]
                fw = self.master.frameworks.get(fid)
                if fw is None:
                    return _text(400, f"Framework {fid} not found")
                if not self.master.may_tear_down(fw, principal):
                    return _text(403, FORBIDDEN)
                self.master.remove_framework(fw)
            elif kind == "DRAIN_AGENT":
                self.master.drain_agent(call["drain_agent"], principal)
            elif kind == "DEACTIVATE_AGENT":
                self.master.deactivate_agent(call["deactivate_agent"]["agent_id"]["value"], principal)
            elif kind == "REACTIVATE_AGENT":
                self.master.reactivate_agent(call["reactivate_agent"]["agent_id"]["value"], principal)
            elif kind == "UPDATE_QUOTA":
                self.master.update_quota(call["update_quota"], principal)
            elif kind == "GET_QUOTA":
                return JSONResponse({"type": "GET_QUOTA",
                                     "get_quota": {"status": self.master.quota_status(principal)}})
            else:
                answer = operator_api.operator_call(self.master, kind, self.views(request))
                if answer is None:
                    return _text(501, f"Operator call {kind} is not served by the embedded master")
                return JSONResponse(answer)
            if kind in REGISTRY_CALLS:
                await self._registry_written()
        except HttpError as error:
            return _text(error.status, error.message)
        return Response(status_code=200)

    async def _registry_written(self) -> None:
        """Answer a change the registry keeps only once it is kept, as Mesos's master answers
        after its registrar applied it: a 200 survives a restart or failover right after."""
        written = self.master.registry_write
        if written is None:
            return
        try:
            await asyncio.wrap_future(written)
        except Exception as error:  # the registry store failed: the change may not outlive this master
            raise HttpError(503, f"Failed to update the registry: {error}") from None

    # -- plain endpoints ---------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def version(self, request: Request) -> Response:
        return JSONResponse(operator_api.version())

    async def state(self, request: Request) -> Response:
        redirect = self._not_leader(request)  # as Mesos: read-only views come from the leader
        if redirect is not None:
            return redirect
        return JSONResponse(operator_api.legacy_state(self.master, self.views(request)))

    async def frameworks(self, request: Request) -> Response:
        redirect = self._not_leader(request)  # as Mesos: read-only views come from the leader
        if redirect is not None:
            return redirect
        return JSONResponse(operator_api.legacy_frameworks(self.master, self.views(request)))

    async def slaves(self, request: Request) -> Response:
        redirect = self._not_leader(request)  # as Mesos: read-only views come from the leader
        if redirect is not None:
            return redirect
        return JSONResponse({"slaves": operator_api.legacy_agents(self.master), "recovered_slaves": []})

    async def tasks(self, request: Request) -> Response:
        redirect = self._not_leader(request)  # as Mesos: read-only views come from the leader
        if redirect is not None:
            return redirect
        return JSONResponse({"tasks": operator_api.legacy_tasks(self.master, self.views(request),
                                                            dict(request.query_params))})

    async def redirect(self, request: Request) -> Response:
        leader = self.master.leader_info
        if leader is None:
            return _text(503, "No leader elected")
        return Response(status_code=307,
                        headers={"Location": f"//{leader['hostname']}:{leader['port']}"})

    async def teardown(self, request: Request) -> Response:
        # The body is a query string (`frameworkId=<id>`), as master/http.cpp `teardown` decodes it.
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        if "frameworkId" not in form:
            return _text(400, "Missing 'frameworkId' query parameter in the request body")
        fid = form["frameworkId"][0]
        fw = self.master.frameworks.get(fid)
        if fw is None:
            return _text(400, f"No framework found with specified ID '{fid}'")
        if not self.master.may_tear_down(fw, principal_name(request)):
            return _text(403, FORBIDDEN)
        self.master.remove_framework(fw)
        return Response(status_code=200)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def metrics_snapshot(self, request: Request) -> Response:
        return JSONResponse(operator_api.snapshot(self.master))


async def _watch_disconnect(request: Request, stream: Stream) -> None:
    """End the stream as soon as the client hangs up (not at the next failed write)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            stream.queue.put_nowait(None)
            return


async def _records(request: Request, stream: Stream, heartbeat: float,
                   closed: Callable[[Stream], None]) -> AsyncIterator[bytes]:
    """A stream's records, with a HEARTBEAT whenever `heartbeat` seconds pass quietly."""
    loop = asyncio.get_running_loop()
    next_beat = loop.time() + heartbeat
    watcher = asyncio.create_task(_watch_disconnect(request, stream))
    try:
        while True:
            try:
                item = await asyncio.wait_for(stream.queue.get(),
                                              timeout=max(0.0, next_beat - loop.time()))
            except asyncio.TimeoutError:
                next_beat = loop.time() + heartbeat
                yield HEARTBEAT
                continue
            if item is None:
                return
            chunks = [item]
            done = False
            while not stream.queue.empty():
                more = stream.queue.get_nowait()
                if more is None:
                    done = True
                    break
                chunks.append(more)
            yield b"".join(chunks)
            if done:
                return
    finally:
        watcher.cancel()
        closed(stream)


def routes(http: MasterHttp) -> list[Route]:
    """Every endpoint with the access it needs (the realms are in security.py)."""
    any_method = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    made = []
    for prefix in ("", "/master"):
        made += [
            route(f"{prefix}/api/v1/scheduler", http.scheduler, methods=any_method, access=Access.FRAMEWORK),
            route(f"{prefix}/api/v1", http.operator_api, methods=any_method, access=Access.WRITE),
            route(f"{prefix}/internal/agent", http.agent, methods=any_method, access=Access.AGENT),
            route(f"{prefix}/health", http.health, methods=["GET", "HEAD"], access=Access.OPEN),
            route(f"{prefix}/state", http.state, methods=["GET"], access=Access.READ),
            route(f"{prefix}/state.json", http.state, methods=["GET"], access=Access.READ),
            route(f"{prefix}/frameworks", http.frameworks, methods=["GET"], access=Access.READ),
            route(f"{prefix}/slaves", http.slaves, methods=["GET"], access=Access.READ),
            route(f"{prefix}/tasks", http.tasks, methods=["GET"], access=Access.READ),
            route(f"{prefix}/redirect", http.redirect, methods=["GET"], access=Access.OPEN),
            route(f"{prefix}/teardown", http.teardown, methods=["POST"], access=Access.WRITE),
        ]
    made += [
        route("/version", http.version, methods=["GET"], access=Access.OPEN),
        route("/metrics", http.metrics, methods=["GET"], access=Access.READ),
        route("/metrics/snapshot", http.metrics_snapshot, methods=["GET"], access=Access.READ),
    ]
    return made


def create_app(master: Master, background: Callable[[], Any] | None = None,
               gate: Gate = OPEN_GATE) -> Starlette:
    """The master's ASGI app; `background` (a coroutine function) runs for its lifetime,
    `gate` authenticates its routes (open: no `--authenticate-*` flag)."""
    http = MasterHttp(master)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(background()) if background else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    app = Starlette(routes=routes(http), lifespan=lifespan,
                    middleware=[Middleware(bodies.BodyLimit, max_bytes=master.config.max_request_bytes)])
    app.state.gate = gate
    return app


async def run_timers(master: Master) -> None:
    """The master's clock-driven work: allocation every interval, agent liveness."""
    loop = asyncio.get_running_loop()
    next_allocation = loop.time() + master.config.allocation_interval
    check_every = max(0.05, min(master.config.agent_ping_interval,
                                master.config.agent_ping_timeout / 4))
    next_check = loop.time() + check_every
    while True:
        await asyncio.sleep(max(0.0, min(next_allocation, next_check) - loop.time()))
        now = loop.time()
        try:
            if now >= next_allocation:
                next_allocation = now + master.config.allocation_interval
                master.allocate()
            if now >= next_check:
                next_check = now + check_every
                if master.leading:
                    master.check_agents()
        except Exception:  # a bug in one cycle must not stop the master's clock
            log.exception("master timer failed")
