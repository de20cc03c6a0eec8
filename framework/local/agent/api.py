"""The agent's `/api/v1`: Mesos's debug API (nested containers, sessions, attach), in JSON.

The request checks and their answers are those of src/slave/http.cpp (`Http::api`, `_api`)
and src/slave/validation.cpp, in the same order; what a call does is
framework/local/agent/nested.py's business. Like the embedded master (docs/mesos-compatibility.md),
this agent has no Mesos `.proto` messages to decode a protobuf call with: a call (or an input
record) sent as `application/x-protobuf` is answered as Mesos answers one it cannot parse,
400 `Failed to parse body into a protobuf object` (an empty one is an empty Call, as it
parses, and fails validation), and an `Accept` allowing only protobuf is 406. The records of
an output stream may be protobuf (`Message-Accept`), as Mesos offers: bytes then travel as
they are, where JSON carries them in base64. Calls of the agent API that are not about
containers are 501.

Every route is WRITE (realm `mesos-agent-readwrite`, with `--authenticate-http-readwrite`);
each call then asks the nested-container ACLs (`launch_nested_container_sessions_*`,
`attach_containers_input`/`_output`, `wait_`/`kill_`/`remove_nested_containers`).

Bounded: a call is at most `MAX_CALL_BYTES` (or the agent's `--max-request-bytes`, when
smaller; 413) and `MAX_JSON_DEPTH` deep; an input stream
(`ATTACH_CONTAINER_INPUT`, which may stream for hours) is read one record at a time, each at
most `MAX_RECORD_BYTES`, and what it writes waits for the process to read it; bad framing is
a 400 and the agent serves on.
"""
from __future__ import annotations

import logging
import signal as signals
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from framework.errors import DockyardError
from framework import bodies
from framework.local.agent.nested import NestedContainers
from framework.local.agent.nested_model import ApiError
from framework.local.master.validation import COMMAND, CONTAINER, shape_error
from framework.mesos import processio, recordio
from framework.security.gate import Access, principal_of, route

log = logging.getLogger(__name__)

PATHS = ("/api/v1", "/slave(1)/api/v1")
JSON = processio.JSON
RECORDIO = processio.RECORDIO
PROTOBUF = processio.PROTOBUF
MAX_CALL_BYTES = 1 << 20
MAX_RECORD_BYTES = 4 << 20  # one input record: a chunk of stdin, base64-encoded
MAX_JSON_DEPTH = 32
# A real agent also speaks protobuf; this one has no Mesos .proto messages (docs/mesos-compatibility.md).
UNPARSABLE_PROTOBUF = "Failed to parse body into a protobuf object"  # common/http.hpp `deserialize`
JSON_ONLY = (f"Expecting 'Accept' to allow {JSON}: the dockyard embedded agent answers only in JSON "
             f"({PROTOBUF} is not supported)")

CALL_TYPES = frozenset({
    "UNKNOWN", "GET_HEALTH", "GET_FLAGS", "GET_VERSION", "GET_METRICS", "GET_LOGGING_LEVEL", "SET_LOGGING_LEVEL",
    "LIST_FILES", "READ_FILE", "GET_STATE", "GET_CONTAINERS", "GET_FRAMEWORKS", "GET_EXECUTORS",
    "GET_OPERATIONS", "GET_TASKS", "GET_AGENT", "GET_RESOURCE_PROVIDERS", "LAUNCH_NESTED_CONTAINER",
    "WAIT_NESTED_CONTAINER", "KILL_NESTED_CONTAINER", "REMOVE_NESTED_CONTAINER",
    "LAUNCH_NESTED_CONTAINER_SESSION", "ATTACH_CONTAINER_INPUT", "ATTACH_CONTAINER_OUTPUT", "LAUNCH_CONTAINER",
    "WAIT_CONTAINER", "KILL_CONTAINER", "REMOVE_CONTAINER", "ADD_RESOURCE_PROVIDER_CONFIG",
    "UPDATE_RESOURCE_PROVIDER_CONFIG", "REMOVE_RESOURCE_PROVIDER_CONFIG", "MARK_RESOURCE_PROVIDER_GONE",
    "PRUNE_IMAGES",
})
CONTAINER_ID: dict = {"value": str}
CONTAINER_ID["parent"] = CONTAINER_ID  # shape_error walks it iteratively, as deep as the message goes
PROCESS_IO: dict = {"type": frozenset({"UNKNOWN", "DATA", "CONTROL"}),
                    "data": {"type": frozenset({"UNKNOWN", "STDIN", "STDOUT", "STDERR"}), "data": str},
                    "control": {"type": frozenset({"UNKNOWN", "TTY_INFO", "HEARTBEAT"}),
                                "tty_info": {"window_size": {"rows": int, "columns": int}},
                                "heartbeat": {"interval": {"nanoseconds": int}}}}
