"""Every route of every server x every kind of caller, against the route's access decision.

The master's, the agent's and the scheduler's apps are built in-process from the
very argv `dockyard up` gives them (framework/local/cluster/supervisor.py `plan`), parsed
by each component's own command; only the last step (uvicorn) is replaced, so
the routes, realms, ACLs and gates are the ones a started cluster serves.
Requests go straight to the ASGI apps (tests/security/route_matrix.py).

Callers: nobody, a wrong secret, the viewer, the operator (admin), the scheduler's
framework principal, an agent's principal, a valid executor token and foreign,
tampered and truncated ones. Expected: Mesos's realms on the master and the agent
(any principal of the credentials file authenticates; the ACLs decide later),
Marathon's roles on the scheduler (viewers read, admins write), executor tokens
and nothing else on the agent's executor API. No 5xx; a 401 challenges with the
realm of the route's level; libprocess's and Marathon's refusal bodies.

A route made without a decision, or left open without being listed here, fails
the walk. Hostile `Authorization` headers get 401 on every guarded route, and
the server goes on serving everybody else.
"""
from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from framework.local.cluster import supervisor
from framework.local.agent.model import dockyard_argv
from framework.local.agent.security import EXECUTOR_REALM, READONLY_REALM as AGENT_READONLY
from framework.local.agent.security import READWRITE_REALM as AGENT_READWRITE
from framework.local.master.security import AGENT_REALM, READONLY_REALM, READWRITE_REALM, SCHEDULER_REALM
from framework.security import tokens
from framework.security.bundle import SCHEDULER, Bundle
from framework.security.gate import Access, route
from scheduler.security import REALM as SCHEDULER_API_REALM
from tests.security.route_matrix import Caller, Case, ask, ask_async, route_cases, run_matrix

SERVERS = ("master", "agent1", "scheduler")


class Captured(Exception):
    """Raised instead of serving: the config a component's command built from its argv."""

    def __init__(self, config: Any) -> None:
        super().__init__("captured")
        self.config = config


def _capture(config: Any, *_args: Any, **_kwargs: Any) -> None:
    raise Captured(config)


def config_of(argv: list[str]) -> Any:
    """The config `dockyard <component> ...` builds from `argv` (a child's argv in `up`'s plan)."""
    component, *args = argv[len(dockyard_argv()):]
    if component == "scheduler":
        from scheduler.cli import cli
        target = "scheduler.main.serve"
    else:
        from framework.local.cli import cli
        target = {"master": "framework.local.master.main._run", "agent": "framework.local.agent.main.serve"}[component]
    environ = dict(os.environ)  # the agent's command exports settings for its executors
    try:
        with mock.patch(target, _capture):
            cli.main(args=[component, *args], prog_name="dockyard", standalone_mode=False)
    except Captured as captured:
        return captured.config
    finally:
        os.environ.clear()
        os.environ.update(environ)
    raise AssertionError(f"dockyard {component} did not get as far as serving: {argv}")


# -- what each caller must get ------------------------------------------------------------------

PRINCIPALS = ("viewer", "admin", "framework", "agent")  # every one is in credentials.json
CALLERS = ("none", "wrong", *PRINCIPALS, "token", "foreign-token", "tampered-token", "truncated-token")


def table(passes: dict[Access, tuple[str, ...]], forbidden: dict[Access, tuple[str, ...]] | None = None
          ) -> dict[Access, dict[str, str]]:
    """`expect[access][caller]`: "pass" when listed, "403" when forbidden, else "401"; OPEN passes all."""
    made = {Access.OPEN: {name: "pass" for name in CALLERS}}
    for access, names in passes.items():
        refused = (forbidden or {}).get(access, ())
        made[access] = {name: "pass" if name in names else "403" if name in refused else "401" for name in CALLERS}
    return made


@dataclass
class Server:
    name: str
    app: Starlette
    expect: dict[Access, dict[str, str]]
    challenges: dict[Access, str]     # the WWW-Authenticate of a 401 at each level
    json_body: bool                   # Marathon's {"message": ...}, else libprocess's text
    open_routes: set[str]             # the only routes anyone may call
    probe: str                        # a READ route the operator gets 200 from
    path_of: Callable[[Case], str] | None = None
    overrides: dict[tuple[str, str], str] = field(default_factory=dict)  # (route, caller) -> past the gate
    close: Callable[[], None] = field(default=lambda: None)


