"""Tasks in a lab node run under their own cgroup limits, as on any agent.

A lab node is a network namespace; its agent must still see the host's cgroup
hierarchies, or its tasks would run with no limit at all. A service that
allocates 200 MB under `mem: 32` is killed by its own limit and the app's
last failure says so; the node, its agent and its neighbours are untouched.
"""
from __future__ import annotations

import pytest

from tests.support.procs import wait_for

from .conftest import Lab

pytestmark = [pytest.mark.root]


def test_a_memory_hog_in_the_lab_is_killed_by_its_own_limit(lab: Lab, task_python: str) -> None:
    lab.up("--agents", "1", timeout=240)
    api = lab.scheduler_api()
    hog = f"{task_python} -c \"b = bytearray(200 * 1024 * 1024); print('survived', flush=True)\"; sleep 60"
    status, body = api.json("POST", "/v2/apps", {"id": "/hog", "cmd": hog, "cpus": 0.1, "mem": 32,
                                                 "instances": 1, "backoffSeconds": 60})
    assert status == 201, body

    def failure() -> dict | None:
        return api.json("GET", "/v2/apps/hog")[1]["app"].get("lastTaskFailure")

    failed = wait_for(failure, timeout=90, what="the hog's first failure")
    assert failed["state"] == "TASK_FAILED", failed  # type: ignore[index]
    assert "REASON_CONTAINER_LIMITATION_MEMORY" in failed["message"], failed  # type: ignore[index]
    assert lab.node("agent1")["roles"][0]["healthy"], "the agent itself survived the task's OOM kill"
