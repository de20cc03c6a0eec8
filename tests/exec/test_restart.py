"""A nested container's exit status outlives an agent restart, for as long as its task's executor
lives, as Mesos keeps it in its runtime directory; an id it never knew, one removed, and one whose
executor is gone are 404 (src/slave/http.cpp `waitContainer`, containerizer.cpp `wait`)."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from framework.mesos import processio
from tests.exec.conftest import start_task
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework
from tests.support.procs import wait_for
from tests.support.security import authorization

pytestmark = pytest.mark.root

JSON = {"Content-Type": "application/json", "Accept": "application/json"}
STREAM_OUT = {"Content-Type": "application/json", "Accept": "application/recordio",
              "Message-Accept": "application/json"}


@pytest.fixture(scope="module")
def framework(cluster: Cluster) -> Iterator[RawFramework]:
    """A framework that checkpoints: its executors outlive an agent restart (Mesos's recovery)."""
    client = RawFramework(cluster.master_api(), checkpoint=True).start()
    yield client
    client.stop()


@pytest.fixture
def agent(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.agent_api(0).url, headers=authorization(cluster.operator), timeout=20) as client:
        yield client


def call(agent: httpx.Client, kind: str, cid: dict) -> httpx.Response:
    field = kind.lower()
    return agent.post("/api/v1", content=json.dumps({"type": kind, field: {"container_id": cid}}), headers=JSON)


def test_exit_statuses_outlive_an_agent_restart_while_their_task_runs(cluster: Cluster, framework: RawFramework,
                                                                       agent: httpx.Client) -> None:
    task = start_task(framework, "kept", "sleep 600")["container_status"]["container_id"]
    session = processio.container_id(uuid.uuid4().hex, task)
    with agent.stream("POST", "/api/v1", content=json.dumps(processio.session_call(session, ["sh", "-c", "exit 3"])),
                      headers=STREAM_OUT) as response:
        assert response.status_code == 200
        response.read()
    background = processio.container_id(uuid.uuid4().hex, task)
    launched = agent.post("/api/v1", content=json.dumps({"type": "LAUNCH_NESTED_CONTAINER", "launch_nested_container": {
        "container_id": background, "command": {"value": "exit 5"}}}), headers=JSON)
    assert launched.status_code == 200
    wait_for(lambda: call(agent, "WAIT_CONTAINER", background).status_code == 200, 10, what="the second to end")

    cluster.kill_agent(0)
    cluster.start_agent(0)
    executor = task["parent"]["value"]
    wait_for(lambda: any(e["container"] == executor for f in cluster.agent_api(0).get_json("/state")["frameworks"]
                         for e in f["executors"]), 30, what="the agent to recover the task's executor")

    with httpx.Client(base_url=cluster.agent_api(0).url, headers=authorization(cluster.operator),
                      timeout=20) as restarted:
        waited = call(restarted, "WAIT_NESTED_CONTAINER", session)
        assert waited.status_code == 200, waited.text
        assert waited.json()["wait_nested_container"]["exit_status"] == 3 << 8
        assert call(restarted, "WAIT_CONTAINER", background).json()["wait_container"]["exit_status"] == 5 << 8
        unknown = processio.container_id(uuid.uuid4().hex, task)
        missing = call(restarted, "WAIT_NESTED_CONTAINER", unknown)
        assert (missing.status_code, missing.text) == (404, f"Container {processio.container_key(unknown)} "
                                                            f"cannot be found")
        assert call(restarted, "REMOVE_NESTED_CONTAINER", background).status_code == 200
        assert call(restarted, "WAIT_NESTED_CONTAINER", background).status_code == 404

        kept = Path(cluster.workdir, "agent0", "nested", "terminations", executor)
        assert kept.is_dir()
        framework.kill("kept")
        framework.wait_state("kept", "TASK_KILLED", timeout=30)
        wait_for(lambda: not kept.exists(), 20, what="the kept terminations to go with the executor")
        assert call(restarted, "WAIT_NESTED_CONTAINER", session).status_code == 404
