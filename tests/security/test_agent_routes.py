"""Every route of the agent, every method, every kind of caller, against its access decision.

The agent's app is asked directly (no process, no master): a route made without
a decision fails the walk; READ routes want Basic credentials of the
`mesos-agent-readonly` realm, the executor API an executor token of the
`mesos-agent-executor` realm (and nothing else), `/health` nobody. No answer is
a server error, whatever the header.
"""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from framework.local.agent import Agent, AgentConfig
from framework.local.agent_http import build_app
from framework.local.agent_security import AgentSecurity
from framework.security import tokens
from framework.security.bundle import Bundle
from framework.security.gate import Access
from tests.security.route_matrix import ask, route_cases, server_error



def basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("security") / "security").ensure(agents=["agent0"])


def secured_app(bundle: Bundle, work_dir: Path):  # noqa: ANN201 - a Starlette app
    security = AgentSecurity.from_flags(
        http_credentials=bundle.credentials_file, authenticate_readonly=True, authenticate_readwrite=True,
        authenticate_executors=True, executor_secret_key=bundle.executor_key_file, acls=bundle.acls_file,
        environ={})
    return build_app(Agent(AgentConfig(master="127.0.0.1:1", work_dir=work_dir, security=security)))


def callers(bundle: Bundle) -> dict[str, str | None]:
    key = bundle.executor_key_file.read_bytes()
    return {
        "none": None,
        "wrong": basic(bundle.operator.principal, "not-the-secret"),
        "viewer": basic(bundle.viewer.principal, bundle.viewer.secret),
        "operator": basic(bundle.operator.principal, bundle.operator.secret),
        "token": "Bearer " + tokens.issue(key, framework_id="f", executor_id="e", container_id="c"),
        "foreign-token": "Bearer " + tokens.issue(b"k" * 32, framework_id="f", executor_id="e", container_id="c"),
        "garbage": "Bearer \x7f\x01not-a-token",
    }


EXPECT = {
    Access.OPEN: {"none": "pass", "wrong": "pass", "viewer": "pass", "operator": "pass", "token": "pass",
                  "foreign-token": "pass", "garbage": "pass"},
    Access.READ: {"none": "401", "wrong": "401", "viewer": "pass", "operator": "pass", "token": "401",
                  "foreign-token": "401", "garbage": "401"},
    Access.EXECUTOR: {"none": "401", "wrong": "401", "viewer": "401", "operator": "401", "token": "pass",
                      "foreign-token": "401", "garbage": "401"},
}
CHALLENGES = {Access.READ: 'Basic realm="mesos-agent-readonly"', Access.EXECUTOR: 'Bearer realm="mesos-agent-executor"'}


def test_every_route_has_a_decision_and_keeps_it(bundle: Bundle, tmp_path: Path) -> None:
    app = secured_app(bundle, tmp_path)
    (tmp_path / "slaves").mkdir()
    cases, undecided = route_cases(app.routes)
    assert not undecided, undecided
    assert {case.access for case in cases} == {Access.OPEN, Access.READ, Access.EXECUTOR}
    failures = []
    for case in cases:
        path = case.path + (f"?path={tmp_path}/slaves" if case.path.startswith("/files/") else "")
        for name, header in callers(bundle).items():
            answer = ask(app, case.method, path, {"Authorization": header} if header is not None else {})
            wanted = EXPECT[case.access][name]
            label = f"{case.method} {case.path} as {name}"
            if server_error(answer.status):
                failures.append(f"{label}: {answer.status} {answer.body[:120]!r}")
            elif wanted == "pass" and answer.status in (401, 403):
                failures.append(f"{label}: refused {answer.status}")
            elif wanted == "401":
                if answer.status != 401:
                    failures.append(f"{label}: {answer.status}, expected 401")
                elif not answer.headers.get("www-authenticate", "").startswith(CHALLENGES[case.access]):
                    failures.append(f"{label}: challenge {answer.headers.get('www-authenticate')!r}")
                elif answer.body != b"401 Unauthorized.":
                    failures.append(f"{label}: body {answer.body[:80]!r}")
    assert not failures, "\n".join(failures)


def test_without_flags_nothing_is_asked(tmp_path: Path) -> None:
    """Off by default: an agent started as before answers as before."""
    app = build_app(Agent(AgentConfig(master="127.0.0.1:1", work_dir=tmp_path)))
    for path in ("/state", "/metrics/snapshot", "/monitor/statistics", "/health"):
        assert ask(app, "GET", path, {}).status == 200, path
    assert ask(app, "POST", "/api/v1/executor", {}, body=b'{"type": "HEARTBEAT", "framework_id": {"value": "f"}, '
                                                        b'"executor_id": {"value": "e"}}').status == 202


def test_sandbox_acls_decide_by_the_executors_user(bundle: Bundle, tmp_path: Path) -> None:
    """`access_sandboxes`: the executor's command user, else its framework's user."""
    acls = tmp_path / "acls.json"
    acls.write_text('{"permissive": false, "access_sandboxes": ['
                    '{"principals": {"values": ["viewer"]}, "users": {"values": ["nobody"]}},'
                    '{"principals": {"values": ["operator"]}, "users": {"type": "ANY"}}]}')
    security = AgentSecurity.from_flags(http_credentials=bundle.credentials_file, authenticate_readonly=True,
                                        acls=acls, environ={})
    agent = Agent(AgentConfig(master="127.0.0.1:1", work_dir=tmp_path, security=security))
    agent.link.agent_id = "S1"
    app = build_app(agent)
    framework = agent._framework({"id": {"value": "F"}, "user": "root", "name": "f"})  # noqa: SLF001
    root_dir = tmp_path / "slaves" / "S1" / "frameworks" / "F" / "executors" / "as-root" / "runs" / "c1"
    nobody_dir = tmp_path / "slaves" / "S1" / "frameworks" / "F" / "executors" / "as-nobody" / "runs" / "c2"
    for directory in (root_dir, nobody_dir):
        directory.mkdir(parents=True)
        (directory / "stdout").write_text("out\n")
    from framework.local.agent import ExecutorRecord

    framework.executors["as-root"] = ExecutorRecord({"executor_id": {"value": "as-root"}, "command": {}}, "F",
                                                    "c1", root_dir, False)
    framework.executors["as-nobody"] = ExecutorRecord(
        {"executor_id": {"value": "as-nobody"}, "command": {"user": "nobody"}}, "F", "c2", nobody_dir, False)
    viewer = {"Authorization": basic(bundle.viewer.principal, bundle.viewer.secret)}
    operator = {"Authorization": basic(bundle.operator.principal, bundle.operator.secret)}
    read = "/files/read?offset=0&path="
    assert ask(app, "GET", read + f"{nobody_dir}/stdout", viewer).status == 200
    denied = ask(app, "GET", read + f"{root_dir}/stdout", viewer)
    assert (denied.status, denied.body) == (403, b"403 Forbidden.")
    assert ask(app, "GET", read + f"{root_dir}/missing", viewer).status == 403  # before existence: tells nothing
    assert ask(app, "GET", read + f"{root_dir}/stdout", operator).status == 200
    assert ask(app, "GET", read + f"{tmp_path}/meta", operator).status == 403  # not a sandbox