LAUNCH: dict = {"container_id": CONTAINER_ID, "command": COMMAND, "container": CONTAINER}
# agent.proto: each payload, its fields' shapes, and its required (proto2) fields.
PAYLOADS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "LAUNCH_NESTED_CONTAINER": ("launch_nested_container", LAUNCH, ("container_id",)),
    "LAUNCH_NESTED_CONTAINER_SESSION": ("launch_nested_container_session", LAUNCH, ("container_id",)),
    "LAUNCH_CONTAINER": ("launch_container", {**LAUNCH, "resources": [dict]}, ("container_id",)),
    "WAIT_NESTED_CONTAINER": ("wait_nested_container", {"container_id": CONTAINER_ID}, ("container_id",)),
    "WAIT_CONTAINER": ("wait_container", {"container_id": CONTAINER_ID}, ("container_id",)),
    "KILL_NESTED_CONTAINER": ("kill_nested_container", {"container_id": CONTAINER_ID, "signal": int},
                              ("container_id",)),
    "KILL_CONTAINER": ("kill_container", {"container_id": CONTAINER_ID, "signal": int}, ("container_id",)),
    "REMOVE_NESTED_CONTAINER": ("remove_nested_container", {"container_id": CONTAINER_ID}, ("container_id",)),
    "REMOVE_CONTAINER": ("remove_container", {"container_id": CONTAINER_ID}, ("container_id",)),
    "ATTACH_CONTAINER_INPUT": ("attach_container_input",
                               {"type": frozenset({"UNKNOWN", "CONTAINER_ID", "PROCESS_IO"}),
                                "container_id": CONTAINER_ID, "process_io": PROCESS_IO}, ()),
    "ATTACH_CONTAINER_OUTPUT": ("attach_container_output", {"container_id": CONTAINER_ID}, ("container_id",)),
}
NESTED_ONLY = {"LAUNCH_NESTED_CONTAINER", "LAUNCH_NESTED_CONTAINER_SESSION", "WAIT_NESTED_CONTAINER",
               "KILL_NESTED_CONTAINER", "REMOVE_NESTED_CONTAINER"}


class Refused(DockyardError):
    """A request answered before it reaches a container: status and body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(message, status_code=status, headers=headers)


# -- media types -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaTypes:
    """What `Http::api` made of a request's headers (common/http.hpp `RequestMediaTypes`)."""

    streaming: bool  # the request is a RecordIO stream of calls
    protobuf_calls: bool  # its call (or each record) claims to be protobuf
    streams_back: bool  # the response is a RecordIO stream
    protobuf_records: bool  # ... of protobuf records


def media_types(request: Request) -> MediaTypes:
    """The request's media types, or Refused as `Http::api` answers. Records of an output stream
    may be protobuf: their bytes then travel without base64 (about three times the throughput)."""
    content = request.headers.get("content-type")
    if content is None:
        raise Refused(400, "Expecting 'Content-Type' to be present")
    if content not in (JSON, PROTOBUF, RECORDIO):
        raise Refused(415, f"Expecting 'Content-Type' of {JSON} or {PROTOBUF} or {RECORDIO}")
    streaming = content == RECORDIO
    protobuf_calls = content == PROTOBUF
    message_content = request.headers.get("message-content-type")
    if streaming:
        if message_content is None:
            raise Refused(400, "Expecting 'Message-Content-Type' to be set for streaming requests")
        if message_content not in (JSON, PROTOBUF):
            raise Refused(415, f"Expecting 'Message-Content-Type' of {JSON} or {PROTOBUF}")
        protobuf_calls = message_content == PROTOBUF
    elif message_content is not None:
        raise Refused(415, "Expecting 'Message-Content-Type' to be not set for non-streaming requests")
    accept = request.headers.get("accept")
    if bodies.accepts(accept, JSON):
        streams_back = False
    elif bodies.accepts(accept, PROTOBUF):
        raise Refused(406, JSON_ONLY)
    elif bodies.accepts(accept, RECORDIO):
        streams_back = True
    else:
        raise Refused(406, f"Expecting 'Accept' to allow {JSON} or {PROTOBUF} or {RECORDIO}")
    message_accept = request.headers.get("message-accept")
    protobuf_records = False
    if streams_back:
        if not bodies.accepts(message_accept, JSON):
            if not bodies.accepts(message_accept, PROTOBUF):
                raise Refused(406, f"Expecting 'Message-Accept' to allow {JSON} or {PROTOBUF}")
            protobuf_records = True
    elif message_accept is not None:
        raise Refused(406, "Expecting 'Message-Accept' to be not set for non-streaming responses")
    return MediaTypes(streaming, protobuf_calls, streams_back, protobuf_records)


