"""The embedded master's operator event stream, offer timeout, partition-aware
re-registration and roles, against real `dockyard master` (and agent) processes.

As Mesos's operator API (src/master/http.cpp, `Master::Http::api`) and `--offer_timeout`; Mesos sends
REASON_AGENT_REREGISTERED updates to PARTITION_AWARE frameworks when an agent
it had reported unreachable comes back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.mesos_http import FakeAgent, Framework, Master, launch, open_stream, task_info
from tests.support.procs import wait_for

from .test_master import MULTI_ROLE, PARTITION_AWARE, StartMaster, start_master  # noqa: F401


def _of(kind: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for `EventStream.wait_for`: an event of type `kind`."""
    return lambda event: event.get("type") == kind


@pytest.fixture
def operator_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, agents=2, master_args=[
            "--heartbeat-interval", "0.5", "--agent-ping-interval", "0.2",
            "--agent-ping-timeout", "1.5"]).start() as cluster:
        yield cluster


def test_operator_subscribe_streams_what_the_master_does(operator_cluster: Cluster) -> None:
    cluster = operator_cluster
    events = open_stream(cluster.master_api(), "/api/v1", {"type": "SUBSCRIBE"})
    try:
        assert events.status == 200
        assert events.headers is not None
        assert events.headers["content-type"].startswith("application/json")
        subscribed = events.next()
        assert subscribed["type"] == "SUBSCRIBED"
        assert subscribed["subscribed"]["heartbeat_interval_seconds"] == 0.5
        state = subscribed["subscribed"]["get_state"]
        assert {a["agent_info"]["hostname"] for a in state["get_agents"]["agents"]} == \
            {"agent0", "agent1"}
        assert state["get_tasks"]["tasks"] == [] and state["get_frameworks"]["frameworks"] == []

        framework = RawFramework(cluster.master_api(), name="watched").start()
        try:
            added = events.wait_for(_of("FRAMEWORK_ADDED"))["framework_added"]["framework"]
            assert added["framework_info"]["id"]["value"] == framework.framework_id
            assert added["framework_info"]["name"] == "watched" and added["connected"]

            offer = framework.offer("agent0")
            framework.launch(offer, [command_task("exit 0", task_id="op-task")])
            task = events.wait_for(_of("TASK_ADDED"))["task_added"]["task"]
            assert task["task_id"] == {"value": "op-task"}
            assert task["framework_id"] == {"value": framework.framework_id}
            assert task["agent_id"] == offer["agent_id"] and task["state"] == "TASK_STAGING"
            states = []
            while "TASK_FINISHED" not in states:
                updated = events.wait_for(_of("TASK_UPDATED"), timeout=20)["task_updated"]
                assert updated["framework_id"] == {"value": framework.framework_id}
                assert updated["status"]["task_id"] == {"value": "op-task"}
                assert updated["state"] == updated["status"]["state"]
                states.append(updated["state"])
            assert states[-2:] == ["TASK_RUNNING", "TASK_FINISHED"], states

            # a quiet stream carries HEARTBEATs
            events.wait_for(_of("HEARTBEAT"), timeout=5)

            # an agent that dies is removed once it misses its pings
            cluster.kill_agent(1)
            removed = events.wait_for(_of("AGENT_REMOVED"), timeout=15)["agent_removed"]
            gone = [a for a in state["get_agents"]["agents"]
                    if a["agent_info"]["hostname"] == "agent1"][0]
            assert removed["agent_id"] == gone["agent_info"]["id"]
        finally:
            framework.stop()
        removed_fw = events.wait_for(_of("FRAMEWORK_REMOVED"))["framework_removed"]
        assert removed_fw["framework_info"]["id"]["value"] == framework.framework_id

        # the agent restarted on its work dir re-registers under its id: added again
        cluster.start_agent(1)
        agent = events.wait_for(_of("AGENT_ADDED"), timeout=20)["agent_added"]["agent"]
        assert agent["agent_info"]["hostname"] == "agent1" and agent["active"]
        assert agent["agent_info"]["id"] == gone["agent_info"]["id"]
        assert any(r["name"] == "cpus" for r in agent["total_resources"])
    finally:
        events.close()


