"""Task users and `run_tasks`: the generated ACLs, the scheduler's question about its caller, sandboxes."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from framework.errors import Forbidden
from framework.local.agent.sandbox import create_sandbox
from framework.security.acls import Acls
from framework.security.authn import Principal
from framework.security.bundle import OPERATOR, SCHEDULER, VIEWER, default_acls
from scheduler.api.errors import render_error
from scheduler.run_as import check_run_as, refused


@pytest.mark.parametrize("principal, user, allowed", [
    (OPERATOR, "root", True), (OPERATOR, "nobody", True),
    (SCHEDULER, "root", True),             # the master asks about the framework: the warm executor is root's
    ("alice", "nobody", True), ("alice", "daemon", True), ("alice", "root", False),
    (VIEWER, "root", False),
    (None, "root", False), (None, "nobody", True),
])
def test_generated_acls_let_the_operator_run_as_anyone_and_others_as_anyone_but_root(
        principal: str | None, user: str, allowed: bool) -> None:
    assert Acls.from_json(default_acls()).authorized("run_tasks", principal, user) is allowed


def _request(acls: Acls | None, principal: str | None) -> SimpleNamespace:
    security = SimpleNamespace(acls=acls)
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(security=security)),
                           state=SimpleNamespace(principal=Principal(principal) if principal else None))


def test_without_acls_every_caller_may_ask_for_any_user() -> None:
    assert refused(_request(None, "alice"), "root") is None  # type: ignore[arg-type]
    assert refused(_request(None, None), "root") is None  # type: ignore[arg-type]


def test_a_refusal_is_a_403_naming_the_caller_the_user_and_each_field() -> None:
    acls = Acls.from_json(default_acls())
    with pytest.raises(Forbidden) as caught:
        check_run_as(_request(acls, "alice"),  # type: ignore[arg-type]
                     [("/apps(0)/user", "daemon"), ("/apps(1)/user", "root")])
    error = caught.value
    why = "Principal 'alice' may not run tasks as user 'root' (run_tasks in the scheduler's --acls)"
    assert render_error(error).status_code == 403 and str(error) == f"Not Authorized to perform this action! {why}"
    assert error.details == [{"path": "/apps(1)/user", "errors": [why]}]
    check_run_as(_request(acls, OPERATOR), [("/user", "root")])  # type: ignore[arg-type]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_sandbox_belongs_to_its_user_and_is_closed_to_others(tmp_path: Path) -> None:
    create_sandbox(tmp_path / "nobody" / "runs" / "c1", "nobody")
    made = (tmp_path / "nobody" / "runs" / "c1").stat()
    assert made.st_uid == 65534 and made.st_mode & 0o777 == 0o750
    create_sandbox(tmp_path / "root", "root")
    assert (tmp_path / "root").stat().st_uid == 0 and (tmp_path / "root").stat().st_mode & 0o005
    with pytest.raises(KeyError):
        create_sandbox(tmp_path / "ghost", "no-such-user-here")