# -- parsing and validation --------------------------------------------------------------------------
def parse_call(raw: bytes, protobuf: bool = False) -> dict:
    """One agent::Call from JSON (or claimed protobuf), with Mesos's answers (400) for what is not one."""
    if protobuf:
        if raw:
            raise Refused(400, UNPARSABLE_PROTOBUF)
        call: object = {}  # what an empty protobuf message parses into
    else:
        try:
            call = bodies.loads(raw, MAX_JSON_DEPTH)
        except (ValueError, UnicodeDecodeError) as error:
            raise Refused(400, f"Failed to parse body into JSON: {getattr(error, 'message', error)}") from None
    if not isinstance(call, dict):
        raise Refused(400, "Failed to convert JSON into Call protobuf: expected an object")
    kind = call.get("type")
    if kind is not None and (not isinstance(kind, str) or kind not in CALL_TYPES):
        raise Refused(400, f"Failed to convert JSON into Call protobuf: unknown type {str(kind)[:64]!r}")
    missing: list[str] = []
    for call_type, (field, spec, required) in PAYLOADS.items():
        if field not in call:
            continue
        problem = shape_error(call[field], spec, field)
        if problem is not None:
            raise Refused(400, f"Failed to convert JSON into Call protobuf: {problem}")
        missing += [f"{field}.{name}" for name in required if name not in call[field]]
        missing += [f"{field}.{path}" for path in _missing_values(call[field])]
    if missing:
        raise Refused(400, "Missing required fields: " + ", ".join(missing))
    problem = validate(call)
    if problem is not None:
        raise Refused(400, f"Failed to validate agent::Call: {problem}")
    return call


def _missing_values(payload: dict) -> list[str]:
    """ContainerIDs without their required `value`, at any depth of `parent`."""
    found = []
    for name in ("container_id",):
        current, path = payload.get(name), name
        while isinstance(current, dict):
            if "value" not in current:
                found.append(f"{path}.value")
            current, path = current.get("parent"), f"{path}.parent"
    return found


def validate(call: dict) -> str | None:
    """src/slave/validation.cpp `agent::call::validate`, for the calls this agent serves."""
    kind = call.get("type")
    if kind is None:
        return "Expecting 'type' to be present"
    if kind not in PAYLOADS:
        return None
    field = PAYLOADS[kind][0]
    payload = call.get(field)
    if not isinstance(payload, dict):
        return f"Expecting '{field}' to be present"
    if kind == "ATTACH_CONTAINER_INPUT":
        if "type" not in payload:
            return "Expecting 'attach_container_input.type' to be present"
        if payload["type"] == "UNKNOWN":
            return "'attach_container_input.type' is unknown"
        if payload["type"] != "CONTAINER_ID":
            return None
    problem = processio.invalid_container_id(payload.get("container_id", {"value": ""}))
    if problem is not None:
        return f"'{field}.container_id' is invalid: {problem}"
    if kind in NESTED_ONLY and "parent" not in payload["container_id"]:
        return f"Expecting '{field}.container_id.parent' to be present"
    container = payload.get("container")
    if isinstance(container, dict) and (container.get("linux_info") or {}).get("share_cgroups") is False:
        if kind == "LAUNCH_NESTED_CONTAINER_SESSION":
            return ("'launch_nested_container_session.container.linux_info' is invalid: 'share_cgroups' cannot be "
                    "set to 'false' for nested container sessions")
        return (f"'{field}' is invalid: this agent runs nested containers in their parent's cgroups: "
                f"'share_cgroups' cannot be set to 'false'")
    return None