def master_server(config: Any) -> Server:
    from framework.local.master.core import Master
    from framework.local.master.routes import create_app
    from framework.local.master.main import load_security

    security = load_security(config)
    app = create_app(Master(config, security=security), None, security.gate)
    return Server(
        "master", app, table({level: PRINCIPALS for level in (Access.READ, Access.WRITE, Access.FRAMEWORK,
                                                              Access.AGENT)}),
        {Access.READ: f'Basic realm="{READONLY_REALM}"', Access.WRITE: f'Basic realm="{READWRITE_REALM}"',
         Access.FRAMEWORK: f'Basic realm="{SCHEDULER_REALM}"', Access.AGENT: f'Basic realm="{AGENT_REALM}"'},
        json_body=False,
        open_routes={"/health", "/master/health", "/redirect", "/master/redirect", "/version"},
        probe="/master/state")


def agent_server(config: Any) -> Server:
    from framework.local.agent.core import Agent
    from framework.local.agent.routes import build_app

    work_dir = Path(config.work_dir)
    app = build_app(Agent(config))
    files = [r.path for r in app.routes if isinstance(r, Route) and r.path.startswith("/files/")]
    return Server(
        "agent1", app,
        # /api/v1 takes executor tokens too (Mesos's `basic,jwt`), each confined to its own container
        table({Access.READ: PRINCIPALS, Access.WRITE: (*PRINCIPALS, "token"), Access.EXECUTOR: ("token",)}),
        {Access.READ: f'Basic realm="{AGENT_READONLY}"',
         Access.WRITE: f'Basic realm="{AGENT_READWRITE}",Bearer realm="{AGENT_READWRITE}"',
         Access.EXECUTOR: f'Bearer realm="{EXECUTOR_REALM}"'},
        json_body=False, open_routes={"/health", "/slave(1)/health"}, probe="/state",
        path_of=lambda case: case.path + (f"?path={work_dir}/slaves" if case.path.startswith("/files/") else ""),
        # `up`'s ACLs: agents authenticate, but `access_sandboxes` is not theirs.
        overrides={(path, "agent"): "403" for path in files})


def scheduler_server(config: Any) -> Server:
    from scheduler.api.app import build_app
    from scheduler.lifecycle import build_context

    ctx = build_context(config)
    return Server(
        "scheduler", build_app(ctx),
        table({Access.READ: ("viewer", "admin"), Access.WRITE: ("admin",)}, forbidden={Access.WRITE: ("viewer",)}),
        {Access.READ: f'Basic realm="{SCHEDULER_API_REALM}"', Access.WRITE: f'Basic realm="{SCHEDULER_API_REALM}"'},
        json_body=True, open_routes={"/ping", "/health"}, probe="/v2/apps", close=ctx.store.close)


BUILD = {"master": master_server, "agent1": agent_server, "scheduler": scheduler_server}


def build_servers(work_dir: Path, insecure: bool) -> tuple[Bundle | None, dict[str, Server]]:
    """The three apps of a one-agent `dockyard up` (secure by default, or `--insecure`)."""
    security = supervisor.prepare_security(work_dir, "127.0.0.1", 1, tls=False, insecure=insecure)
    children = supervisor.plan(1, work_dir, "127.0.0.1", 5050, 5051, 8080, True, None, security=security)
    return security.bundle, {child.name: BUILD[child.name](config_of(child.argv)) for child in children}


def basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


def callers(bundle: Bundle) -> list[Caller]:
    key = bundle.executor_key_file.read_bytes()
    token = tokens.issue(key, framework_id="f", executor_id="e", container_id="c")
    head, _, signature = token.split(".")
    other_claims = tokens.issue(key, framework_id="other", executor_id="e", container_id="c").split(".")[1]
    framework, agent = bundle.identity(SCHEDULER), bundle.identity("agent-agent1")
    made = [
        Caller("none", None),
        Caller("wrong", basic(bundle.operator.principal, bundle.operator.secret + "x")),
        Caller("viewer", basic(bundle.viewer.principal, bundle.viewer.secret)),
        Caller("admin", basic(bundle.operator.principal, bundle.operator.secret)),
        Caller("framework", basic(framework.principal, framework.secret)),
        Caller("agent", basic(agent.principal, agent.secret)),
        Caller("token", "Bearer " + token),
        Caller("foreign-token", "Bearer " + tokens.issue(b"another agent's key, 32 bytes long",
                                                         framework_id="f", executor_id="e", container_id="c")),
        Caller("tampered-token", f"Bearer {head}.{other_claims}.{signature}"),
        Caller("truncated-token", "Bearer " + token[:-4]),
    ]
    assert [c.name for c in made] == list(CALLERS)
    return made


