"""Property tests: whatever JSON reaches the master's and the agent's Mesos endpoints, the
answer is a 4xx (or a success), never a 5xx, and it comes at once.

Calls are generated in the shape of the real ones (a known `type`, the payload it
names, IDs as `{"value": ...}`) with random values at every level, plus raw bytes,
deep nesting and non-finite numbers; they go straight to the ASGI apps
(framework/local/master/routes.py, framework/local/agent/routes.py). A stream a valid call opens
(SUBSCRIBE, an agent's REGISTER) is cut once its status is known.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework.local.master import routes as master_http
from framework.local.agent.core import Agent, AgentConfig
from framework.local.agent.routes import CALL_TYPES as EXECUTOR_CALL_TYPES
from framework.local.agent.routes import build_app as agent_app
from framework.local.master.core import Master, MasterConfig
from framework.local.master.routes import create_app
from framework.local.master.validation import CALL_TYPES, OPERATOR_CALL_TYPES, PAYLOADS

# Seeded (derandomized) and bounded for `make test`; DOCKYARD_PROPERTY_EXAMPLES=5000 hunts further.
EXAMPLES = settings(max_examples=int(os.environ.get("DOCKYARD_PROPERTY_EXAMPLES", "150")), deadline=None,
                    derandomize=not os.environ.get("DOCKYARD_PROPERTY_EXAMPLES"), database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
ids = st.one_of(st.fixed_dictionaries({"value": st.text(max_size=12)}), json_values)


def shaped(types: frozenset[str] | set[str], payload_keys: dict[str, str], fields: list[str]) -> st.SearchStrategy:
    """A call of a known (or random) type, its payload and common fields, each random inside."""
    def build(kind: Any, extra: dict, payload: Any, chosen: dict) -> dict:
        call = {"type": kind, **chosen, **extra}
        key = payload_keys.get(kind) if isinstance(kind, str) else None
        if key:
            call[key] = payload
        return call

    inner = st.one_of(json_values, st.dictionaries(st.sampled_from(
        ["framework_info", "task_id", "agent_id", "executor_id", "uuid", "data", "status", "tasks",
         "offer_ids", "operations", "filters", "user", "name", "roles", "capabilities", "id", "value",
         "state", "source", "resources", "principal"]), json_values, max_size=6))
    return st.builds(build, st.one_of(st.sampled_from(sorted(types)), json_values),
                     st.dictionaries(st.text(max_size=8), json_values, max_size=2), inner,
                     st.fixed_dictionaries({}, optional={name: ids for name in fields}))


texts = st.text(max_size=12)
resources = st.lists(st.fixed_dictionaries(
    {"name": st.sampled_from(["cpus", "mem", "disk", "ports", "gpus"]), "type": st.sampled_from(
        ["SCALAR", "RANGES", "SET", "TEXT"])},
    optional={"scalar": st.one_of(st.fixed_dictionaries({"value": json_values}), json_values),
              "ranges": json_values, "role": json_values, "set": json_values}), max_size=3)
framework_infos = st.fixed_dictionaries(
    {"user": st.one_of(texts, json_values), "name": st.one_of(texts, json_values)},
    optional={"roles": st.one_of(st.lists(texts, max_size=3), json_values), "role": json_values,
              "capabilities": st.one_of(st.lists(st.fixed_dictionaries({"type": texts}), max_size=2), json_values),
              "failover_timeout": json_values, "checkpoint": json_values, "principal": json_values,
              "hostname": json_values, "webui_url": json_values, "labels": json_values, "id": ids})
task_infos = st.fixed_dictionaries(
    {"name": json_values, "task_id": ids, "agent_id": ids},
    optional={"resources": st.one_of(resources, json_values), "command": json_values, "executor": json_values,
              "container": json_values, "labels": json_values, "kill_policy": json_values,
              "health_check": json_values, "discovery": json_values, "data": json_values})
operations = st.lists(st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["LAUNCH", "LAUNCH_GROUP", "RESERVE", "UNRESERVE", "CREATE",
                                        "DESTROY"]), json_values)},
    optional={"launch": st.one_of(st.fixed_dictionaries({"task_infos": st.lists(task_infos, max_size=2)}),
                                  json_values),
              "launch_group": json_values, "id": json_values}), max_size=2)
# Payloads in their real shape (random inside), for the calls that reach deep into the master.
PAYLOAD_SHAPES = {
    "subscribe": st.fixed_dictionaries({"framework_info": framework_infos},
                                       optional={"suppressed_roles": json_values}),
    "update_framework": st.fixed_dictionaries({"framework_info": framework_infos},
                                              optional={"suppressed_roles": json_values}),
    "accept": st.fixed_dictionaries({"offer_ids": st.one_of(st.lists(ids, max_size=2), json_values),
                                     "operations": st.one_of(operations, json_values)},
                                    optional={"filters": json_values}),
    "decline": st.fixed_dictionaries({"offer_ids": st.one_of(st.lists(ids, max_size=2), json_values)},
                                     optional={"filters": json_values}),
    "kill": st.fixed_dictionaries({"task_id": ids}, optional={"agent_id": ids, "kill_policy": json_values}),
    "shutdown": st.fixed_dictionaries({"executor_id": ids, "agent_id": ids}),
    "acknowledge": st.fixed_dictionaries({"agent_id": ids, "task_id": ids, "uuid": json_values}),
    "reconcile": st.fixed_dictionaries({"tasks": st.one_of(
        st.lists(st.fixed_dictionaries({"task_id": ids}, optional={"agent_id": ids}), max_size=2), json_values)}),
    "message": st.fixed_dictionaries({"agent_id": ids, "executor_id": ids, "data": json_values}),
    "revive": st.fixed_dictionaries({}, optional={"roles": json_values}),
    "suppress": st.fixed_dictionaries({}, optional={"roles": json_values}),
}


def framework_calls(framework_id: str) -> st.SearchStrategy:
    """Calls of one subscribed framework: its id, a known type, that type's payload in shape."""
    kinds = sorted(CALL_TYPES - {"SUBSCRIBE"})

    def build(kind: str, payload: Any, keep_id: bool) -> dict:
        key = PAYLOADS.get(kind) or kind.lower()
        return {"type": kind, "framework_id": {"value": framework_id if keep_id else "other"}, key: payload}

    return st.sampled_from(kinds).flatmap(lambda kind: st.builds(
        build, st.just(kind), PAYLOAD_SHAPES.get(PAYLOADS.get(kind) or kind.lower(), json_values),
        st.booleans()))


