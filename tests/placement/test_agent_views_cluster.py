"""The dry-run preview and live placement see each agent alike, whatever its attributes' types.

The preview reads agents from the master's `/state`, live placement from offers. A
constraint on a SET or RANGES attribute must pick the same agent in both: a preview
that promises an agent the live scheduler then refuses (or the other way round) is
worse than no preview. Real master, agents, executors and scheduler processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from scheduler.mesos_json import agent_view, agent_views_from_state
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess

# agent0 and agent1 differ in a SET, a RANGES, a SCALAR and a TEXT attribute.
ATTRIBUTES = ["zone:{a,b};slots:[1-5];level:3;rack:r1", "zone:{c};slots:[6-9];level:4.5;rack:r2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("agent-views"), agents=len(ATTRIBUTES))
    try:
        cluster.start_master()
        for index, attributes in enumerate(ATTRIBUTES):  # each agent its own attributes
            cluster.agent_args = ["--attributes", attributes]
            cluster.start_agent(index)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def scheduler(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    with SchedulerProcess.start(cluster, Path(tmp_path_factory.mktemp("agent-views-scheduler"))) as scheduler:
        yield scheduler


def test_an_agent_reads_the_same_from_its_offers_and_from_state(cluster: Cluster) -> None:
    """Before any scheduler holds the agents' offers: every agent is free, whole, in both."""
    framework = RawFramework(cluster.master_api(), name="views").start()
    try:
        offered = {}
        for index in range(len(ATTRIBUTES)):
            offer = framework.offer(cluster.agent_name(index))
            offered[offer["hostname"]] = agent_view([offer])
    finally:
        framework.stop()
    stated = {view.hostname: view for view in agent_views_from_state(cluster.state())}
    assert offered["agent0"].attributes == {"zone": "{a,b}", "slots": "[1-5]", "level": "3", "rack": "r1"}
    for host, view in offered.items():
        seen = stated[host]
        assert (view.agent_id, view.attributes, view.role) == (seen.agent_id, seen.attributes, seen.role)
        assert (view.cpus, view.mem, view.disk, view.gpus, view.port_ranges) == \
            (seen.cpus, seen.mem, seen.disk, seen.gpus, seen.port_ranges)


def _app(app_id: str, constraint: list[str]) -> dict:
    return {"id": app_id, "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1,
            "constraints": [constraint]}


@pytest.mark.parametrize("name, constraint, host", [
    ("set", ["zone", "IS", "{a,b}"], "agent0"),
    ("ranges", ["slots", "IS", "[6-9]"], "agent1"),
    ("scalar", ["level", "IS", "4.5"], "agent1"),
    ("text", ["rack", "LIKE", "r1"], "agent0"),
])
def test_preview_and_live_placement_pick_the_same_agent(scheduler: SchedulerProcess, name: str,
                                                        constraint: list[str], host: str) -> None:
    app = _app(f"/views/{name}", constraint)
    preview = scheduler.call("POST", "/dockyard/v1/plan", app)
    assert [a["host"] for a in preview["assignments"]] == [host], preview
    scheduler.call("POST", "/v2/apps", app)
    try:
        running = scheduler.wait_until(
            lambda: scheduler.call("GET", f"/v2/apps{app['id']}")["app"]["tasks"],
            lambda tasks: any(t["state"] == "TASK_RUNNING" for t in tasks),
            f"{app['id']} running where the preview said", timeout=30)
        assert [t["host"] for t in running] == [host]
    finally:
        scheduler.status("DELETE", f"/v2/apps{app['id']}?force=true")
        wait_for(lambda: not [t for t in scheduler.call("GET", "/v2/tasks")["tasks"]
                              if t["appId"] == app["id"]], timeout=30, what=f"{app['id']} gone")
