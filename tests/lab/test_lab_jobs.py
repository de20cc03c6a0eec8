"""The real master, agents and scheduler in a lab, driven through the Metronome API.

A job pinned to one node (its `node` attribute) runs inside that node's
namespace and is reachable from the host at the node's address; crashing the
node with `lab kill` is noticed by the master and reported for the task; `lab
down` then leaves nothing, executors and tasks included.
"""
from __future__ import annotations

import json

import pytest

from framework.local.lab import network
from tests.support.procs import wait_for
from tests.support.security import Endpoint

from .conftest import Lab, assert_clean, serves

FAST_DRILLS = "--agent-ping-interval 1 --agent-ping-timeout 5"
PORT = 18080   # inside agent2's namespace: nothing else listens there

pytestmark = [
    pytest.mark.root,
]



def task(api: Endpoint) -> dict | None:
    """The run's first task, with dockyard's detail (its `host`) as the CLI asks for it."""
    status, _, raw = api.call("GET", "/v1/jobs/web/runs", headers={"Dockyard-Detail": "true"})
    assert status == 200, raw
    tasks = [t for run in json.loads(raw) for t in run["tasks"]]
    return tasks[0] if tasks else None


def history(api: Endpoint) -> dict:
    status, job = api.json("GET", "/v1/jobs/web?embed=history")
    assert status == 200, job
    return job["history"]  # type: ignore[index]


def active_agents(master: Endpoint) -> set[str]:
    return {a["hostname"] for a in master.get_json("/state")["slaves"] if a.get("active", True)}


def test_job_runs_on_its_node_and_a_node_crash_is_reported(lab: Lab, task_python: str) -> None:
    # The framework is partition-aware: a run whose node vanished waits this long for it to
    # come back before it counts as failed (300 s by default).
    lab.up("--agents", "2", "--master-args", FAST_DRILLS, timeout=240,
           env={"DOCKYARD_JOB_UNREACHABLE_SECONDS": "5"})
    report = lab.status()
    ips = {node["name"]: node["ip"] for node in report["nodes"]}
    netns = {node["name"]: node["netns"] for node in report["nodes"]}
    api, master = lab.scheduler_api(), lab.master_api()
    wait_for(lambda: active_agents(master) == {"agent1", "agent2"}, timeout=60, what="agents")

    status, body = api.json("POST", "/v1/jobs", {"id": "web", "run": {
        "cmd": f"exec {task_python} -m http.server {PORT}", "cpus": 0.1, "mem": 32, "disk": 0,
        "placement": {"constraints": [{"attribute": "node", "operator": "LIKE",
                                       "value": "agent2"}]}}})
    assert status == 201, body
    status, body = api.json("POST", "/v1/jobs/web/runs")
    assert status == 201, body
    running = wait_for(lambda: (t := task(api)) and t.get("status") == "TASK_RUNNING" and t,
                       timeout=90, what="job task running")
    assert running["host"] == "agent2"
    # Reachable from the host at the node's address; absent from the other node.
    wait_for(lambda: serves(ips["agent2"], PORT), timeout=30, what="job's server on agent2")
    assert not serves(ips["agent1"], PORT)
    before = set(network.netns_pids(netns["agent2"]))
    assert len(before) >= 3, "agent, executor and task all live in the node's namespace"

    lab.run("kill", "agent2")
    assert network.netns_pids(netns["agent2"]) == []
    assert not serves(ips["agent2"], PORT)
    wait_for(lambda: "agent2" not in active_agents(master), timeout=60, what="agent2 lost")
    # The run that lost its node is reported failed (restart policy NEVER).
    wait_for(lambda: history(api)["failureCount"] == 1, timeout=90,
             what="the run on the crashed node reported failed")
    assert task(api) is None, "no run is left active"

    lab.run("down")
    assert_clean(lab)


@pytest.mark.slow
def test_zk_lab_finds_the_master_through_zookeeper(lab: Lab) -> None:
    lab.up("--agents", "2", "--zk", timeout=240)
    report = lab.status()
    control = report["nodes"][0]
    assert [role["role"] for role in control["roles"]] == ["zookeeper", "master", "scheduler"]
    settings = (lab.dir / "agent1" / "agent.env").read_text()
    assert f'DOCKYARD_MASTER="zk://{control["ip"]}:2181/mesos"' in settings

    def registered() -> bool:
        state = lab.master_api().get_json("/state")
        return ({a["hostname"] for a in state["slaves"]} == {"agent1", "agent2"}
                and [f["name"] for f in state["frameworks"]] == ["dockyard"])

    wait_for(registered, timeout=90, what="agents and scheduler registered via zk://")
    lab.run("down")
    assert_clean(lab)
