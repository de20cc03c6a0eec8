"""Nested containers across an agent killed with SIGKILL and restarted.

A nested container's exit status outlives the restart, for as long as its task's executor
lives, as Mesos keeps it in its runtime directory; an id it never knew, one removed, and one whose
executor is gone are 404 (src/slave/http.cpp `waitContainer`, containerizer.cpp `wait`). And the
nested containers themselves are recovered as Mesos's containerizer recovers them
(containerizer.cpp `recover`): one launched with LAUNCH_NESTED_CONTAINER runs on and can be
killed and waited for, one that ended while the agent was down answers WAIT with its real exit
code, a session's is destroyed (its connection is gone), so is one whose executor died meanwhile,
and nothing is left in the task's cgroups; in a task with an image (the runtime's exec) and in a
host task (its cgroups and namespaces entered)."""
from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from framework.mesos import processio
from tests.exec.conftest import nested_groups, start_task, task_record
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


def call(agent: httpx.Client, kind: str, cid: dict, **extra: object) -> httpx.Response:
    field = kind.lower()
    return agent.post("/api/v1", content=json.dumps({"type": kind, field: {"container_id": cid, **extra}}),
                      headers=JSON)


def api(cluster: Cluster) -> httpx.Client:
    return httpx.Client(base_url=cluster.agent_api(0).url, headers=authorization(cluster.operator), timeout=30)


def launch(agent: httpx.Client, cid: dict, command: str) -> None:
    launched = call(agent, "LAUNCH_NESTED_CONTAINER", cid, command={"value": command})
    assert launched.status_code == 200, launched.text