subscribes = st.builds(lambda payload, extra: {"type": "SUBSCRIBE", "subscribe": payload, **extra},
                       PAYLOAD_SHAPES["subscribe"], st.fixed_dictionaries({}, optional={"framework_id": ids}))
agent_infos = st.fixed_dictionaries(
    {"hostname": st.one_of(texts, json_values)},
    optional={"port": json_values, "resources": st.one_of(resources, json_values), "attributes": json_values,
              "id": ids, "domain": json_values})
agent_registrations = st.builds(
    lambda kind, info, extra: {"type": kind, "agent_info": info, **extra},
    st.sampled_from(["REGISTER", "REREGISTER"]), agent_infos,
    st.fixed_dictionaries({}, optional={
        "ip": json_values, "version": json_values, "agent_id": ids,
        "frameworks": st.one_of(st.lists(framework_infos, max_size=2), json_values),
        "executors": json_values, "tasks": st.one_of(st.lists(task_infos, max_size=2), json_values),
        "updates": json_values}))
scheduler_calls = st.one_of(shaped(CALL_TYPES, {**PAYLOADS, "SUBSCRIBE": "subscribe"}, ["framework_id"]),
                            subscribes)
operator_calls = shaped(OPERATOR_CALL_TYPES, {t: t.lower() for t in OPERATOR_CALL_TYPES}, ["framework_id"])
agent_calls = st.one_of(
    shaped({"REGISTER", "REREGISTER", "BATCH", "UPDATE", "EXECUTOR_EXITED", "MESSAGE", "PING", "UNREGISTER"},
           {}, ["agent_id", "framework_id"]),
    agent_registrations)
executor_calls = shaped(EXECUTOR_CALL_TYPES, {t: t.lower() for t in EXECUTOR_CALL_TYPES},
                        ["executor_id", "framework_id"])

HOSTILE_BODIES = [
    b"", b"{", b"nul", b"\xff\xfe\x00", b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"type": NaN}', b'{"type": "SUBSCRIBE", "x": Infinity}', b'{"type": 1e999}', b"9" * 5000,
    b'"just a string"', b"[]", b"null", b'{"type": ["SUBSCRIBE"]}', b'{"type": {"a": 1}}',
]