async def records(chunks: AsyncIterator[bytes], protobuf: bool = False) -> AsyncIterator[dict]:
    """The calls of a RecordIO request body, one at a time (Refused 400 for bad framing or JSON)."""
    decoder = recordio.Decoder(max_record=MAX_RECORD_BYTES)
    async for chunk in chunks:
        try:
            found = decoder.feed(chunk)
        except recordio.RecordIOError as error:
            raise Refused(400, f"Failed to decode the request body: {error}") from None
        for raw in found:
            yield parse_call(raw, protobuf)
    if decoder.pending:
        raise Refused(400, "Failed to decode the request body: it ends inside a record")


# -- responses ---------------------------------------------------------------------------------------
class OutputResponse(StreamingResponse):
    """A ProcessIO stream that notices its client leaving at once, even while the process is
    silent (the ASGI server says so through `receive`), and then calls `on_close`."""

    def __init__(self, content: AsyncIterator[bytes], streaming: bool, protobuf: bool,
                 on_close: Callable[[], None]) -> None:
        headers = {"Message-Content-Type": PROTOBUF if protobuf else JSON} if streaming else {}
        super().__init__(content, headers=headers, media_type=RECORDIO if streaming else JSON)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:
                async def relay() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:
                        pass  # the client went while we wrote
                    group.cancel_scope.cancel()

                group.start_soon(relay)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            self.on_close()


