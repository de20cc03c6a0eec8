"""Apps, their running instances and an unfinished deployment survive a scheduler restart."""
from __future__ import annotations

from pathlib import Path

from tests.services.conftest import Marathon
from tests.support.procs import wait_for


def test_restart_keeps_apps_tasks_and_deployments(cluster, tmp_path: Path) -> None:
    first = Marathon.start(cluster, tmp_path, log_name="first.log")
    try:
        first.call("POST", "/v2/apps", {"id": "/keep", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                        "instances": 2})
        tasks = {t["id"] for t in first.wait_deployed("/keep")["tasks"]}
        first.call("POST", "/v2/apps", {"id": "/stuck", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                        "constraints": [["rack", "IS", "nowhere"]]})
        deployment = first.call("GET", "/v2/deployments")[0]["id"]
    finally:
        first.process.stop()
    second = Marathon.start(cluster, tmp_path, log_name="second.log")
    try:
        app = second.app("/keep")
        assert {t["id"] for t in app["tasks"]} == tasks and not app["deployments"]
        assert [d["id"] for d in second.call("GET", "/v2/deployments")] == [deployment]
        assert second.app("/stuck")["deployments"] == [{"id": deployment}]
        second.call("DELETE", f"/v2/deployments/{deployment}")  # roll back: removes the app
        wait_for(lambda: second.status("GET", "/v2/apps/stuck")[0] == 404, timeout=20, what="rolled back")
        second.call("DELETE", "/v2/apps/keep")
        wait_for(lambda: second.status("GET", "/v2/apps/keep")[0] == 404, timeout=20, what="deleted")
    finally:
        second.process.stop()
