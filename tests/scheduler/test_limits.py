"""The scheduler's limits, each where a request once took the scheduler down.

Requests go straight to the ASGI app, built as `dockyard scheduler` builds it around a
real store and secured with a generated bundle's users (the operator is an admin).
Each test here failed before its limit existed: `instances: 1000000` (or `scaleBy: 1e9`,
or a plan of 1e7 instances) was accepted and grew the scheduler past 24 GB; `cpus:
Infinity` was stored and every later GET /v2/apps answered 500; a 50 MB body and
10,000 levels of nesting were read and parsed whole; the create handler ran twice when
rendering its answer failed; an unreadable stored app stopped the scheduler starting.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

from framework.security.bundle import Bundle
from framework.store import open_store
from scheduler import limits as scheduler_limits
from scheduler.api import marathon_views
from scheduler.api.app import build_app
from scheduler.context import SchedulerConfig
from scheduler.events import EventBus
from scheduler.limits import Limits
from scheduler.lifecycle import build_context
from scheduler.security import load_security
from tests.support.security import authorization


class Api:
    """An app built as the scheduler builds it, called as one identity."""

    def __init__(self, work: Path, bundle: Bundle, limits: Limits = Limits(), allow_privileged: bool = False) -> None:
        security = load_security(http_users=str(bundle.users_file), allow_privileged=allow_privileged)
        self.config = SchedulerConfig(master="127.0.0.1:1", data_dir=str(work / "data"), security=security,
                                      limits=limits)
        self.previous = scheduler_limits.current()
        self.ctx = build_context(self.config)
        self.app = build_app(self.ctx)
        self.auth = authorization(bundle.operator)
        self.viewer = authorization(bundle.viewer)

    def close(self) -> None:
        self.ctx.store.close()
        scheduler_limits.configure(self.previous)

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             chunks: Iterable[bytes] | None = None, headers: dict[str, str] | None = None,
             who: dict[str, str] | None = None) -> tuple[int, Any, int]:
        """(status, JSON body or bytes, chunks of the body the app read)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        return asyncio.run(self._call(method, path, data, chunks, {**(who or self.auth), **(headers or {})}))

    async def _call(self, method: str, path: str, data: bytes, chunks: Iterable[bytes] | None,
                    headers: dict[str, str]) -> tuple[int, Any, int]:
        path_part, _, query = path.partition("?")
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw_headers.append((b"content-type", b"application/json"))
        if chunks is None:
            raw_headers.append((b"content-length", str(len(data)).encode()))
            pieces: Iterator[bytes] = iter([data])
        else:
            pieces = iter(chunks)
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path_part, "raw_path": path_part.encode(), "root_path": "",
                 "query_string": query.encode(), "headers": raw_headers, "client": ("127.0.0.1", 40000),
                 "server": ("127.0.0.1", 8080)}
        consumed = 0
        pending = next(pieces, None)
        answer: dict[str, Any] = {"body": b""}

        async def receive() -> dict:
            nonlocal consumed, pending
            if pending is None:
                await asyncio.sleep(3600)
            chunk, pending = pending, next(pieces, None)
            consumed += 1
            return {"type": "http.request", "body": chunk, "more_body": pending is not None}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        await asyncio.wait_for(self.app(scope, receive, send), 30)
        body = answer["body"]
        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError:
            parsed = body
        return answer["status"], parsed, consumed


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("limits") / "security").ensure()


@pytest.fixture
def api(tmp_path: Path, bundle: Bundle) -> Iterator[Api]:
    made = Api(tmp_path, bundle)
    yield made
    made.close()


def paths(body: Any) -> set[str]:
    return {d["path"] for d in body.get("details") or []}


def app(app_id: str = "/lim/app", **extra: Any) -> dict:
    return {"id": app_id, "cmd": "sleep 60", "cpus": 0.1, "mem": 32, "instances": 1, **extra}


# -- counts ---------------------------------------------------------------------------------

def test_a_million_instances_is_refused_naming_the_field(api: Api) -> None:
    status, body, _ = api.call("POST", "/v2/apps", app(instances=1_000_000))
    assert status == 422 and paths(body) == {"/instances"}
    assert "10000" in body["details"][0]["errors"][0]
    status, body, _ = api.call("POST", "/dockyard/v1/plan", app(instances=10_000_000))
    assert status == 422 and paths(body) == {"/instances"}
    status, body, _ = api.call("PUT", "/v1/jobs/many", {"id": "many", "run": {"cmd": "true", "instances": 10**7}})
    assert status == 422 and paths(body) == {"/run/instances"}
    assert api.call("GET", "/v2/apps")[1] == {"apps": []}