class AgentApi:
    """The `/api/v1` endpoint of one agent."""

    def __init__(self, containers: NestedContainers, max_call_bytes: int = MAX_CALL_BYTES) -> None:
        self.containers = containers
        self.max_call_bytes = max_call_bytes

    async def __call__(self, request: Request) -> Response:
        if request.method != "POST":
            return text(405, f"405 Method Not Allowed. Expecting one of {{ 'POST' }}, but received "
                             f"'{request.method}'.", {"Allow": "POST"})  # libprocess's MethodNotAllowed
        try:
            media = media_types(request)
            streaming, streams_back, protobuf = media.streaming, media.streams_back, media.protobuf_records
            if streaming:
                body = records(request.stream(), media.protobuf_calls)
                call = await anext(body, None)  # type: ignore[call-overload]
                if call is None:
                    raise Refused(400, "Received EOF while reading request body")
            else:
                try:
                    raw = await bodies.read_body(request.receive, self.max_call_bytes)
                except bodies.BodyTooLarge as error:
                    raise Refused(413, error.message) from None
                call = parse_call(raw, media.protobuf_calls)
            kind = call["type"]
            if streaming and kind != "ATTACH_CONTAINER_INPUT":
                raise Refused(415, f"Streaming 'Content-Type' {RECORDIO} is not supported for {kind} call")
            if not streaming and kind == "ATTACH_CONTAINER_INPUT":
                raise Refused(415, f"Expecting 'Content-Type' to be {RECORDIO} for {kind} call")
            if streams_back and kind not in ("ATTACH_CONTAINER_OUTPUT", "LAUNCH_NESTED_CONTAINER_SESSION"):
                raise Refused(406, f"Streaming response is not supported for {kind} call")
            return await self.dispatch(request, call, body if streaming else None, streams_back, protobuf)
        except Refused as refused:
            return text(refused.status, refused.message, refused.headers)
        except ApiError as error:
            return text(error.status, error.message)

    async def dispatch(self, request: Request, call: dict, body: AsyncIterator[dict] | None,
                       streams_back: bool, protobuf: bool) -> Response:
        kind = call["type"]
        principal = principal_of(request)  # a name, or an executor token's claims
        containers = self.containers
        if kind == "GET_HEALTH":
            return JSONResponse({"type": "GET_HEALTH", "get_health": {"healthy": True}})
        if kind not in PAYLOADS:
            return text(501, f"{kind} is not implemented by the dockyard embedded agent")
        payload = call[PAYLOADS[kind][0]]
        cid = payload.get("container_id")
        nested = cid is not None and "parent" in cid
        if kind in ("LAUNCH_CONTAINER", "WAIT_CONTAINER", "KILL_CONTAINER", "REMOVE_CONTAINER") and not nested:
            if kind == "LAUNCH_CONTAINER":
                return text(501, "Standalone containers are not supported by the dockyard embedded agent")
            containers.authorize(_ACTIONS[kind], principal, cid)
            raise ApiError(404, _NOT_FOUND[kind].format(key=processio.container_key(cid)))
        if kind in ("LAUNCH_NESTED_CONTAINER", "LAUNCH_CONTAINER", "LAUNCH_NESTED_CONTAINER_SESSION"):
            session = kind == "LAUNCH_NESTED_CONTAINER_SESSION"
            action = "launch_nested_container_sessions" if session else "launch_nested_containers"
            command = payload.get("command") or {}
            containers.authorize(action, principal, cid, command.get("user"))
            launched = await containers.launch(cid, payload.get("command"), payload.get("container"),
                                               session=session, principal=principal)
            if launched is None:
                return Response(status_code=202)
            if not session:
                return Response(status_code=200)
            running, stream = containers.attach_output(cid, protobuf)
            return OutputResponse(containers.frames(running, stream), streams_back, protobuf,
                                  lambda: containers.session_closed(running))
        if kind == "ATTACH_CONTAINER_OUTPUT":
            if containers.owner(cid) is None:
                raise ApiError(404, f"Container {processio.container_key(cid)} cannot be found")
            containers.authorize("attach_containers_output", principal, cid)
            running, stream = containers.attach_output(cid, protobuf)
            return OutputResponse(containers.frames(running, stream), streams_back, protobuf, lambda: None)
        if kind == "ATTACH_CONTAINER_INPUT":
            if payload.get("type") != "CONTAINER_ID":
                raise Refused(400, "Expecting 'attach_container_input.type' to be CONTAINER_ID")
            if containers.owner(cid) is None:
                raise ApiError(404, f"Container {processio.container_key(cid)} cannot be found")
            containers.authorize("attach_containers_input", principal, cid)
            assert body is not None
            status, message = await containers.feed(containers.attach_input(cid), body)
            return text(status, message) if message else Response(status_code=status)
        containers.authorize(_ACTIONS[kind], principal, cid)
        if kind in ("WAIT_NESTED_CONTAINER", "WAIT_CONTAINER"):
            field = "wait_nested_container" if kind == "WAIT_NESTED_CONTAINER" else "wait_container"
            return JSONResponse({"type": kind, field: await containers.wait(cid)})
        if kind in ("KILL_NESTED_CONTAINER", "KILL_CONTAINER"):
            containers.kill(cid, int(payload.get("signal", signals.SIGKILL)))
            return Response(status_code=200)
        await containers.remove(cid)
        return Response(status_code=200)


_ACTIONS = {"WAIT_NESTED_CONTAINER": "wait_nested_containers", "WAIT_CONTAINER": "wait_nested_containers",
            "KILL_NESTED_CONTAINER": "kill_nested_containers", "KILL_CONTAINER": "kill_nested_containers",
            "REMOVE_NESTED_CONTAINER": "remove_nested_containers", "REMOVE_CONTAINER": "remove_nested_containers"}
_NOT_FOUND = {"WAIT_CONTAINER": "Container {key} cannot be found",
              "KILL_CONTAINER": "Container '{key}' cannot be found (or is already killed)",
              "REMOVE_CONTAINER": "Container {key} cannot be found"}


def routes(containers: NestedContainers, max_call_bytes: int = MAX_CALL_BYTES) -> list[Route]:
    """`/api/v1` (and libprocess's `/slave(1)/api/v1`): every method reaches the handler, which
    answers 405 to all but POST, after authentication, as libprocess does."""
    endpoint = AgentApi(containers, max_call_bytes)

    async def api(request: Request) -> Response:
        return await endpoint(request)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return [route(path, api, methods=methods, access=Access.WRITE) for path in PATHS]


class StreamingBodyLimit(bodies.BodyLimit):
    """The agent's body limit, except for a RecordIO request to `/api/v1`: an input stream lives as
    long as a session and is bounded record by record (`MAX_RECORD_BYTES`) instead."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in PATHS and \
                (b"content-type", RECORDIO.encode()) in (scope.get("headers") or []):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
