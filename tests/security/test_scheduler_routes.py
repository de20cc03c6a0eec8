"""Every route of the scheduler's API, for every kind of caller, against its access decision.

The app is built as `dockyard scheduler` builds it (scheduler/main.py `build_context`,
scheduler/api/app.py `build_app`) around a real store, secured with a generated
bundle's users (`operator`: admin, `viewer`: viewer); requests go straight to the
ASGI app (tests/security/route_matrix.py).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from starlette.routing import Route

from framework.security.bundle import Bundle
from framework.security.gate import Access
from scheduler.api.app import build_app
from scheduler.context import SchedulerConfig
from scheduler.main import build_context
from scheduler.security import FORBIDDEN, REALM, SchedulerSecurity, load_security
from tests.security.route_matrix import (EXPECT, Caller, ask, check_refusal, route_cases, run_matrix,
                                         server_error)
from tests.support.security import authorization


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def build(workdir: Path, security: SchedulerSecurity) -> Any:
    config = SchedulerConfig(master="127.0.0.1:1", data_dir=str(workdir / "data"), security=security)
    ctx = build_context(config)
    return ctx, build_app(ctx)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("sched-routes") / "security").ensure()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, bundle: Bundle) -> Iterator[Any]:
    ctx, app = build(tmp_path_factory.mktemp("sched-secured"), load_security(http_users=str(bundle.users_file)))
    yield app
    ctx.store.close()


def callers(bundle: Bundle) -> list[Caller]:
    operator, viewer = bundle.operator, bundle.viewer
    return [Caller("none", None), Caller("wrong", basic(operator.principal, operator.secret + "x")),
            Caller("viewer", authorization(viewer)["Authorization"]),
            Caller("admin", authorization(operator)["Authorization"])]


def test_every_route_has_an_explicit_decision(secured: Any) -> None:
    cases, undecided = route_cases(secured.routes)
    assert not undecided, "\n".join(undecided)
    decisions = {(c.method, c.template): c.access for c in cases}
    assert len(decisions) > 40  # the Marathon and Metronome tables are both there
    assert decisions[("GET", "/ping")] == decisions[("GET", "/health")] == Access.OPEN
    assert decisions[("GET", "/metrics")] == decisions[("GET", "/openapi.json")] == Access.READ
    for (method, path), access in decisions.items():
        if method == "GET" and path not in ("/ping", "/health"):
            assert access == Access.READ, (method, path)
        elif method != "GET" and path != "/dockyard/v1/plan":  # a dry run changes nothing
            assert access == Access.WRITE, (method, path)


def test_a_route_without_a_decision_fails_the_matrix() -> None:
    async def endpoint(request: Any) -> Any:
        raise AssertionError("never called")

    _, undecided = route_cases([Route("/v2/sneaky", endpoint, methods=["GET", "POST"])])
    assert undecided == ["GET /v2/sneaky: made without an access decision",
                         "POST /v2/sneaky: made without an access decision"]


def test_route_matrix(secured: Any, bundle: Bundle) -> None:
    cases, _ = route_cases(secured.routes)
    failures = run_matrix(secured, cases, callers(bundle), EXPECT, realm=REALM)
    assert not failures, "\n".join(failures)


def test_a_viewer_is_told_why_in_marathons_words(secured: Any, bundle: Bundle) -> None:
    answer = ask(secured, "POST", "/v2/apps", authorization(bundle.viewer), b'{"id": "/x", "cmd": "true"}')
    assert answer.status == 403
    message = json.loads(answer.body)["message"]
    assert message.startswith(FORBIDDEN) and "viewer" in message
    answer = ask(secured, "GET", "/v2/apps", {})
    assert answer.status == 401 and answer.headers["www-authenticate"] == 'Basic realm="Mesosphere"'
    assert json.loads(answer.body)["message"].startswith("Unauthorized")


HOSTILE = {
    "bad base64": "Basic !!!not-base64!!!",
    "no colon": "Basic " + base64.b64encode(b"operator").decode(),
    "three parts": "Basic " + base64.b64encode(b"operator:a:b").decode(),
    "empty user": "Basic " + base64.b64encode(b":secret").decode(),
    "non-ascii": "Basic " + "é" * 40,
    "non-utf8 payload": "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
    "other scheme": "Bearer abc.def.ghi",
    "scheme alone": "Basic",
    "extra spaces": "Basic  " + base64.b64encode(b"operator:x").decode(),
    "64 KB": "Basic " + "A" * 65536,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_authorization_headers_are_401_on_every_route(secured: Any, kind: str) -> None:
    cases, _ = route_cases(secured.routes)
    header = [(b"authorization", HOSTILE[kind].encode("latin-1"))]
    failures = []
    for case in cases:
        answer = ask(secured, case.method, case.path, header)
        if case.access == Access.OPEN:
            if server_error(answer.status) or answer.status in (401, 403):
                failures.append(f"{case.method} {case.path}: {answer.status}")
        elif answer.status != 401 or check_refusal(answer, REALM):
            failures.append(f"{case.method} {case.path}: {answer.status} {answer.body[:100]!r}")
    assert not failures, "\n".join(failures)


def test_without_security_flags_every_route_stays_open(tmp_path: Path) -> None:
    ctx, app = build(tmp_path, SchedulerSecurity())
    try:
        cases, undecided = route_cases(app.routes)
        assert not undecided
        for case in cases:
            if case.method == "GET":
                answer = ask(app, case.method, case.path, {})
                assert answer.status not in (401, 403) and not server_error(answer.status), (case, answer.status)
    finally:
        ctx.store.close()


def test_openapi_document_survives_the_gate(secured: Any, bundle: Bundle) -> None:
    answer = ask(secured, "GET", "/openapi.json", authorization(bundle.viewer))
    assert answer.status == 200
    document = json.loads(answer.body)
    apps = document["paths"]["/v2/apps"]
    assert apps["post"]["summary"] == "Create an app (a deployment starts it)"
    assert apps["post"]["operationId"] == "post_create_app"
    assert "AppDefinition" in document["components"]["schemas"]
    assert document["paths"]["/v1/jobs/{job_id}"]["put"]["parameters"][0]["name"] == "job_id"