def walk(server: Server, who: list[Caller]) -> list[str]:
    """Everything wrong with a server's table: routes without a decision, open routes not listed,
    levels nobody expects, and every answer of the matrix."""
    cases, problems = route_cases(server.app.routes)
    problems = [f"{server.name}: {p}" for p in problems]
    for case in cases:
        if case.access not in server.expect:
            problems.append(f"{server.name}: {case.method} {case.template} is {case.access.value}, "
                            f"a level this server has no realm for")
        elif case.access == Access.OPEN and case.template not in server.open_routes:
            problems.append(f"{server.name}: {case.method} {case.template} is open to anyone, "
                            f"and not listed as such")
    cases = [case for case in cases if case.access in server.expect]
    problems += run_matrix(server.app, cases, who, server.expect, server.challenges, json_body=server.json_body,
                           path_of=server.path_of, body=b"{}", overrides=server.overrides)
    problems += run_matrix(server.app, [c for c in cases if c.method != "GET"], who, server.expect,
                           server.challenges, json_body=server.json_body, path_of=server.path_of,
                           overrides=server.overrides)
    return problems


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bundle, dict[str, Server]]]:
    bundle, servers = build_servers(Path(tmp_path_factory.mktemp("matrix")) / "up", insecure=False)
    assert bundle is not None
    yield bundle, servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="module")
def insecure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    _, servers = build_servers(Path(tmp_path_factory.mktemp("matrix-open")) / "up", insecure=True)
    yield servers
    for server in servers.values():
        server.close()


# -- the matrix ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SERVERS)
def test_every_route_answers_every_caller_as_its_decision_says(secured: tuple[Bundle, dict[str, Server]],
                                                               name: str) -> None:
    bundle, servers = secured
    server = servers[name]
    cases, _ = route_cases(server.app.routes)
    assert len(cases) >= {"master": 50, "agent1": 20, "scheduler": 40}[name]  # the whole table is walked
    problems = walk(server, callers(bundle))
    assert not problems, "\n".join(problems)


def test_up_authenticates_every_guarded_level(secured: tuple[Bundle, dict[str, Server]]) -> None:
    """The apps walked are secured as `up` secures them: each level a route uses has its realm."""
    _, servers = secured
    for server in servers.values():
        levels = {case.access for case in route_cases(server.app.routes)[0]} - {Access.OPEN}
        assert levels and levels <= set(server.app.state.gate.realms), server.name


@pytest.mark.parametrize("name", SERVERS)
def test_insecure_serves_every_route_to_anyone(insecure: dict[str, Server], name: str) -> None:
    """`up --insecure`: the same tables, nothing asked, whatever is sent."""
    server = insecure[name]
    assert not server.app.state.gate.realms
    everyone = {access: {caller: "pass" for caller in ("none", "junk")} for access in Access}
    cases, undecided = route_cases(server.app.routes)
    assert not undecided
    problems = run_matrix(server.app, cases, [Caller("none", None), Caller("junk", "Basic !!!")], everyone,
                          "unused", path_of=server.path_of)
    assert not problems, "\n".join(problems)


# -- a route without a decision -------------------------------------------------------------------------

async def _sneaky(request: Request) -> Response:
    return PlainTextResponse("secrets")


def test_a_route_added_without_a_decision_fails_the_walk(secured: tuple[Bundle, dict[str, Server]]) -> None:
    bundle, servers = secured
    for server in servers.values():
        table_copy = [*server.app.routes, Route("/sneaky", _sneaky, methods=["GET", "POST"]),
                      Mount("/static", routes=[Route("/x", _sneaky)]),
                      route("/debug/vars", _sneaky, methods=["GET"], access=Access.OPEN)]
        app = Starlette(routes=table_copy)
        app.state.gate = server.app.state.gate
        # Why it must fail: served as it is, the undecided route is open to anyone.
        assert ask(app, "GET", "/sneaky", {}).status == 200
        problems = walk(replace(server, app=app), callers(bundle))
        assert f"{server.name}: GET /sneaky: made without an access decision" in problems
        assert f"{server.name}: POST /sneaky: made without an access decision" in problems
        assert any(p.startswith(f"{server.name}: Mount(") and "not a plain route" in p for p in problems), problems
        assert f"{server.name}: GET /debug/vars is open to anyone, and not listed as such" in problems
        assert len(problems) == 4, problems  # the real table itself is clean


# -- hostile headers ------------------------------------------------------------------------------------

def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _latin1(raw: bytes) -> str:
    """Header bytes as the ASGI scope carries them (sent byte for byte)."""
    return raw.decode("latin-1")