def test_scale_by_past_the_bound_changes_nothing(api: Api) -> None:
    assert api.call("POST", "/v2/apps", app("/grp/a", instances=2))[0] == 201
    for factor in (1e9, float("inf"), -1, "x", True):
        raw = json.dumps({"scaleBy": factor}, allow_nan=True).encode()
        status, body, _ = api.call("PUT", "/v2/groups/grp?force=true", raw=raw)
        assert status in (400, 422) and body["details"], (factor, status, body)
    assert api.ctx.services.apps["/grp/a"].app.instances == 2
    status, body, _ = api.call("PUT", "/v2/groups/grp?force=true", {"scaleBy": 2})
    assert status == 200 and api.ctx.services.apps["/grp/a"].app.instances == 4


def test_max_instances_is_a_flag(tmp_path: Path, bundle: Bundle) -> None:
    small = Api(tmp_path, bundle, Limits(max_instances=5))
    try:
        status, body, _ = small.call("POST", "/v2/apps", app(instances=6))
        assert status == 422 and "at most 5" in body["details"][0]["errors"][0]
        assert small.call("POST", "/v2/apps", app(instances=5))[0] == 201
    finally:
        small.close()


def test_ids_env_and_labels_are_bounded(api: Api) -> None:
    cases = [
        (app("/" + "a" * 300), "/id"),
        (app("/lim/tasks"), "/id"),  # Marathon's reserved last segments
        (app("/lim/versions"), "/id"),
        (app(env={f"V{i}": "x" for i in range(1001)}), "/env"),
        (app(env={"BIG": "x" * (300 << 10)}), "/env"),
        (app(labels={f"l{i}": "x" for i in range(257)}), "/labels"),
        (app(healthChecks=[{"protocol": "TCP"}] * 300), "/healthChecks"),
        (app(backoffSeconds=1e300), "/backoffSeconds"),
    ]
    for document, field in cases:
        status, body, _ = api.call("POST", "/v2/apps", document)
        assert status == 422 and field in paths(body), (field, status, body)
    job = {"id": "j" * 300, "run": {"cmd": "true"}}
    status, body, _ = api.call("POST", "/v1/jobs", job)
    assert status == 422 and paths(body) == {"/id"}
    job = {"id": "j", "labels": {f"l{i}": "x" for i in range(300)}, "run": {"cmd": "true"}}
    status, body, _ = api.call("POST", "/v1/jobs", job)
    assert status == 422 and paths(body) == {"/labels"}


# -- numbers JSON cannot carry ------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b'{"id": "/x", "cmd": "a", "cpus": Infinity}', b'{"id": "/x", "cmd": "a", "cpus": NaN}',
    b'{"id": "/x", "cmd": "a", "mem": -Infinity}', b'{"id": "/x", "cmd": "a", "cpus": 1e400}',
    b'{"id": "/x", "cmd": "a", "fetch": [{"uri": "u", "x": NaN}]}',
])
def test_non_finite_numbers_are_refused_and_nothing_is_stored(api: Api, raw: bytes) -> None:
    status, body, _ = api.call("POST", "/v2/apps", raw=raw)
    assert status == 400 and body["message"] == "Invalid JSON" and body["details"][0]["errors"]
    assert api.call("GET", "/v2/apps")[:2] == (200, {"apps": []})


def test_yaml_infinity_names_its_field(api: Api) -> None:
    raw = b"id: /x\ncmd: a\ncpus: .inf\n"
    status, body, _ = api.call("POST", "/v2/apps", raw=raw, headers={"content-type": "application/yaml"})
    assert status == 400 and paths(body) == {"/cpus"}
    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\nid: /x\ncmd: a\n"  # aliases: the billion laughs
    status, body, _ = api.call("POST", "/v2/apps", raw=bomb, headers={"content-type": "application/yaml"})
    assert status == 400 and "aliases" in json.dumps(body)


# -- request size and shape -------------------------------------------------------------------

def test_a_50_mb_body_is_413_at_once_by_its_length(api: Api) -> None:
    started = time.perf_counter()
    status, body, consumed = api.call("POST", "/v2/apps", raw=b" " * 10, headers={"content-length": str(50 << 20)})
    assert status == 413 and body["details"][0]["path"] == "/"
    assert consumed == 0 and time.perf_counter() - started < 0.5


def test_a_50_mb_body_without_a_length_is_read_only_to_the_limit(api: Api) -> None:
    chunk = b"[" + b"1," * (32 << 10)  # 64 KiB pieces, 800 of them
    started = time.perf_counter()
    status, body, consumed = api.call("POST", "/v2/apps", chunks=(chunk for _ in range(800)))
    assert status == 413 and body["message"] == "Request Entity Too Large"
    assert consumed <= (1 << 20) // len(chunk) + 2  # stopped at the limit, the rest never read
    assert time.perf_counter() - started < 1.0