def sleepers(marker: str) -> list[int]:
    """Processes running `sleep <marker>` (in any namespace: /proc shows them all)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(argv) >= 2 and argv[0].endswith(b"sleep") and argv[1] == marker.encode():
                found.append(int(entry))
    return found


def start(framework: RawFramework, task_id: str, *, image: bool = True) -> dict:
    """`start_task`, on a fresh offer: those held from before an agent restart were rescinded."""
    framework.decline_all()
    return start_task(framework, task_id, "sleep 600", image=image)


def restart_agent(cluster: Cluster, executor: str) -> None:
    cluster.kill_agent(0)
    cluster.start_agent(0)
    wait_for(lambda: any(e["container"] == executor for f in cluster.agent_api(0).get_json("/state")["frameworks"]
                         for e in f["executors"]), 30, what="the agent to recover the task's executor")


def test_exit_statuses_outlive_an_agent_restart_while_their_task_runs(cluster: Cluster, framework: RawFramework,
                                                                       agent: httpx.Client) -> None:
    task = start_task(framework, "kept", "sleep 600")["container_status"]["container_id"]
    session = processio.container_id(uuid.uuid4().hex, task)
    with agent.stream("POST", "/api/v1", content=json.dumps(processio.session_call(session, ["sh", "-c", "exit 3"])),
                      headers=STREAM_OUT) as response:
        assert response.status_code == 200
        response.read()
    background = processio.container_id(uuid.uuid4().hex, task)
    launch(agent, background, "exit 5")
    wait_for(lambda: call(agent, "WAIT_CONTAINER", background).status_code == 200, 10, what="the second to end")

    executor = task["parent"]["value"]
    restart_agent(cluster, executor)

    with api(cluster) as restarted:
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

        kept = Path(cluster.workdir, "agent0", "nested", "containers", executor)
        assert kept.is_dir()
        framework.kill("kept")
        framework.wait_state("kept", "TASK_KILLED", timeout=30)
        wait_for(lambda: not kept.exists(), 20, what="the kept terminations to go with the executor")
        assert call(restarted, "WAIT_NESTED_CONTAINER", session).status_code == 404


@pytest.mark.parametrize("image", [True, False], ids=["image", "host"])
def test_nested_containers_are_recovered_after_the_agent_is_killed(cluster: Cluster, framework: RawFramework,
                                                                   image: bool) -> None:
    name = f"recovered-{'image' if image else 'host'}"
    status = start(framework, name, image=image)
    task = status["container_status"]["container_id"]
    record = task_record(cluster, status)
    sandbox = Path(record["sandbox"])
    base = 7100 if image else 7200
    term, kill, session_marker = str(base + 1), str(base + 2), str(base + 3)
    termed, killed, finishing, session = (processio.container_id(uuid.uuid4().hex, task) for _ in range(4))
    with api(cluster) as agent:
        launch(agent, termed, f"sleep {term}")
        launch(agent, killed, f"sleep {kill}")
        launch(agent, finishing, "while [ ! -e release ]; do sleep 0.1; done; exit 7")
        wait_for(lambda: sleepers(term) and sleepers(kill), 10, what="the nested containers to run")
        with agent.stream("POST", "/api/v1", headers=STREAM_OUT, content=json.dumps(
                processio.session_call(session, ["sleep", session_marker]))) as response:
            assert response.status_code == 200
            wait_for(lambda: sleepers(session_marker), 10, what="the session's process to run")
            cluster.kill_agent(0)
    (sandbox / "release").write_text("")  # the third ends while no agent runs
    status_file = Path(cluster.workdir, "agent0", "nested", "containers", *processio.container_key(finishing).split("."),
                       "status")
    wait_for(status_file.exists, 10, what="the third nested container to end while the agent is down")
    assert sleepers(term) and sleepers(kill), "the nested containers run on without their agent"

    restart_agent(cluster, task["parent"]["value"])
    with api(cluster) as agent:
        waited = call(agent, "WAIT_NESTED_CONTAINER", finishing)
        assert waited.status_code == 200, waited.text
        assert waited.json()["wait_nested_container"] == {"exit_status": 7 << 8,
                                                          "message": "Command exited with status 7"}

        wait_for(lambda: not sleepers(session_marker), 10, what="the session's process to be destroyed")
        ended = call(agent, "WAIT_NESTED_CONTAINER", session).json()["wait_nested_container"]
        assert ended["exit_status"] == signal.SIGKILL
        assert "session" in ended["message"]

        assert call(agent, "KILL_NESTED_CONTAINER", termed, signal=int(signal.SIGTERM)).status_code == 200
        waited = call(agent, "WAIT_NESTED_CONTAINER", termed)
        assert waited.status_code == 200, waited.text
        assert waited.json()["wait_nested_container"] == {"exit_status": int(signal.SIGTERM),
                                                          "message": "Command terminated with signal SIGTERM"}
        wait_for(lambda: not sleepers(term), 5, what="the first nested container's process to be gone")

        assert call(agent, "KILL_NESTED_CONTAINER", killed).status_code == 200
        waited = call(agent, "WAIT_NESTED_CONTAINER", killed)
        assert waited.status_code == 200, waited.text
        assert waited.json()["wait_nested_container"]["exit_status"] == signal.SIGKILL
        wait_for(lambda: not sleepers(kill), 5, what="the second nested container's process to be gone")
        again = call(agent, "KILL_NESTED_CONTAINER", killed)
        assert again.status_code == 404, again.text

        assert call(agent, "REMOVE_NESTED_CONTAINER", killed).status_code == 200
        assert call(agent, "WAIT_NESTED_CONTAINER", killed).status_code == 404
        wait_for(lambda: not nested_groups(record), 10, what="no nested cgroup left in the task's")
    framework.kill(name)
    framework.wait_state(name, "TASK_KILLED", timeout=30)


def test_nested_containers_of_an_executor_that_died_meanwhile_are_destroyed(cluster: Cluster,
                                                                            framework: RawFramework) -> None:
    status = start(framework, "orphaned")
    task = status["container_status"]["container_id"]
    marker = "7301"
    with api(cluster) as agent:
        launch(agent, processio.container_id(uuid.uuid4().hex, task), f"sleep {marker}")
        wait_for(lambda: sleepers(marker), 10, what="the nested container to run")
    kept = Path(cluster.workdir, "agent0", "nested", "containers", task["parent"]["value"])
    assert kept.is_dir()
    cluster.kill_agent(0)
    os.kill(executor_pid(cluster, task["parent"]["value"]), signal.SIGKILL)
    cluster.start_agent(0)
    framework.wait_state("orphaned", "TASK_FAILED", timeout=30)
    wait_for(lambda: not sleepers(marker), 20, what="the orphaned nested container to be destroyed")
    wait_for(lambda: not kept.exists(), 20, what="its checkpoints to go")


def executor_pid(cluster: Cluster, container: str) -> int:
    """The executor's pid, from the agent's checkpoint of its run (`run.json`)."""
    for run in Path(cluster.workdir, "agent0", "meta").glob(f"slaves/*/frameworks/*/executors/*/runs/{container}/run.json"):
        return int(json.loads(run.read_text())["pid"])
    raise AssertionError(f"no checkpointed run of {container}")
