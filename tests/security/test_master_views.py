"""The master's security decisions on their own: realms per flag, route levels, ACL subjects and objects.

The same decisions against running processes: test_master_auth.py, test_master_frameworks.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.local.master import security as master_security, validation
from framework.local.master.core import Master, MasterConfig
from framework.local.master.routes import create_app
from framework.local.master.security import Views, executor_user, task_user
from framework.security.acls import ALLOW_ALL, Acls
from framework.security.gate import Access, access_of


def test_every_master_route_has_the_access_mesos_gives_it() -> None:
    app = create_app(Master(MasterConfig()))
    levels = {}
    for route in app.routes:
        methods = sorted(getattr(route, "methods", None) or ["GET"])
        access = {access_of(route, m) for m in methods}
        assert None not in access, f"{route.path} has no access decision"
        levels[route.path] = access.pop()
    expected = {"/api/v1/scheduler": Access.FRAMEWORK, "/api/v1": Access.WRITE, "/teardown": Access.WRITE,
                "/internal/agent": Access.AGENT, "/state": Access.READ, "/state.json": Access.READ,
                "/frameworks": Access.READ, "/slaves": Access.READ, "/tasks": Access.READ,
                "/health": Access.OPEN, "/redirect": Access.OPEN}
    for path, level in expected.items():
        assert levels[path] == level and levels["/master" + path] == level, path
    assert levels["/version"] == Access.OPEN
    assert levels["/metrics"] == levels["/metrics/snapshot"] == Access.READ


def test_each_flag_turns_its_realm_on(tmp_path: Path) -> None:
    credentials = tmp_path / "c.json"
    credentials.write_text(json.dumps({"credentials": [{"principal": "p", "secret": "s"}]}))
    assert master_security.load(MasterConfig()).gate.realms == {}
    assert master_security.load(MasterConfig()).acls is ALLOW_ALL
    security = master_security.load(MasterConfig(credentials=str(credentials), authenticate_http_readonly=True,
                                                 authenticate_agents=True))
    assert {level: realm.name for level, realm in security.gate.realms.items()} == {
        Access.READ: "mesos-master-readonly", Access.AGENT: "dockyard-master-agents"}
    assert security.tls is None


def test_the_users_acls_are_asked_about() -> None:
    framework = {"user": "fw"}
    assert task_user({"command": {"value": "x", "user": "t"}, "executor": {"command": {"user": "e"}}},
                     framework) == "t"
    assert task_user({"executor": {"command": {"value": "x", "user": "e"}}}, framework) == "e"
    assert task_user({"command": {"value": "x"}}, framework) == "fw"
    assert executor_user({"command": {"user": "e"}}, framework) == "e"
    assert executor_user({}, framework) == "fw"
    assert master_security.registration_refused("", ["*", "prod"]) == \
        "Not authorized to register framework  with roles { *, prod }"


def test_views_filter_by_principal_and_user() -> None:
    acls = Acls.from_json({"permissive": False,
                           "view_frameworks": [{"principals": {"values": ["v"]}, "users": {"values": ["a"]}}],
                           "view_tasks": [{"principals": {"values": ["v"]}, "users": {"values": ["a"]}}],
                           "view_executors": [{"principals": {"values": ["v"]}, "users": {"type": "ANY"}}]})
    viewer, stranger = Views(acls, "v"), Views(acls, None)
    mine, theirs = {"user": "a"}, {"user": "b"}
    assert viewer.framework(mine) and not viewer.framework(theirs)
    assert viewer.task({}, mine) and not viewer.task({"command": {"user": "root"}}, mine)
    assert not viewer.task({}, theirs)  # a task is seen only with its framework
    assert viewer.executor({"command": {"user": "root"}}, mine) and not viewer.executor({}, theirs)
    assert not stranger.framework(mine)  # unauthenticated: ANY, never in a values list
    assert Views(ALLOW_ALL, None).everything


@pytest.mark.parametrize("old, new, message", [
    ({"principal": "a"}, {}, "Changing framework's principal is not allowed."),
    ({}, {"principal": "a"}, "Changing framework's principal is not allowed."),
    ({"user": "u"}, {"user": "root"}, "Updating 'FrameworkInfo.user' is unsupported; attempted to update from "
                                      "'u' to 'root'"),
    ({"checkpoint": True}, {}, "Updating 'FrameworkInfo.checkpoint' is unsupported; attempted to update from "
                               "'true' to 'false'"),
    ({"principal": "a", "user": "u"}, {"principal": "a", "user": "u", "name": "new"}, None),
])
def test_what_a_framework_may_not_change(old: dict, new: dict, message: str | None) -> None:
    assert validation.framework_update_error(old, new) == message


def test_a_subscribe_is_validated_against_the_authenticated_principal() -> None:
    call = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n", "principal": "x"}}}
    assert validation.validate_call(call) is None
    assert validation.validate_call(call, "x") is None
    assert validation.validate_call(call, "y") == (
        "Authenticated principal 'y' does not match principal 'x' set in `FrameworkInfo`")