async def _ask(app: Callable, path: str, body: bytes, headers: dict[str, str] | None = None,
               hold: list | None = None) -> tuple[int, dict[str, str]]:
    """The status and headers of one POST to an ASGI app. A stream is cut once its status is
    known, unless `hold` is given: the request then stays open (appended to `hold`)."""
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": raw_headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 5050)}
    started: asyncio.Future[tuple[int, dict[str, str]]] = asyncio.get_running_loop().create_future()
    gone = asyncio.Event()
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start" and not started.done():
            started.set_result((message["status"], {k.decode().lower(): v.decode()
                                                    for k, v in message.get("headers", [])}))

    task = asyncio.ensure_future(app(scope, receive, send))
    try:
        done, _ = await asyncio.wait({task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task in done and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        return await asyncio.wait_for(started, 1)
    finally:
        if hold is not None and not task.done():
            hold.append((task, gone))
        else:
            gone.set()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Client:
    """One event loop for a module's requests (the master's timers live on it)."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.held: list = []

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        return self.loop.run_until_complete(_ask(self.app, path, body, headers))[0]

    def open(self, path: str, body: dict) -> dict[str, str]:
        """Open a stream (SUBSCRIBE, REGISTER) that stays open; its response headers."""
        status, headers = self.loop.run_until_complete(
            _ask(self.app, path, json.dumps(body).encode(), hold=self.held))
        assert status == 200, status
        return headers

    def close(self) -> None:
        async def finish() -> None:
            for task, gone in self.held:
                gone.set()
                task.cancel()
            await asyncio.gather(*(t for t, _ in self.held), return_exceptions=True)

        self.loop.run_until_complete(finish())
        self.loop.close()


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    work = tmp_path_factory.mktemp("master")
    master = Master(MasterConfig(work_dir=str(work)))
    client = Client(create_app(master))
    client.master = master  # type: ignore[attr-defined]
    yield client
    client.close()


@pytest.fixture(scope="module")
def subscribed(master: Client) -> tuple[str, str]:
    """(framework id, stream id) of a framework subscribed for the module, with an agent
    registered so that its offers and tasks exist to be named."""
    master.open("/internal/agent", {"type": "REGISTER", "agent_info": {
        "hostname": "agent0", "port": 5999, "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024}}]}, "ip": "127.0.0.1"})
    headers = master.open("/api/v1/scheduler", {
        "type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "props"}}})
    framework_id = next(iter(master.master.frameworks))  # type: ignore[attr-defined]
    return framework_id, headers["mesos-stream-id"]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    work = Path(tmp_path_factory.mktemp("agent"))
    client = Client(agent_app(Agent(AgentConfig(master="127.0.0.1:1", work_dir=work))))
    yield client
    client.close()


def no_server_error(status: int, body: Any, allowed: tuple[int, ...] = ()) -> None:
    assert status < 500 or status in allowed, f"{status} for {str(body)[:300]}"


@EXAMPLES
@given(call=scheduler_calls)
def test_scheduler_calls_never_fail_the_master(master: Client, call: dict) -> None:
    no_server_error(master.post("/api/v1/scheduler", json.dumps(call).encode()), call)


@EXAMPLES
@given(data=st.data())
def test_a_subscribed_frameworks_calls_never_fail_the_master(master: Client, subscribed: tuple[str, str],
                                                             data: st.DataObject) -> None:
    framework_id, stream_id = subscribed
    master.master.allocate()  # type: ignore[attr-defined]  # offers to accept or decline
    call = data.draw(framework_calls(framework_id))
    offers = list(master.master.offers)  # type: ignore[attr-defined]
    if offers and call["type"] in ("ACCEPT", "DECLINE") and data.draw(st.booleans()):
        call[call["type"].lower()]["offer_ids"] = [{"value": offers[0]}]
    status = master.post("/api/v1/scheduler", json.dumps(call).encode(), {"Mesos-Stream-Id": stream_id})
    no_server_error(status, call, (501,) if call["type"] == "UNKNOWN" else ())


@EXAMPLES
@given(call=operator_calls)
def test_operator_calls_never_fail_the_master(master: Client, call: dict) -> None:
    status = master.post("/api/v1", json.dumps(call).encode())
    # a Call the master knows but does not serve: Mesos's 501 Not Implemented
    served_or_not = (501,) if isinstance(call.get("type"), str) and call["type"] in OPERATOR_CALL_TYPES else ()
    no_server_error(status, call, served_or_not)


@EXAMPLES
@given(call=agent_calls)
def test_agent_protocol_calls_never_fail_the_master(master: Client, call: dict) -> None:
    no_server_error(master.post("/internal/agent", json.dumps(call).encode()), call)


@EXAMPLES
@given(call=executor_calls)
def test_executor_calls_never_fail_the_agent(agent: Client, call: dict) -> None:
    no_server_error(agent.post("/api/v1/executor", json.dumps(call).encode()), call)


@EXAMPLES
@given(body=st.binary(max_size=200))
def test_random_bytes_are_400_everywhere(master: Client, agent: Client, body: bytes) -> None:
    for client, path in ((master, "/api/v1/scheduler"), (master, "/api/v1"), (master, "/internal/agent"),
                         (agent, "/api/v1/executor")):
        status = client.post(path, body)
        assert 400 <= status < 500, (path, status, body)


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=lambda b: repr(b[:24]))
def test_hostile_bodies_are_4xx_at_once(master: Client, agent: Client, body: bytes) -> None:
    import time

    for client, path in ((master, "/api/v1/scheduler"), (master, "/api/v1"), (master, "/internal/agent"),
                         (agent, "/api/v1/executor")):
        started = time.perf_counter()
        status = client.post(path, body)
        assert 400 <= status < 500, (path, status)
        assert time.perf_counter() - started < 1.0, (path, "slow")


def test_a_body_past_the_limit_is_413_before_it_is_read(master: Client, agent: Client) -> None:
    from framework.local.agent import routes as agent_http

    huge = b"[" + b"1," * (master_http.MAX_BODY_BYTES // 2) + b"1]"
    assert master.post("/api/v1/scheduler", huge) == 413
    assert agent.post("/api/v1/executor", b" " * (agent_http.MAX_BODY_BYTES + 1)) == 413
