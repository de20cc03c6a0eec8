"""The agent's own route behaviour: open as before without flags, sandboxes by `access_sandboxes`.

The agent's app is asked directly (no process, no master). Every route against
every kind of caller (Basic principals, executor tokens, hostile headers):
tests/security/test_route_matrix.py.
"""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from framework.local.agent.core import Agent, AgentConfig
from framework.local.agent.routes import build_app
from framework.local.agent.security import AgentSecurity
from framework.security.bundle import Bundle
from tests.security.route_matrix import ask


def basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("security") / "security").ensure(agents=["agent0"])


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
    from framework.local.agent.model import ExecutorRecord

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