def test_operator_subscribe_checks_accept(start_master: StartMaster) -> None:  # noqa: F811
    master = start_master()
    refused = master.post("/api/v1", {"type": "SUBSCRIBE"},
                          headers={"Content-Type": "application/json", "Accept": "text/html"})
    assert refused.status_code == 406
    # a subscriber that hangs up is forgotten: the next change still reaches the others
    first = master.stream("/api/v1", {"type": "SUBSCRIBE"})
    second = master.stream("/api/v1", {"type": "SUBSCRIBE"})
    try:
        assert first.next()["type"] == second.next()["type"] == "SUBSCRIBED"
        first.close()
        fw = Framework(master, {"user": "tester", "name": "after-close"})
        added = second.wait_for(_of("FRAMEWORK_ADDED"))["framework_added"]["framework"]
        assert added["framework_info"]["id"]["value"] == fw.id
        fw.close()
        second.wait_for(_of("FRAMEWORK_REMOVED"))
    finally:
        first.close()
        second.close()


def _unreachable_then_back(master: Master, info: dict[str, Any]) -> tuple[Framework, FakeAgent,
                                                                         list[dict[str, Any]]]:
    """Run t1 on an agent that stops pinging, then comes back reporting t1 running."""
    agent = FakeAgent(master, hostname="flaky", port=5071)
    fw = Framework(master, info)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("t1", agent.id)])]})
    run = agent.stream.wait_for("RUN_TASK")["run_task"]["task"]
    agent.update(fw.id, "t1", "TASK_RUNNING")
    first = fw.update("t1")
    fw.call("ACKNOWLEDGE", acknowledge={"agent_id": {"value": agent.id},
                                        "task_id": {"value": "t1"}, "uuid": first["uuid"]})
    removed = fw.update("t1", timeout=10)  # no PING from the fake agent: removed after 1 s
    assert removed["reason"] == "REASON_AGENT_REMOVED"
    agent.stream.close()
    back = FakeAgent(master, hostname="flaky", port=5071, agent_id=agent.id, reregister={
        "frameworks": [{**info, "id": {"value": fw.id}}],
        "tasks": [{"task_id": {"value": "t1"}, "framework_id": {"value": fw.id},
                   "name": "t1", "state": "TASK_RUNNING", "resources": run["resources"]}]})
    return fw, back, [removed]


def test_partition_aware_tasks_are_announced_when_their_agent_reregisters(
        start_master: StartMaster) -> None:  # noqa: F811
    master = start_master("--agent-ping-timeout", "1", "--agent-ping-interval", "0.2")
    fw, back, (removed,) = _unreachable_then_back(master, PARTITION_AWARE)
    assert removed["state"] == "TASK_UNREACHABLE"
    again = fw.update("t1", timeout=10)
    assert again["state"] == "TASK_RUNNING"
    assert again["reason"] == "REASON_AGENT_REREGISTERED"
    assert again["source"] == "SOURCE_MASTER" and "uuid" not in again
    assert again["agent_id"] == {"value": back.id} and again["message"] == "Agent reregistered"
    tasks = master.operator("GET_TASKS")["get_tasks"]
    assert [(t["task_id"]["value"], t["state"]) for t in tasks["tasks"]] == [("t1", "TASK_RUNNING")]
    assert tasks["unreachable_tasks"] == []
    # the agent keeps the task: nothing asks it to kill t1
    assert not [e for e in back.stream.drain(0.5) if e["type"] == "KILL_TASK"]


def test_other_frameworks_get_no_reregistered_update(start_master: StartMaster) -> None:  # noqa: F811
    master = start_master("--agent-ping-timeout", "1", "--agent-ping-interval", "0.2")
    fw, back, (removed,) = _unreachable_then_back(master, {"user": "tester", "name": "plain"})
    assert removed["state"] == "TASK_LOST"
    # Mesos kills the task it already reported lost; the scheduler hears nothing new
    kill = back.stream.wait_for("KILL_TASK", timeout=5)["kill_task"]
    assert kill["task_id"] == {"value": "t1"}
    assert not [e for e in fw.stream.drain(0.5) if e["type"] == "UPDATE"
                and e["update"]["status"].get("reason") == "REASON_AGENT_REREGISTERED"]


