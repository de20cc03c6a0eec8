"""The scheduler's OpenAPI document is true, and no request it describes (or one just outside
it) makes the scheduler fail.

The app is built as `dockyard scheduler` builds it (scheduler/lifecycle.py, scheduler/api/app.py)
around a real store, secured as it is by default (a generated bundle's users), and called
as its admin straight through ASGI. schemathesis generates, for every operation of
`/openapi.json`, requests that fit the document (positive) and requests that do not
(negative). Every answer must be:

- never a 5xx (the store being down, 503, is not what is tested here: it is up);
- for a 4xx, JSON with a `message`; for 400, 413 and 422 also `details`, each naming a
  field (`path`) and saying what is wrong with it (`errors`).

And the document must describe the handlers: every route the app serves is in it, and a
body that fits its schema fails, if it fails, only on a rule the schema cannot state (a
custom validator, never a type, range, length or enum the schema left out).

`make test` runs six seeded examples per operation and mode with JSON bodies (some 700
requests, about 30 s on a quiet machine); `make test-slow` runs `test_fuzz_long`: 150
unseeded examples each, JSON and YAML bodies.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from starlette.routing import Route

from framework.security.bundle import Bundle
from scheduler import limits as scheduler_limits
from scheduler.api.app import build_app, openapi
from scheduler.context import SchedulerConfig
from scheduler.jobs.specs import JobSpec, Schedule
from scheduler.limits import Limits
from scheduler.lifecycle import build_context
from scheduler.security import load_security
from scheduler.services.specs import AppDefinition
from tests.support.security import authorization

# Event streams never end: their refusals are tested in test_limits_http.py, not fuzzed here.
STREAMS = ["/v2/events", "/v1/events"]
FIELD_ERRORS = (400, 413, 422)
# Lowered so that a generated app of the most instances allowed stays cheap to plan.
LIMITS = Limits(max_instances=64)
# Objects that exist while fuzzing, so that requests naming them reach past "not found".
KNOWN = {"app_id": "fuzz/app", "group_id": "fuzz", "job_id": "fuzz", "schedule_id": "nightly"}
SEED_APP = {"id": "/fuzz/app", "cmd": "sleep 60", "cpus": 0.1, "mem": 32, "instances": 1,
            "labels": {"a": "b"}, "healthChecks": [{"protocol": "TCP"}]}
SEED_JOB = {"id": "fuzz", "run": {"cmd": "true", "cpus": 0.1, "mem": 32},
            "schedules": [{"id": "nightly", "cron": "0 3 * * *"}]}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    work = Path(tmp_path_factory.mktemp("openapi-fuzz"))
    bundle = Bundle(work / "security").ensure()
    security = load_security(http_users=str(bundle.users_file))
    config = SchedulerConfig(master="127.0.0.1:1", data_dir=str(work / "data"), security=security, limits=LIMITS)
    previous = scheduler_limits.current()
    fsync = os.environ.get("DOCKYARD_STORE_FSYNC")
    os.environ["DOCKYARD_STORE_FSYNC"] = "0"  # hundreds of stored changes: durability is not tested here
    try:
        ctx = build_context(config)
    finally:
        if fsync is None:
            os.environ.pop("DOCKYARD_STORE_FSYNC", None)
        else:
            os.environ["DOCKYARD_STORE_FSYNC"] = fsync
    try:
        yield build_app(ctx), authorization(bundle.operator)
    finally:
        ctx.store.close()
        scheduler_limits.configure(previous)


@pytest.fixture(scope="module")
def schema(secured: tuple[Any, dict[str, str]]) -> Any:
    app, auth = secured
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=dict(auth))


def problem(status: int, body: bytes, content_type: str, path: str = "") -> str | None:
    """What is wrong with an answer (None: nothing)."""
    if status == 503 and path == "/health":
        return None  # not subscribed to a master: what /health is for
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    if status < 400:
        return None
    if not content_type.startswith("application/json"):
        return f"{status} is not JSON ({content_type}): {body[:200]!r}"
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{status} body is not JSON: {body[:200]!r}"
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), str) or not payload["message"]:
        return f"{status} without a message: {body[:200]!r}"
    if status in FIELD_ERRORS:
        details = payload.get("details")
        if not isinstance(details, list) or not details:
            return f"{status} does not name the field: {body[:200]!r}"
        for detail in details:
            if not (isinstance(detail, dict) and isinstance(detail.get("path"), str) and detail["path"].startswith("/")
                    and isinstance(detail.get("errors"), list) and detail["errors"]
                    and all(isinstance(e, str) and e for e in detail["errors"])):
                return f"{status} detail without a path and errors: {detail!r}"
    return None


def seed(client: Any, auth: dict[str, str]) -> None:
    """(Re)create the objects KNOWN names (a fuzzed DELETE may have removed them)."""
    client.put("/v2/apps/fuzz/app?force=true", json=SEED_APP, headers=auth)
    client.put("/v1/jobs/fuzz", json=SEED_JOB, headers=auth)


def fuzz(schema: Any, auth: dict[str, str], examples: int, seeded: bool,
         media_type: str | None = None) -> tuple[list[str], int]:
    """(failures, requests made) of `examples` cases per operation, for each mode, with random
    path parameters and with those of objects that exist (KNOWN); bodies of `media_type` only
    when given (YAML is slow to write and to read: the long run covers it)."""
    failures: list[str] = []
    calls = 0
    app = schema.app
    with asgi.get_client(app) as client:
        for result in schema.exclude(path=STREAMS).get_all_operations():
            operation = result.ok()
            names = {p.name for p in operation.path_parameters}
            known = {k: v for k, v in KNOWN.items() if k in names}
            variants = [(mode, None) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
            if known and names <= set(known):
                variants += [(GenerationMode.POSITIVE, known), (GenerationMode.NEGATIVE, known)]
            began = time.monotonic()
            for mode, fixed in variants:
                seed(client, auth)
                strategy = operation.as_strategy(generation_mode=mode, headers=auth, path_parameters=fixed,
                                                 media_type=media_type if operation.body else None)

                @settings(max_examples=examples, deadline=None, derandomize=seeded, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case: Any) -> None:
                    nonlocal calls
                    calls += 1
                    response = case.call(session=client, headers=auth)
                    content_type = response.headers.get("content-type") or ""
                    if isinstance(content_type, list):
                        content_type = content_type[0] if content_type else ""
                    why = problem(response.status_code, response.content, content_type, operation.path)
                    if why:
                        label = mode.value + (", known ids" if fixed else "")
                        failures.append(f"{operation.method.upper()} {operation.path} ({label}): {why}\n"
                                        f"    {case.as_curl_command()[:600]}")

                try:
                    run()
                except Unsatisfiable:
                    pass  # nothing in this operation can be made wrong (no body, no parameters)
                except Exception as error:  # a generation problem, reported with the others
                    failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): "
                                    f"{type(error).__name__}: {str(error)[:300]}")
            if os.environ.get("DOCKYARD_FUZZ_TIMES"):
                print(f"{time.monotonic() - began:6.2f} s  {operation.method.upper()} {operation.path}")
    return failures, calls


def test_every_route_is_in_the_document(secured: tuple[Any, dict[str, str]], schema: Any) -> None:
    app, _ = secured
    api = [r for r in app.routes if not (isinstance(r, Route) and (r.path == "/" or r.path.startswith("/ui")))]
    assert len(api) < len(app.routes)  # the web UI's pages are served beside the API, not described in it
    document = openapi(api)
    served = set()
    for route in api:
        if isinstance(route, Route):
            path = route.path.replace(":path}", "}")
            served |= {(m.lower(), path) for m in (route.methods or set()) - {"HEAD"}}
    described = {(m, p) for p, operations in document["paths"].items() for m in operations}
    assert served == described
    loaded = {(o.method, o.path) for o in (r.ok() for r in schema.get_all_operations())}
    assert loaded | {("get", "/openapi.json")} == described  # schemathesis leaves the document itself out


def test_request_schemas_state_every_rule_but_custom_ones(secured: tuple[Any, dict[str, str]]) -> None:
    """A body that fits a model's schema breaks only its custom validators (`value_error`)."""
    from pydantic import ValidationError

    def rule_errors(model: type, body: Any) -> list[dict]:
        try:
            model.model_validate(body)
        except ValidationError as error:
            return [e for e in error.errors() if e["type"] not in ("value_error", "assertion_error")]
        return []

    app, auth = secured
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=dict(auth))
    bodies = {"post /v2/apps": AppDefinition, "post /v1/jobs": JobSpec,
              "post /v1/jobs/{job_id}/schedules": Schedule}
    seen = []
    for result in schema.get_all_operations():
        operation = result.ok()
        model = bodies.get(f"{operation.method} {operation.path}")
        if model is None:
            continue

        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE, media_type="application/json"))
        def check(case: Any) -> None:
            wrong = rule_errors(model, case.body)
            assert not wrong, f"{model.__name__}: the schema allows {wrong[0]}"

        check()
        seen.append(model)
    assert len(seen) == len(bodies)


def test_fuzz(secured: tuple[Any, dict[str, str]], schema: Any) -> None:
    _, auth = secured
    started = time.monotonic()
    failures, calls = fuzz(schema, auth, examples=int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "4")), seeded=True,
                           media_type="application/json")
    elapsed = time.monotonic() - started
    print(f"schemathesis: {calls} requests in {elapsed:.1f} s")
    assert not failures, f"{len(failures)} of {calls} answers wrong:\n" + "\n".join(failures[:40])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fuzz_long(secured: tuple[Any, dict[str, str]], schema: Any) -> None:
    _, auth = secured
    failures, calls = fuzz(schema, auth, examples=int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "150")), seeded=False)
    assert not failures, f"{len(failures)} of {calls} answers wrong:\n" + "\n".join(failures[:60])
