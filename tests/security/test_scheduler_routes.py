"""The scheduler's own route decisions: GETs read, everything else writes, `/ping` and `/health` open.

The app is built as `dockyard scheduler` builds it (scheduler/lifecycle.py `build_context`,
scheduler/api/app.py `build_app`) around a real store, secured with a generated
bundle's users (`operator`: admin, `viewer`: viewer); requests go straight to the
ASGI app (tests/security/route_matrix.py). Every route against every kind of caller,
hostile headers and `--insecure`: tests/security/test_route_matrix.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from framework.security.bundle import Bundle
from framework.security.gate import Access
from scheduler.api.app import build_app
from scheduler.context import SchedulerConfig
from scheduler.lifecycle import build_context
from scheduler.security import FORBIDDEN, SchedulerSecurity, load_security
from tests.security.route_matrix import ask, route_cases
from tests.support.security import authorization


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
        elif method != "GET" and path not in ("/dockyard/v1/plan", "/ui/new/app/preview"):  # dry runs change nothing
            # A router's report may only end a drain sooner or hold it to its bound (docs/router.md),
            # and routers, like marathon-lb, are readers.
            expected = Access.READ if path == "/dockyard/v1/routers" else Access.WRITE
            assert access == expected, (method, path)


def test_a_viewer_is_told_why_in_marathons_words(secured: Any, bundle: Bundle) -> None:
    answer = ask(secured, "POST", "/v2/apps", authorization(bundle.viewer), b'{"id": "/x", "cmd": "true"}')
    assert answer.status == 403
    message = json.loads(answer.body)["message"]
    assert message.startswith(FORBIDDEN) and "viewer" in message
    answer = ask(secured, "GET", "/v2/apps", {})
    assert answer.status == 401 and answer.headers["www-authenticate"] == 'Basic realm="Mesosphere"'
    assert json.loads(answer.body)["message"].startswith("Unauthorized")


def test_openapi_document_survives_the_gate(secured: Any, bundle: Bundle) -> None:
    answer = ask(secured, "GET", "/openapi.json", authorization(bundle.viewer))
    assert answer.status == 200
    document = json.loads(answer.body)
    apps = document["paths"]["/v2/apps"]
    assert apps["post"]["summary"] == "Create an app (a deployment starts it)"
    assert apps["post"]["operationId"] == "post_create_app"
    assert "AppDefinition" in document["components"]["schemas"]
    assert document["paths"]["/v1/jobs/{job_id}"]["put"]["parameters"][0]["name"] == "job_id"