def test_offer_timeout_rescinds_unanswered_offers(start_master: StartMaster) -> None:  # noqa: F811
    master = start_master("--offer-timeout", "0.5")
    FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    rescind = fw.stream.wait_for("RESCIND", timeout=5)["rescind"]
    assert rescind["offer_id"] == offer["id"]
    again = fw.offers(timeout=5)[0]  # the resources come back in a new offer
    assert again["id"] != offer["id"] and again["agent_id"] == offer["agent_id"]
    # the rescinded offer is no longer valid: launching on it fails
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("late", again["agent_id"]["value"])])]})
    late = fw.update("late", timeout=5)
    assert late["state"] == "TASK_LOST" and late["reason"] == "REASON_INVALID_OFFERS"
    snapshot = master.get("/metrics/snapshot").json()
    rescinded = [v for k, v in snapshot.items() if k.endswith("/offers/rescinded")]
    assert rescinded and rescinded[0] >= 1
    flags = {f["name"]: f["value"] for f in master.operator("GET_FLAGS")["get_flags"]["flags"]}
    assert flags["offer_timeout"] == "0.5secs"


def test_answered_offers_are_not_rescinded(start_master: StartMaster) -> None:  # noqa: F811
    master = start_master("--offer-timeout", "0.5")
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("t1", agent.id)])]})
    agent.stream.wait_for("RUN_TASK")
    later = fw.stream.drain(1.2)
    assert not [e for e in later if e["type"] == "RESCIND"
                and e["rescind"]["offer_id"] == offer["id"]]


def test_get_roles_lists_weights_and_frameworks(start_master: StartMaster) -> None:  # noqa: F811
    master = start_master()
    FakeAgent(master)
    fw = Framework(master, MULTI_ROLE)
    fw.offers()
    answer = master.operator("GET_ROLES")
    assert answer["type"] == "GET_ROLES"
    roles = {r["name"]: r for r in answer["get_roles"]["roles"]}
    assert roles["dev"]["weight"] == 1.0 and roles["*"]["weight"] == 1.0
    assert roles["dev"]["frameworks"] == [{"value": fw.id}]


def test_tasks_a_reconnecting_agent_reports_are_announced_to_operators(
        start_master: StartMaster) -> None:  # noqa: F811
    """Mesos's Framework::addTask sends TASK_ADDED for a task the master takes in from an
    agent's re-registration; a task it already knew is not announced again."""
    master = start_master()
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("known", agent.id)])]})
    run = agent.stream.wait_for("RUN_TASK")["run_task"]["task"]
    agent.update(fw.id, "known", "TASK_RUNNING")
    fw.update("known")
    events = master.stream("/api/v1", {"type": "SUBSCRIBE"})
    try:
        assert events.next()["type"] == "SUBSCRIBED"
        agent.stream.close()  # the connection drops; the agent comes back with one more task
        wait_for(lambda: not master.operator("GET_AGENTS")["get_agents"]["agents"][0]["active"],
                 what="agent marked disconnected")
        surprise = {"task_id": {"value": "surprise"}, "framework_id": {"value": fw.id},
                    "name": "surprise", "state": "TASK_RUNNING", "resources": run["resources"]}
        back = FakeAgent(master, agent_id=agent.id, reregister={
            "frameworks": [{**fw.info, "id": {"value": fw.id}}],
            "tasks": [{**surprise, "task_id": {"value": "known"}, "name": "known"}, surprise]})
        added = events.wait_for(_of("TASK_ADDED"))["task_added"]["task"]
        assert added["task_id"] == {"value": "surprise"} and added["state"] == "TASK_RUNNING"
        assert added["framework_id"] == {"value": fw.id} and added["agent_id"] == {"value": agent.id}
        assert not [e for e in events.drain(0.5) if e["type"] == "TASK_ADDED"]  # not "known"
        tasks = master.operator("GET_TASKS")["get_tasks"]["tasks"]
        assert sorted(t["task_id"]["value"] for t in tasks) == ["known", "surprise"]
        back.close()
    finally:
        events.close()
