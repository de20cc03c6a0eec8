"""The UI's routes in the scheduler's route matrix: every route x method x caller against its
access decision, on the scheduler app `dockyard up` would serve, with the UI's routes added
(tests/security/test_route_matrix.py walks the same app once the scheduler mounts them)."""
from __future__ import annotations

from pathlib import Path
from unittest import mock

from framework.security.gate import Access
from tests.security.route_matrix import route_cases
from tests.security.test_route_matrix import build_servers, callers, walk
from tests.ui.ui_scheduler import build_app_with_ui


def test_every_ui_route_answers_every_caller_as_its_decision_says(tmp_path: Path) -> None:
    with mock.patch("scheduler.api.app.build_app", build_app_with_ui):
        bundle, servers = build_servers(tmp_path / "up", insecure=False)
    assert bundle is not None
    try:
        server = servers["scheduler"]
        cases, undecided = route_cases(server.app.routes)
        ui = [case for case in cases if case.template.startswith("/ui") or case.template == "/"]
        assert len(ui) >= 20 and not undecided
        assert {case.access for case in ui} == {Access.READ, Access.WRITE}  # nothing open
        assert all(case.access == Access.WRITE for case in ui if case.method == "POST"
                   and not case.template.endswith("/preview"))
        problems = [line for line in walk(server, callers(bundle)) if "(/ui" in line or "(/, " in line]
        assert not problems, "\n".join(problems)
    finally:
        for started in servers.values():
            started.close()