def test_ten_thousand_levels_of_nesting_are_refused_in_milliseconds(api: Api) -> None:
    for raw in (b"[" * 10_000 + b"]" * 10_000, b'{"id": "/x", "cmd": "a", "env": ' + b'{"a":' * 10_000 + b"1"
                + b"}" * 10_001, b"[" * 100_000):
        started = time.perf_counter()
        status, body, _ = api.call("POST", "/v2/apps", raw=raw)
        assert status == 422 and "nested deeper than 64" in body["details"][0]["errors"][0]
        assert time.perf_counter() - started < 0.2
    status, body, _ = api.call("POST", "/v2/apps", raw=b"- " * 3000 + b"x",
                               headers={"content-type": "application/yaml"})
    assert status in (400, 422) and body["details"]


def test_unknown_routes_and_methods_answer_in_marathons_shape(api: Api) -> None:
    status, body, _ = api.call("GET", "/v2/nothing-here")
    assert status == 404 and "message" in body
    status, body, _ = api.call("GET", "/v2/apps/a%0Ab")
    assert status in (404, 422) and "message" in body


# -- the create handler runs once ---------------------------------------------------------

def test_a_failure_after_creating_does_not_run_the_handler_again(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    services = api.ctx.services
    created = []
    real_create = services.create

    def counting_create(*args: Any, **kwargs: Any) -> Any:
        created.append(args)
        return real_create(*args, **kwargs)

    def broken_view(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(services, "create", counting_create)
    monkeypatch.setattr(marathon_views, "app_view", broken_view)
    status, body, _ = api.call("POST", "/v2/apps", app("/once/only"))
    assert status == 500 and "rendering failed" in body["message"]  # not a 409 from a second run
    assert len(created) == 1


# -- privileged specs ---------------------------------------------------------------------------

PRIVILEGED = [
    ({"container": {"type": "DOCKER", "docker": {"image": "busybox", "privileged": True}}},
     "/container/docker/privileged"),
    ({"container": {"docker": {"image": "busybox", "parameters": [{"key": "cap-add", "value": "SYS_ADMIN"}]}}},
     "/container/docker/parameters(0)"),
    ({"container": {"docker": {"image": "busybox", "parameters": [{"key": "--device", "value": "/dev/sda"}]}}},
     "/container/docker/parameters(0)"),
    ({"container": {"docker": {"image": "busybox"}, "volumes": [{"containerPath": "/h", "hostPath": "/etc"}]}},
     "/container/volumes(0)/hostPath"),
    ({"container": {"docker": {"image": "busybox"}, "volumes": [{"containerPath": "c", "hostPath": "../../x"}]}},
     "/container/volumes(0)/hostPath"),
]


@pytest.mark.parametrize("extra, field", PRIVILEGED, ids=[f for _, f in PRIVILEGED])
def test_privileged_apps_need_the_flag_and_an_admin(api: Api, tmp_path: Path, bundle: Bundle,
                                                    extra: dict, field: str) -> None:
    document = app("/priv/app", **extra)
    status, body, _ = api.call("POST", "/v2/apps", document)
    assert status == 422 and paths(body) == {field} and "--allow-privileged" in body["details"][0]["errors"][0]
    status, body, _ = api.call("PUT", "/v2/apps/priv/app", document)
    assert status == 422 and paths(body) == {field}
    status, body, _ = api.call("POST", "/v2/groups/priv", {"apps": [{**document, "id": "app"}]})
    assert status == 422 and paths(body) == {"/apps(0)" + field}
    allowed = Api(tmp_path / "allowed", bundle, allow_privileged=True)
    try:
        assert allowed.call("POST", "/v2/apps", document)[0] == 201
        assert allowed.call("POST", "/v2/apps", app("/priv/other", **extra), who=allowed.viewer)[0] == 403
    finally:
        allowed.close()


def test_a_sandbox_volume_is_not_privileged(api: Api) -> None:
    document = app("/priv/cache", container={"docker": {"image": "busybox"},
                                             "volumes": [{"containerPath": "cache", "hostPath": "cache-dir"}]})
    assert api.call("POST", "/v2/apps", document)[0] == 201


def test_privileged_jobs_need_the_flag(api: Api) -> None:
    job = {"id": "priv", "run": {"cmd": "true", "docker": {"image": "busybox", "privileged": True},
                                 "volumes": [{"containerPath": "/h", "hostPath": "/", "mode": "RW"}]}}
    status, body, _ = api.call("PUT", "/v1/jobs/priv", job)
    assert status == 422 and paths(body) == {"/run/docker/privileged", "/run/volumes(0)/hostPath"}


# -- the store keeps only what loads --------------------------------------------------------

def test_an_unreadable_stored_app_is_skipped_with_an_error(tmp_path: Path, bundle: Bundle,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    first = Api(tmp_path, bundle)
    assert first.call("POST", "/v2/apps", app("/keep/me"))[0] == 201
    first.close()
    store = open_store(tmp_path / "data")
    good, _ = store.get("/services/apps/keep:me")
    broken = json.loads(good)
    broken["app"]["id"] = "/bad/me"
    broken["app"]["instances"] = 1_000_000  # as an older scheduler without the bound kept it
    store.put("/services/apps/bad:me", json.dumps(broken).encode())
    store.put("/jobs/badjob", b'{"id": "badjob", "run": {"cmd": "true", "cpus": -5}}')
    store.close()
    with caplog.at_level(logging.ERROR):
        second = Api(tmp_path, bundle)
    try:
        assert set(second.ctx.services.apps) == {"/keep/me"}
        assert "badjob" not in second.ctx.jobs.jobs
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("/services/apps/bad:me cannot be loaded" in m for m in errors)
        assert any("/jobs/badjob cannot be loaded" in m for m in errors)
        assert second.ctx.store.get("/quarantine/services/apps/bad:me")[0] is not None
        assert second.call("GET", "/v2/apps")[0] == 200
    finally:
        second.close()


def test_the_store_is_private(tmp_path: Path, bundle: Bundle) -> None:
    made = Api(tmp_path, bundle)
    assert made.call("POST", "/v2/apps", app("/private/app"))[0] == 201
    made.ctx.store.compact()  # a snapshot too
    made.close()
    root = tmp_path / "data" / "state"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    files = [p for p in root.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"lock", "snapshot"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_older_readable_store_is_made_private(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put("/a", b"1")
    store.close()
    for path in (tmp_path / "state").iterdir():
        os.chmod(path, 0o644)
    os.chmod(tmp_path / "state", 0o755)
    open_store(tmp_path).close()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "state").iterdir())


def test_agent_checkpoints_are_private(tmp_path: Path) -> None:
    from framework.local.agent import checkpoint

    meta = tmp_path / "meta" / "slaves" / "S1" / "frameworks" / "F"
    checkpoint.write_json(meta / "framework.info", {"a": 1})
    checkpoint.write_new(meta / "executors" / "e" / "task.json", {"b": 2})
    checkpoint.append_line(meta / "executors" / "e" / "task.updates", {"state": "TASK_RUNNING"})
    checkpoint.write_lines(meta / "status.updates", [{"x": 1}])
    for path in tmp_path.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


# -- event streams -------------------------------------------------------------------------------

def test_a_slow_reader_is_dropped_at_its_byte_budget() -> None:
    bus = EventBus()
    slow = bus.subscribe(max_bytes=100_000)
    fast = bus.subscribe(max_bytes=100_000)
    unbounded = bus.subscribe(maxsize=3)  # in-process: drops its oldest, as before
    big = "x" * 30_000
    for index in range(10):
        bus.publish("api_post_event", n=index, appDefinition={"labels": {"big": big}})
        assert fast.get(0)["n"] == index
    assert slow.overflowed and slow.queue.empty() and slow.pending_bytes == 0
    assert not fast.overflowed and fast.pending_bytes == 0
    assert [unbounded.get(0)["n"] for _ in range(3)] == [7, 8, 9]
    assert bus.subscriber_count == 2  # the slow one left the bus
    assert asyncio.run(slow.aget(0.01)) is None


def test_one_large_event_still_reaches_a_reader_that_keeps_up() -> None:
    bus = EventBus()
    reader = bus.subscribe(max_bytes=1_000)
    bus.publish("api_post_event", appDefinition={"labels": {"big": "x" * 50_000}})
    event, data = asyncio.run(reader.aget_encoded(1))
    assert len(data) > 50_000 and not reader.overflowed


def test_events_are_encoded_once_for_every_reader() -> None:
    bus = EventBus()
    readers = [bus.subscribe(max_bytes=10 << 20) for _ in range(40)]
    bus.publish("api_post_event", appDefinition={"labels": {"big": "x" * 100_000}})
    payloads = [asyncio.run(r.aget_encoded(1))[1] for r in readers]
    assert all(p is payloads[0] for p in payloads)  # one copy, not forty