KEY = b"0123456789abcdef0123456789abcdef"
HOSTILE = {
    "empty": "",
    "blank": "   ",
    "scheme only": "Basic",
    "scheme and space": "Basic ",
    "bad base64": "Basic !!!not-base64!!!",
    "padding only": "Basic ====",
    "no colon": "Basic " + _b64(b"operator"),
    "two colons": "Basic " + _b64(b"operator:x:y"),
    "empty user": "Basic " + _b64(b":secret"),
    "empty user and secret": "Basic " + _b64(b":"),
    "non-ascii": _latin1(b"Basic \xff\xfe\xe9:\xe9"),
    "non-utf8 payload": "Basic " + _b64(b"\xff\xfe:\xfd"),
    "utf-8 credentials": "Basic " + _b64("op\u00e9rator:s\u00e9cret".encode()),
    "control characters": "Basic \x7f\x01\x00",
    "lower-case scheme": "basic " + _b64(b"operator:x"),
    "extra spaces": "Basic  " + _b64(b"operator:x"),
    "tab": "Basic\t" + _b64(b"operator:x"),
    "unknown principal": "Basic " + _b64(b"intruder:guess"),
    "64 KB basic": "Basic " + "A" * 65536,
    "64 KB bearer": "Bearer " + "eyJ" * 22000,
    "other scheme": "Negotiate abc",
    "bearer alone": "Bearer",
    "bearer garbage": "Bearer \x7f\x01not-a-token",
    "bearer dots": "Bearer ..",
    "bearer two parts": "Bearer abc.def",
    "bearer three parts": "Bearer abc.def.ghi",
    "alg none": "Bearer " + jwt.encode({"cid": "c", "eid": "e", "fid": "f"}, "", algorithm="none"),
    "expired": "Bearer " + jwt.encode({"cid": "c", "eid": "e", "fid": "f", "exp": 1}, KEY, algorithm="HS256"),
    "no claims": "Bearer " + jwt.encode({"sub": "x"}, KEY, algorithm="HS256"),
}


def hostile_callers(bundle: Bundle) -> list[Caller]:
    """`HOSTILE`, plus headers that are nearly right: a good credential or token, badly framed."""
    key = bundle.executor_key_file.read_bytes()
    token = tokens.issue(key, framework_id="f", executor_id="e", container_id="c")
    operator = basic(bundle.operator.principal, bundle.operator.secret)
    credentials = operator.split(" ")[1]
    near = {
        "good basic, lower-case scheme": "basic " + credentials,
        "good basic, upper-case scheme": "BASIC " + credentials,
        "good basic, tab": "Basic\t" + credentials,
        "good basic, two headers' worth": operator + ", " + operator,
        "good basic, secret with a newline": basic(bundle.operator.principal, bundle.operator.secret + "\n"),
        "good token, lower-case scheme": "bearer " + token,
        "good token, trailing junk": f"Bearer {token} x",
        "good token, as basic": "Basic " + token,
        "good token, signature only": "Bearer " + token.split(".")[2],
        "token signed with the operator's secret": "Bearer " + jwt.encode(
            {"cid": "c", "eid": "e", "fid": "f"}, bundle.operator.secret.encode(), algorithm="HS256"),
        "token alg HS512 with the key": "Bearer " + jwt.encode({"cid": "c", "eid": "e", "fid": "f"}, key,
                                                               algorithm="HS512"),
    }
    return [Caller(name, header) for name, header in {**HOSTILE, **near}.items()]


@pytest.mark.parametrize("name", SERVERS)
def test_hostile_headers_are_401_on_every_guarded_route(secured: tuple[Bundle, dict[str, Server]],
                                                         name: str) -> None:
    bundle, servers = secured
    server = servers[name]
    hostile = hostile_callers(bundle)
    expect = {access: {c.name: "pass" if access == Access.OPEN else "401" for c in hostile}
              for access in server.expect}
    cases, _ = route_cases(server.app.routes)
    problems = run_matrix(server.app, cases, hostile, expect, server.challenges, json_body=server.json_body,
                          path_of=server.path_of, body=b"{}")
    assert not problems, "\n".join(problems)
    # ... and the server still serves the operator.
    answer = ask(server.app, "GET", server.probe, {"Authorization": basic(bundle.operator.principal,
                                                                          bundle.operator.secret)})
    assert answer.status == 200, (answer.status, answer.body[:200])


@pytest.mark.parametrize("name", SERVERS)
def test_a_flood_of_bad_callers_does_not_keep_good_ones_out(secured: tuple[Bundle, dict[str, Server]],
                                                            name: str) -> None:
    """Good and hostile requests at once, on one event loop: each good one is served."""
    bundle, servers = secured
    server = servers[name]
    good = {"Authorization": basic(bundle.operator.principal, bundle.operator.secret)}

    async def together() -> list[tuple[str, int]]:
        asks = []
        for caller in hostile_callers(bundle) * 3:
            assert caller.authorization is not None
            asks.append(("bad", ask_async(server.app, "GET", server.probe,
                                          [(b"authorization", caller.authorization.encode("latin-1"))])))
            asks.append(("good", ask_async(server.app, "GET", server.probe, good)))
        answers = await asyncio.gather(*(a for _, a in asks))
        return [(kind, answer.status) for (kind, _), answer in zip(asks, answers)]

    statuses = asyncio.run(together())
    assert {status for kind, status in statuses if kind == "good"} == {200}
    assert {status for kind, status in statuses if kind == "bad"} == {401}
