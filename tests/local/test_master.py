"""The embedded master over real HTTP, case by case against the real master's scheduler API
(src/master/http.cpp `Master::Http::scheduler`, src/master/master.cpp).

Each test starts a real `dockyard master` process and speaks raw HTTP to it;
agents are fake but real clients of the internal agent protocol.
"""
from __future__ import annotations

import re
import uuid as uuidlib
from pathlib import Path
from typing import Callable, Iterator

import pytest

from framework.mesos.messages import new_uuid
from framework.security.bundle import Bundle
from tests.support.mesos_http import (JSON_HEADERS, FakeAgent, Framework, Master, launch,
                                      task_info)
from tests.support.procs import Process, dockyard, free_port, wait_for
from tests.support.security import Endpoint

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PARTITION_AWARE = {"user": "tester", "name": "pa", "capabilities": [{"type": "PARTITION_AWARE"}]}
MULTI_ROLE = {"user": "tester", "name": "mr", "roles": ["dev"],
              "capabilities": [{"type": "MULTI_ROLE"}]}


StartMaster = Callable[..., Master]


class Masters:
    """Master processes started by tests, secured with one bundle (every realm authenticated,
    agents too; the clients act as its operator), each stopped for sure at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.bundle = Bundle(workdir / "security").ensure()
        self.procs: list[tuple[Process, Master]] = []

    def argv(self, port: int, *flags: str, work_dir: Path | None = None) -> list[str]:
        return dockyard("master", "--ip", "127.0.0.1", "--port", str(port),
                        "--work-dir", str(work_dir or self.workdir / f"master-{port}"),
                        "--allocation-interval", "0.2", *self.bundle.master_flags(), *flags)

    def api(self, port: int) -> Endpoint:
        return Endpoint(f"http://127.0.0.1:{port}", self.bundle.operator)

    def start(self, *flags: str, port: int | None = None) -> Master:
        port = port or free_port()
        proc = Process(self.argv(port, *flags), self.workdir / f"master-{port}.log")
        client = Master(self.api(port))
        self.procs.append((proc, client))
        wait_for(lambda: client.api.ok() or not proc.alive(), timeout=20, what="master /health")
        assert proc.alive(), proc.output()
        return client

    def stop(self) -> None:
        for proc, client in self.procs:
            client.close()
            proc.stop()


@pytest.fixture
def start_master(tmp_path: Path) -> Iterator[StartMaster]:
    masters = Masters(tmp_path)
    yield masters.start
    masters.stop()


def _procs_of(start: StartMaster) -> list[tuple[Process, Master]]:
    return start.__self__.procs  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def shared_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    masters = Masters(tmp_path_factory.mktemp("shared-master"))
    yield masters.start("--status-update-retry", "0.4")
    masters.stop()


def _clean(master: Master) -> bool:
    state = master.get("/state").json()
    return not state["slaves"] and not [f for f in state["frameworks"] if f["connected"]]


@pytest.fixture
def master(shared_master: Master) -> Iterator[Master]:
    """The module's master, emptied of the agents and frameworks each test opened."""
    wait_for(lambda: _clean(shared_master), timeout=10, what="an empty cluster")
    yield shared_master
    shared_master.cleanup()
    wait_for(lambda: _clean(shared_master), timeout=10, what="test clean-up")


# --------------------------------------------------------------------------- event stream
def test_subscribe_stream_starts_with_subscribed_then_heartbeat(master: Master) -> None:
    stream = master.subscribe({"user": "tester", "name": "fw"})
    assert stream.status == 200
    assert stream.headers["content-type"] == "application/json"
    assert stream.headers["transfer-encoding"] == "chunked"
    assert UUID_RE.match(stream.headers["mesos-stream-id"])
    first = stream.next()
    assert first["type"] == "SUBSCRIBED"
    subscribed = first["subscribed"]
    assert subscribed["heartbeat_interval_seconds"] == 15.0
    info = subscribed["master_info"]
    assert subscribed["framework_id"]["value"] == f"{info['id']}-0000"
    assert info["version"] == "1.11.0" and info["ip"] == 16777343
    assert info["address"]["ip"] == "127.0.0.1"
    assert stream.next()["type"] == "HEARTBEAT"
    # exact framing: the decoder consumed `<len>\n<json>` records with nothing between
    assert stream.raw_records[1] == b'{"type":"HEARTBEAT"}'
    stream.close()


def test_heartbeat_interval_flag(start_master: StartMaster) -> None:
    master = start_master("--heartbeat-interval", "0.2")
    fw = Framework(master)
    assert fw.stream.seen[0]["subscribed"]["heartbeat_interval_seconds"] == 0.2
    fw.stream.wait_for("HEARTBEAT")
    fw.stream.wait_for("HEARTBEAT", timeout=2)
    fw.close()


def test_version_and_health(master: Master) -> None:
    version = master.get("/version").json()["version"]
    assert [int(p) for p in version.split(".")] == [1, 11, 0]
    for path in ("/health", "/master/health"):
        response = master.get(path)
        assert response.status_code == 200 and response.content == b""


# --------------------------------------------------------------------------- content negotiation
def test_content_negotiation(master: Master) -> None:
    body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}
    assert master.post("/api/v1/scheduler", body, headers={
        "Content-Type": "application/json; charset=utf-8"}).status_code == 415
    assert master.post("/api/v1/scheduler", body, headers={
        "Content-Type": "text/plain"}).status_code == 415
    assert master.client.post(master.base + "/api/v1/scheduler", headers=master.api.headers(),
                              content=b"{}").status_code == 400  # no Content-Type
    assert master.post("/api/v1/scheduler", None, raw=b"{not json").status_code == 400
    assert master.post("/api/v1/scheduler", body, headers={
        "Content-Type": "application/json", "Accept": "text/plain"}).status_code == 406
    # a protobuf body is answered as Mesos answers one it cannot parse (docs/mesos-compatibility.md)
    for path in ("/api/v1/scheduler", "/api/v1", "/master/api/v1", "/internal/agent"):
        refused = master.post(path, None, raw=b"\x08\x01", headers={"Content-Type": "application/x-protobuf"})
        assert (refused.status_code, refused.text) == (400, "Failed to parse body into Call protobuf"), path
    other = master.post("/api/v1/scheduler", body, headers={"Content-Type": "text/plain"})
    assert other.text == "Expecting 'Content-Type' of application/json or application/x-protobuf"
    protobuf_only = master.post("/api/v1/scheduler", body, headers={
        "Content-Type": "application/json", "Accept": "application/x-protobuf"})
    assert protobuf_only.status_code == 406 and "only in JSON" in protobuf_only.text
    assert master.get("/api/v1/scheduler").status_code == 405
    bogus = master.post("/api/v1/scheduler", {"type": "BOGUS", "framework_id": {"value": "x"}})
    assert bogus.status_code == 400
    assert "Expecting 'type' to be present" in bogus.text
    # header names are case-insensitive
    ok = master.subscribe({"user": "u", "name": "n"},
                          headers={"content-type": "application/json", "accept": "*/*"})
    assert ok.status == 200
    ok.close()


# --------------------------------------------------------------------------- subscribe
def test_subscribe_edge_cases(master: Master) -> None:
    mismatch = master.post("/api/v1/scheduler", {
        "type": "SUBSCRIBE", "framework_id": {"value": "a"},
        "subscribe": {"framework_info": {"user": "u", "name": "n", "id": {"value": "b"}}}})
    assert mismatch.status_code == 400
    assert "'framework_id' differs from 'subscribe.framework_info.id'" in mismatch.text
    no_user = master.post("/api/v1/scheduler", {
        "type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "n"}}})
    assert no_user.status_code == 400 and "user" in no_user.text

    roles = master.subscribe({"user": "u", "name": "n", "roles": ["a"]})
    assert roles.status == 200
    error = roles.next()
    assert error["type"] == "ERROR" and "MULTI_ROLE" in error["error"]["message"]
    assert roles.ended.wait(5)

    unknown_id = "5a8b0e1c-0000-4000-8000-000000000000-0007"
    adopted = master.subscribe({"user": "u", "name": "n", "id": {"value": unknown_id}},
                               framework_id=unknown_id)
    assert adopted.next()["subscribed"]["framework_id"]["value"] == unknown_id

    second = master.subscribe({"user": "u", "name": "n", "id": {"value": unknown_id},
                               "failover_timeout": 60}, framework_id=unknown_id)
    assert second.next()["type"] == "SUBSCRIBED"
    failed_over = adopted.wait_for("ERROR")
    assert failed_over["error"]["message"] == "Framework failed over"
    assert adopted.ended.wait(5)
    adopted.close()
    second.close()


def test_teardown_closes_stream_and_forgets_framework(master: Master) -> None:
    fw = Framework(master)
    assert fw.call("TEARDOWN").status_code == 202
    assert fw.stream.ended.wait(5)
    again = master.subscribe({**fw.info, "id": {"value": fw.id}}, framework_id=fw.id)
    event = again.next()
    assert event == {"type": "ERROR", "error": {"message": "Framework has been removed"}}
    assert again.ended.wait(5)
    state = master.get("/master/state").json()
    assert fw.id in [f["id"] for f in state["completed_frameworks"]]
    assert fw.id not in [f["id"] for f in state["frameworks"]]


# --------------------------------------------------------------------------- stream ids
def test_stream_id_rules(master: Master) -> None:
    fw = Framework(master, {"user": "u", "name": "n", "failover_timeout": 60})
    decline = {"type": "DECLINE", "framework_id": {"value": fw.id},
               "decline": {"offer_ids": [{"value": "nope"}]}}
    assert master.call(decline).status_code == 400
    assert master.call(decline, stream_id=str(uuidlib.uuid4())).status_code == 400
    assert master.call(decline, stream_id=fw.stream.stream_id).status_code == 202
    sub_with_header = master.post("/api/v1/scheduler", {
        "type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}},
        headers={**JSON_HEADERS, "Mesos-Stream-Id": fw.stream.stream_id})
    assert sub_with_header.status_code == 400
    never_seen = dict(decline, framework_id={"value": "never-seen-0000"})
    response = master.call(never_seen, stream_id=fw.stream.stream_id)
    assert response.status_code == 400 and "Framework cannot be found" in response.text

    old_stream_id = fw.stream.stream_id
    second = master.subscribe({**fw.info, "id": {"value": fw.id}}, framework_id=fw.id)
    assert second.next()["type"] == "SUBSCRIBED"
    assert master.call(decline, stream_id=old_stream_id).status_code == 400
    assert master.call(decline, stream_id=second.stream_id).status_code == 202
    second.close()  # disconnect: inactive, inside failover_timeout
    wait_for(lambda: master.call(decline, stream_id=second.stream_id).status_code == 403,
             what="403 for a disconnected framework")
    fw.close()


# --------------------------------------------------------------------------- offers
def test_offer_shape_and_one_offer_per_agent(master: Master) -> None:
    agent = FakeAgent(master, attributes=[{"name": "rack", "type": "TEXT",
                                           "text": {"value": "r1"}}])
    info = master.get("/version")  # noqa: F841 - warm connection
    fw = Framework(master)
    offers = fw.offers()
    assert len(offers) == 1
    offer = offers[0]
    mid = fw.stream.seen[0]["subscribed"]["master_info"]["id"]
    assert re.fullmatch(rf"{mid}-O\d+", offer["id"]["value"])
    assert offer["agent_id"]["value"] == agent.id and re.fullmatch(rf"{mid}-S\d+", agent.id)
    assert offer["framework_id"]["value"] == fw.id
    assert offer["hostname"] == "agent1"
    assert offer["url"] == {"scheme": "http", "path": "/slave(1)", "address": {
        "hostname": "agent1", "ip": "127.0.0.1", "port": 5051}}
    cpus = next(r for r in offer["resources"] if r["name"] == "cpus")
    assert cpus == {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}, "role": "*"}
    assert "allocation_info" not in offer
    assert offer["attributes"] == [{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}]
    agent.close()
    fw.close()


def test_multi_role_offers_carry_allocation_info(master: Master) -> None:
    FakeAgent(master)
    fw = Framework(master, MULTI_ROLE)
    offer = fw.offers()[0]
    assert offer["allocation_info"] == {"role": "dev"}
    assert all(r["allocation_info"] == {"role": "dev"} for r in offer["resources"])


def test_drf_spreads_agents_between_frameworks(master: Master) -> None:
    first, second = Framework(master), Framework(master)
    FakeAgent(master, hostname="a1", port=5001)
    FakeAgent(master, hostname="a2", port=5002)
    got_first = {o["hostname"] for o in first.offers()}
    got_second = {o["hostname"] for o in second.offers()}
    assert len(got_first) == 1 and len(got_second) == 1 and got_first != got_second


# --------------------------------------------------------------------------- offer filters
def test_decline_filters_and_revive(master: Master) -> None:
    FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    # refuse_seconds 0: back at the next allocation
    fw.call("DECLINE", decline={"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 0}})
    offer = fw.offers(timeout=3)[0]
    # default filter (5 s): withheld; REVIVE clears it at once
    assert fw.call("DECLINE", decline={"offer_ids": [offer["id"]]}).status_code == 202
    assert not [e for e in fw.stream.drain(quiet=1.0) if e["type"] == "OFFERS"]
    assert fw.call("REVIVE", revive={"roles": []}).status_code == 202
    offer = fw.offers(timeout=2)[0]
    # SUPPRESS: no offers even without a filter
    fw.call("SUPPRESS", suppress={})
    fw.call("DECLINE", decline={"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 0}})
    assert not [e for e in fw.stream.drain(quiet=0.8) if e["type"] == "OFFERS"]
    fw.call("REVIVE")
    fw.offers(timeout=2)
    # unknown offer: accepted and ignored
    assert fw.call("DECLINE", decline={"offer_ids": [{"value": "nope"}]}).status_code == 202


# --------------------------------------------------------------------------- invalid offers
def test_accept_invalid_offers(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    pa = Framework(master, PARTITION_AWARE)
    offer = fw.offers()[0]
    # unknown offer
    response = fw.call("ACCEPT", accept={"offer_ids": [{"value": "gone"}],
                                         "operations": [launch([task_info("t1", agent.id)])]})
    assert response.status_code == 202
    status = fw.update("t1")
    assert status["state"] == "TASK_LOST" and status["reason"] == "REASON_INVALID_OFFERS"
    assert status["source"] == "SOURCE_MASTER" and "uuid" not in status
    assert status["message"].startswith(
        "Task launched with invalid offers: Offer gone is no longer valid")
    # partition-aware framework, naming another framework's (valid) offer
    pa.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("t2", agent.id)])]})
    status = pa.update("t2")
    assert status["state"] == "TASK_DROPPED" and status["reason"] == "REASON_INVALID_OFFERS"
    # ...which discarded that offer (no RESCIND): using it now is invalid too
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("t3", agent.id)])]})
    status = fw.update("t3")
    assert status["message"].endswith(f"Offer {offer['id']['value']} is no longer valid")
    assert not [e for e in fw.stream.seen if e["type"] == "RESCIND"]
    # duplicate ids in one ACCEPT (the discarded offer comes back to one of the two)
    used = {"gone", offer["id"]["value"]}
    owner, again = _fresh_offer([fw, pa], used)
    owner.call("ACCEPT", accept={"offer_ids": [again["id"], again["id"]],
                                 "operations": [launch([task_info("t4", agent.id)])]})
    assert "Duplicate offer" in owner.update("t4")["message"]


def _fresh_offer(frameworks: list[Framework], used: set[str]) -> tuple[Framework, dict]:
    def find() -> tuple[Framework, dict] | None:
        for fw in frameworks:
            fw.stream.drain(quiet=0.05)
            for event in fw.stream.seen:
                for offer in (event.get("offers") or {}).get("offers", []):
                    if offer["id"]["value"] not in used:
                        return fw, offer
        return None
    return wait_for(find, timeout=5, what="a new offer")  # type: ignore[return-value]


# --------------------------------------------------------------------------- task validation


def group_executor(framework_id: str | None = None) -> dict:
    """The DEFAULT executor of a LAUNCH_GROUP (without `framework_id` when none is given)."""
    executor = {"type": "DEFAULT", "executor_id": {"value": "gx"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                              {"name": "disk", "type": "SCALAR", "scalar": {"value": 10}}]}
    if framework_id is not None:
        executor["framework_id"] = {"value": framework_id}
    return executor


def test_launch_validation_errors(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    executor = {"executor_id": {"value": "e"}, "command": {"value": "x"}}
    cases = [
        task_info("big", agent.id, cpus=64),
        task_info("wrong-agent", "someone-else"),
        {**task_info("nores", agent.id), "resources": []},
        {**task_info("both", agent.id), "executor": executor},
        {k: v for k, v in task_info("neither", agent.id).items() if k != "command"},
        task_info("grace", agent.id, kill_policy={"grace_period": {"nanoseconds": -1}}),
        task_info("ok", agent.id),
        task_info("ok", agent.id),  # duplicate of the one just launched
    ]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch(cases)],
                              "filters": {"refuse_seconds": 0}})
    messages = {}
    for _ in range(len(cases) - 1):
        status = fw.update()
        assert status["state"] == "TASK_ERROR" and status["reason"] == "REASON_TASK_INVALID"
        assert status["source"] == "SOURCE_MASTER" and "uuid" not in status
        messages[status["task_id"]["value"]] = status["message"]
    assert set(messages) == {"big", "wrong-agent", "nores", "both", "neither", "grace", "ok"}
    assert messages["big"].startswith("Total resources") and "more than available" in \
        messages["big"]
    assert "Task has duplicate ID: ok" == messages["ok"]
    assert "invalid agent" in messages["wrong-agent"]
    assert messages["nores"] == "Task uses no resources"
    assert "not both" in messages["both"] and "not both" in messages["neither"]
    # the valid task went to the agent
    run = agent.stream.wait_for("RUN_TASK")
    assert run["run_task"]["task"]["task_id"]["value"] == "ok"
    assert run["run_task"]["framework_info"]["id"]["value"] == fw.id

    # LAUNCH_GROUP without ExecutorInfo.framework_id: every task REASON_TASK_GROUP_INVALID
    offer = fw.offers(timeout=3)[0]
    group = {"type": "LAUNCH_GROUP", "launch_group": {
        "executor": group_executor(),
        "task_group": {"tasks": [task_info("g1", agent.id), task_info("g2", agent.id)]}}}
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [group]})
    for _ in range(2):
        status = fw.update()
        assert status["state"] == "TASK_ERROR"
        assert status["reason"] == "REASON_TASK_GROUP_INVALID"
        assert status["message"] == "'ExecutorInfo.framework_id' must be set"


def test_launch_group_reaches_agent(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    executor = group_executor(fw.id)
    tasks = [{k: v for k, v in task_info(t, agent.id).items()} for t in ("g1", "g2")]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [{
        "type": "LAUNCH_GROUP", "launch_group": {"executor": executor,
                                                 "task_group": {"tasks": tasks}}}]})
    run = agent.stream.wait_for("RUN_TASK_GROUP")["run_task_group"]
    assert run["executor"]["executor_id"] == {"value": "gx"}
    assert [t["task_id"]["value"] for t in run["task_group"]["tasks"]] == ["g1", "g2"]
    assert all(t["executor"] == executor for t in run["task_group"]["tasks"])


def test_a_group_task_with_part_of_a_gpu_is_refused_as_a_lone_task_is(master: Master) -> None:
    """src/master/validation.cpp checks a task group's resources as a task's: whole GPUs only."""
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    executor = group_executor(fw.id)
    half = task_info("half", agent.id)
    half["resources"].append({"name": "gpus", "type": "SCALAR", "scalar": {"value": 0.5}})
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [{
        "type": "LAUNCH_GROUP", "launch_group": {"executor": executor, "task_group": {"tasks": [half]}}}]})
    status = fw.update()
    assert (status["state"], status["message"]) == (
        "TASK_ERROR", "Task uses invalid resources: Invalid 'gpus' resource: The 'gpus' resource must be an "
                      "unsigned integer")


# --------------------------------------------------------------------------- updates & ACK
def _running_task(master: Master, agent: FakeAgent, fw: Framework, task_id: str = "t1") -> str:
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info(task_id, agent.id)])]})
    agent.stream.wait_for("RUN_TASK")
    response, uuid = agent.update(fw.id, task_id, "TASK_RUNNING",
                                  executor_id={"value": task_id})
    assert response.status_code == 202
    return uuid


def test_status_updates_are_forwarded_retried_and_acknowledged(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    uuid = _running_task(master, agent, fw)
    status = fw.update("t1")
    assert status["uuid"] == uuid and status["state"] == "TASK_RUNNING"
    assert status["agent_id"] == {"value": agent.id}
    assert status["source"] == "SOURCE_EXECUTOR"
    # not acknowledged: sent again (retry base 0.4 s in this master)
    again = fw.update("t1", timeout=3)
    assert again["uuid"] == uuid
    ack = {"agent_id": {"value": agent.id}, "task_id": {"value": "t1"}, "uuid": uuid}
    assert fw.call("ACKNOWLEDGE", acknowledge=ack).status_code == 202
    acked = agent.stream.wait_for("ACKNOWLEDGE")["acknowledge"]
    assert acked["uuid"] == uuid and acked["task_id"] == {"value": "t1"}
    # terminal update frees the resources at once: re-offered without waiting for ACK
    _, done_uuid = agent.update(fw.id, "t1", "TASK_FINISHED")
    assert fw.update("t1")["state"] == "TASK_FINISHED"
    tasks = master.operator("GET_TASKS")["get_tasks"]
    assert [t["state"] for t in tasks["tasks"]] == ["TASK_FINISHED"]
    fw.call("ACKNOWLEDGE", acknowledge={**ack, "uuid": done_uuid})
    wait_for(lambda: master.operator("GET_TASKS")["get_tasks"]["completed_tasks"],
             what="task completed after its terminal ACK")


def test_an_agent_batch_is_applied_in_order_and_refuses_call_by_call(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [
        launch([task_info("b1", agent.id), task_info("b2", agent.id)])]})
    agent.stream.wait_for(lambda e: e.get("type") == "RUN_TASK" and
                          e["run_task"]["task"]["task_id"]["value"] == "b2")

    def update(task_id: str, state: str) -> dict:
        return {"type": "UPDATE", "framework_id": {"value": fw.id}, "latest_state": state,
                "status": {"task_id": {"value": task_id}, "state": state, "uuid": new_uuid(),
                           "source": "SOURCE_EXECUTOR", "executor_id": {"value": task_id}}}

    calls = [update("b1", "TASK_RUNNING"), {"type": "UPDATE", "status": {}}, {"type": "REGISTER"},
             update("b2", "TASK_RUNNING"), update("b1", "TASK_FINISHED")]
    response = agent.post("BATCH", calls=calls)
    assert response.status_code == 202, response.text
    refused = response.json()["refused"]
    assert [(r["index"], r["status"]) for r in refused] == [(1, 400), (2, 400)]
    assert "UPDATE needs status.task_id" in refused[0]["message"]
    # the good calls all landed, in order: b1's FINISHED queues behind its RUNNING
    first = fw.update()
    second = fw.update()
    assert {(s["task_id"]["value"], s["state"]) for s in (first, second)} == {
        ("b1", "TASK_RUNNING"), ("b2", "TASK_RUNNING")}
    b1 = first if first["task_id"]["value"] == "b1" else second
    fw.call("ACKNOWLEDGE", acknowledge={"agent_id": {"value": agent.id}, "task_id": {"value": "b1"},
                                        "uuid": b1["uuid"]})
    fw.stream.wait_for(lambda e: e.get("type") == "UPDATE" and e["update"]["status"]["state"] == "TASK_FINISHED"
                       and e["update"]["status"]["task_id"]["value"] == "b1")
    states = {t["task_id"]["value"]: t["state"] for t in master.operator("GET_TASKS")["get_tasks"]["tasks"]}
    assert states == {"b1": "TASK_FINISHED", "b2": "TASK_RUNNING"}
    # a batch without calls is refused whole; one from an agent the master does not know is 404
    assert agent.post("BATCH").status_code == 400
    stranger = master.post("/internal/agent", {"type": "BATCH", "agent_id": {"value": "nobody"},
                                               "calls": [calls[0]]})
    assert stranger.status_code == 404


def test_freed_resources_are_reoffered_promptly(start_master: StartMaster) -> None:
    master = start_master("--allocation-interval", "30")
    agent = FakeAgent(master, resources=[
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 128}}])
    fw = Framework(master)
    offer = fw.offers()[0]  # prompt on subscribe, not after 30 s
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("t1", agent.id, cpus=1,
                                                               mem=128)])]})
    agent.stream.wait_for("RUN_TASK")
    agent.update(fw.id, "t1", "TASK_FINISHED")
    fw.update("t1")
    offers = fw.offers(timeout=2)
    assert offers[0]["resources"][0]["scalar"]["value"] == 1.0


def test_acknowledge_validation(master: Master) -> None:
    fw = Framework(master)
    bad = fw.call("ACKNOWLEDGE", acknowledge={"agent_id": {"value": "a"},
                                              "task_id": {"value": "t"}, "uuid": "AAAA"})
    assert bad.status_code == 400 and "Not a valid UUID" in bad.text
    before = master.get("/metrics/snapshot").json()[
        "master/invalid_status_update_acknowledgements"]
    ok = fw.call("ACKNOWLEDGE", acknowledge={"agent_id": {"value": "unknown"},
                                             "task_id": {"value": "t"}, "uuid": new_uuid()})
    assert ok.status_code == 202
    after = master.get("/metrics/snapshot").json()["master/invalid_status_update_acknowledgements"]
    assert after == before + 1


# --------------------------------------------------------------------------- kill and reconcile
def test_kill_and_reconcile_unknown_tasks(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    pa = Framework(master, PARTITION_AWARE)
    fw.call("KILL", kill={"task_id": {"value": "ghost"}})
    status = fw.update("ghost")
    assert (status["state"], status["reason"], status["message"]) == (
        "TASK_LOST", "REASON_RECONCILIATION", "Reconciliation: Task is unknown")
    assert "uuid" not in status and status["source"] == "SOURCE_MASTER"
    pa.call("KILL", kill={"task_id": {"value": "ghost"}})
    assert pa.update("ghost")["state"] == "TASK_UNKNOWN"
    pa.call("KILL", kill={"task_id": {"value": "ghost"}, "agent_id": {"value": agent.id}})
    status = pa.update("ghost")
    assert status["state"] == "TASK_GONE"
    assert status["message"] == "Reconciliation: Task is unknown to the agent"
    fw.call("RECONCILE", reconcile={"tasks": [{"task_id": {"value": "other"}}]})
    assert fw.update("other")["state"] == "TASK_LOST"
    pa.call("RECONCILE", reconcile={"tasks": [{"task_id": {"value": "other"}}]})
    assert pa.update("other")["state"] == "TASK_UNKNOWN"


def test_implicit_reconciliation_reports_each_task_once(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    uuid = _running_task(master, agent, fw)
    fw.update("t1")
    fw.call("ACKNOWLEDGE", acknowledge={"agent_id": {"value": agent.id},
                                        "task_id": {"value": "t1"}, "uuid": uuid})
    agent.stream.wait_for("ACKNOWLEDGE")
    fw.stream.drain(quiet=0.2)
    fw.call("RECONCILE", reconcile={"tasks": []})
    updates = [e["update"]["status"] for e in fw.stream.drain(quiet=0.5) if e["type"] == "UPDATE"]
    assert len(updates) == 1
    status = updates[0]
    assert status["state"] == "TASK_RUNNING" and status["reason"] == "REASON_RECONCILIATION"
    assert status["source"] == "SOURCE_MASTER" and "uuid" not in status
    assert status["message"] == "Reconciliation: Latest task state"
    # KILL of a known task goes to its agent
    fw.call("KILL", kill={"task_id": {"value": "t1"}})
    kill = agent.stream.wait_for("KILL_TASK")["kill_task"]
    assert kill == {"framework_id": {"value": fw.id}, "task_id": {"value": "t1"}}


# --------------------------------------------------------------------------- agents
def test_agent_loss_loses_tasks_and_rescinds_offers(start_master: StartMaster) -> None:
    master = start_master("--agent-ping-timeout", "1", "--agent-ping-interval", "0.2")
    busy = FakeAgent(master, hostname="busy", port=5001)
    fw = Framework(master)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("t1", busy.id)])]})
    busy.stream.wait_for("RUN_TASK")
    busy.update(fw.id, "t1", "TASK_RUNNING")
    fw.update("t1")
    # a second, idle agent whose offer will be rescinded
    FakeAgent(master, hostname="idle", port=5002)
    idle_offer = next(o for o in fw.offers(timeout=3) if o["hostname"] == "idle")
    # neither agent pings: both are removed after ~1 s
    lost = fw.update("t1", timeout=5)
    assert lost["state"] == "TASK_LOST" and lost["reason"] == "REASON_AGENT_REMOVED"
    assert lost["source"] == "SOURCE_MASTER" and "uuid" not in lost
    fw.stream.wait_for(lambda e: e["type"] == "FAILURE" and
                       e["failure"] == {"agent_id": {"value": busy.id}})
    fw.stream.wait_for(lambda e: e["type"] == "RESCIND" and
                       e["rescind"]["offer_id"] == idle_offer["id"], timeout=5)
    assert busy.post("PING").status_code == 404
    assert master.get("/metrics/snapshot").json()["master/slaves_unreachable"] == 2


def test_partition_aware_tasks_become_unreachable(start_master: StartMaster) -> None:
    master = start_master("--agent-ping-timeout", "1", "--agent-ping-interval", "0.2")
    agent = FakeAgent(master)
    fw = Framework(master, PARTITION_AWARE)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info("t1", agent.id)])]})
    agent.stream.wait_for("RUN_TASK")
    agent.update(fw.id, "t1", "TASK_RUNNING")
    fw.update("t1")
    lost = fw.update("t1", timeout=5)
    assert lost["state"] == "TASK_UNREACHABLE" and "unreachable_time" in lost
    fw.call("RECONCILE", reconcile={"tasks": [{"task_id": {"value": "t1"}}]})
    assert fw.update("t1")["state"] == "TASK_UNREACHABLE"


def test_unreachable_tasks_a_returning_agent_does_not_report_are_dropped(start_master: StartMaster) -> None:
    """Issue 6: a task launched as the agent's link broke never reached it. When the agent comes
    back without it, the framework hears TASK_DROPPED instead of TASK_UNREACHABLE for ever."""
    master = start_master("--agent-ping-timeout", "1", "--agent-ping-interval", "0.2")
    agent = FakeAgent(master)
    fw = Framework(master, PARTITION_AWARE)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch([
        task_info("kept", agent.id), task_info("never-arrived", agent.id)])]})
    agent.stream.wait_for("RUN_TASK")
    agent.update(fw.id, "kept", "TASK_RUNNING")
    fw.update("kept")
    assert fw.update("kept", timeout=5)["state"] == "TASK_UNREACHABLE"  # the agent stopped answering
    agent.stream.close()
    back = FakeAgent(master, agent_id=agent.id, reregister={
        "frameworks": [{**fw.info, "id": {"value": fw.id}}],
        "tasks": [{"task_id": {"value": "kept"}, "framework_id": {"value": fw.id},
                   "name": "kept", "state": "TASK_RUNNING",
                   "resources": task_info("kept", agent.id)["resources"]}]})
    dropped = fw.update("never-arrived", timeout=10)
    while dropped["state"] == "TASK_UNREACHABLE":
        dropped = fw.update("never-arrived", timeout=10)
    assert (dropped["state"], dropped["reason"]) == ("TASK_DROPPED", "REASON_RECONCILIATION")
    kept = fw.update("kept", timeout=10)
    assert (kept["state"], kept["reason"]) == ("TASK_RUNNING", "REASON_AGENT_REREGISTERED")
    fw.call("RECONCILE", reconcile={"tasks": [{"task_id": {"value": "never-arrived"}}]})
    assert fw.update("never-arrived")["state"] != "TASK_UNREACHABLE"
    tasks = master.operator("GET_TASKS")["get_tasks"]["tasks"]
    assert [(t["task_id"]["value"], t["state"]) for t in tasks] == [("kept", "TASK_RUNNING")]
    back.close()


def test_agent_reregistration_is_adopted_by_a_fresh_master(master: Master) -> None:
    fid = "0a0b0c0d-0000-4000-8000-000000000000-0000"
    framework_info = master.framework_info({"user": "tester", "name": "old", "id": {"value": fid}})
    agent = FakeAgent(master, agent_id="old-master-S3", reregister={
        "frameworks": [framework_info],
        "tasks": [{"task_id": {"value": "t9"}, "framework_id": {"value": fid},
                   "name": "t9", "state": "TASK_RUNNING",
                   "resources": task_info("t9", "x", cpus=1)["resources"]}]})
    assert agent.id == "old-master-S3"
    tasks = master.operator("GET_TASKS")["get_tasks"]["tasks"]
    assert [(t["task_id"]["value"], t["state"]) for t in tasks] == [("t9", "TASK_RUNNING")]
    fw = Framework(master, framework_info, framework_id=fid)
    assert fw.id == fid
    offer = fw.offers()[0]
    cpus = next(r for r in offer["resources"] if r["name"] == "cpus")
    assert cpus["scalar"]["value"] == 3.0  # the running task keeps its cpu
    fw.call("RECONCILE", reconcile={"tasks": [{"task_id": {"value": "t9"}}]})
    assert fw.update("t9")["state"] == "TASK_RUNNING"


def test_executor_exit_is_a_failure_event(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    executor = {"executor_id": {"value": "ex"}, "command": {"value": "run-executor"},
                "resources": task_info("x", "x")["resources"]}
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch([
        task_info("t1", agent.id, executor=executor)])]})
    run = agent.stream.wait_for("RUN_TASK")["run_task"]
    assert run["task"]["executor"]["framework_id"] == {"value": fw.id}  # filled by the master
    assert agent.post("EXECUTOR_EXITED", framework_id={"value": fw.id},
                      executor_id={"value": "ex"}, status=256).status_code == 202
    failure = fw.stream.wait_for("FAILURE")["failure"]
    assert failure == {"agent_id": {"value": agent.id}, "executor_id": {"value": "ex"},
                       "status": 256}


def test_framework_message_both_ways(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    fw.call("MESSAGE", message={"agent_id": {"value": agent.id}, "executor_id": {"value": "e"},
                                "data": "aGk="})
    message = agent.stream.wait_for("MESSAGE")["message"]
    assert message["data"] == "aGk=" and message["executor_id"] == {"value": "e"}
    agent.post("MESSAGE", framework_id={"value": fw.id}, executor_id={"value": "e"}, data="eW8=")
    event = fw.stream.wait_for("MESSAGE")["message"]
    assert event == {"agent_id": {"value": agent.id}, "executor_id": {"value": "e"},
                     "data": "eW8="}


def test_teardown_shuts_the_framework_down_on_agents(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    _running_task(master, agent, fw)
    fw.call("TEARDOWN")
    shutdown = agent.stream.wait_for("SHUTDOWN_FRAMEWORK")["shutdown_framework"]
    assert shutdown == {"framework_id": {"value": fw.id}}


def test_disconnect_without_failover_timeout_removes_framework(master: Master) -> None:
    fw = Framework(master)
    fw.stream.close()  # no TEARDOWN: just drop the connection
    wait_for(lambda: fw.id in [f["id"] for f in master.get("/state").json()[
        "completed_frameworks"]], what="framework removed on disconnect (failover_timeout 0)")


# --------------------------------------------------------------------------- operator views
def test_operator_api_and_legacy_state(start_master: StartMaster) -> None:
    master = start_master()
    empty = master.operator("GET_STATE")["get_state"]
    assert empty["get_tasks"]["tasks"] == [] and empty["get_tasks"]["completed_tasks"] == []
    assert empty["get_tasks"]["unreachable_tasks"] == []
    assert empty["get_frameworks"]["frameworks"] == []
    assert empty["get_frameworks"]["completed_frameworks"] == []
    assert empty["get_agents"]["agents"] == [] and empty["get_agents"]["recovered_agents"] == []
    assert master.operator("GET_HEALTH") == {"type": "GET_HEALTH",
                                             "get_health": {"healthy": True}}
    assert master.operator("GET_VERSION")["get_version"]["version_info"]["version"] == "1.11.0"
    assert master.operator("GET_MASTER")["get_master"]["master_info"]["port"]
    assert master.post("/api/v1", {"type": "GET_STATE"}, headers={
        "Content-Type": "application/json", "Accept": "text/html"}).status_code == 406

    agent = FakeAgent(master)
    fw = Framework(master)
    _running_task(master, agent, fw)
    fw.update("t1")
    agents = master.operator("GET_AGENTS")["get_agents"]["agents"]
    assert agents[0]["agent_info"]["id"] == {"value": agent.id} and agents[0]["active"]
    frameworks = master.operator("GET_FRAMEWORKS")["get_frameworks"]["frameworks"]
    assert frameworks[0]["framework_info"]["id"] == {"value": fw.id}

    state = master.get("/master/state").json()
    assert state["version"] == "1.11.0" and state["activated_slaves"] == 1
    assert state["leader_info"]["id"] == state["id"]
    slave = state["slaves"][0]
    assert slave["resources"] == {"cpus": 4.0, "mem": 4096.0, "disk": 1000.0, "gpus": 0.0,
                                  "ports": "[31000-32000]"}
    assert slave["used_resources"]["cpus"] == 0.1
    task = state["frameworks"][0]["tasks"][0]
    assert task["id"] == "t1" and task["slave_id"] == agent.id
    assert task["framework_id"] == fw.id and task["state"] == "TASK_RUNNING"
    assert master.get("/state").json()["id"] == state["id"]


def test_metrics(master: Master) -> None:
    FakeAgent(master)
    fw = Framework(master)
    fw.offers()
    text = master.get("/metrics").text
    assert "dockyard_master_agents 1.0" in text
    assert "dockyard_master_frameworks 1.0" in text
    assert re.search(r'dockyard_master_scheduler_calls_total\{type="SUBSCRIBE"\} [1-9]', text)
    assert 'dockyard_master_cpus{kind="total"} 4.0' in text
    snap = master.get("/metrics/snapshot").json()
    assert snap["master/slaves_active"] == 1 and snap["master/cpus_total"] == 4.0
    assert snap["master/outstanding_offers"] == 1
    assert snap[f"master/frameworks/test-framework/{fw.id}/offers/sent"] == 1


# --------------------------------------------------------------------------- ZooKeeper
def test_zookeeper_registration_and_redirects(start_master: StartMaster, zk) -> None:
    from kazoo.client import KazooClient
    import json

    path = f"/mesos-{uuidlib.uuid4().hex[:8]}"
    url = zk.url(path)
    first_port, second_port = free_port(), free_port()
    first = start_master("--zk", url, port=first_port)
    wait_for(lambda: first.get("/metrics/snapshot").json()["master/elected"] == 1.0,
             what="first master elected")
    second = start_master("--zk", url, port=second_port)
    client = KazooClient(hosts=zk.hosts)
    client.start(timeout=15)
    try:
        children = wait_for(lambda: sorted(client.get_children(path))
                            if len(client.get_children(path)) == 2 else None,
                            what="two json.info_ nodes")
        assert all(re.fullmatch(r"json\.info_\d{10}", c) for c in children)
        leader = json.loads(client.get(f"{path}/{children[0]}")[0])
        assert leader["address"] == {"hostname": "127.0.0.1", "ip": "127.0.0.1",
                                     "port": first_port}
        assert leader["version"] == "1.11.0" and leader["pid"].startswith("master@")
        assert client.exists(f"{path}/{children[0]}").ephemeralOwner != 0

        body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}
        wait_for(lambda: second.post("/api/v1/scheduler", body).status_code == 307,
                 what="non-leader redirect")
        response = second.post("/api/v1/scheduler", body)
        assert response.headers["location"] == f"//127.0.0.1:{first_port}/api/v1/scheduler"
        leader_ok = first.subscribe({"user": "u", "name": "n"})
        assert leader_ok.status == 200
        leader_ok.close()
        assert second.get("/master/state").status_code == 307

        # the leader stops: its node goes, the other master leads and serves
        next(proc for proc, client in _procs_of(start_master) if client is first).stop()
        wait_for(lambda: len(client.get_children(path)) == 1, what="leader node removed")
        wait_for(lambda: second.get("/metrics/snapshot").json()["master/elected"] == 1.0,
                 what="second master elected")
        assert second.subscribe({"user": "u", "name": "n"}).status == 200
    finally:
        client.stop()
        client.close()


def test_no_leader_answers_503(start_master: StartMaster, tmp_path: Path) -> None:
    masters: Masters = start_master.__self__  # type: ignore[attr-defined]
    port = free_port()
    # a ZooKeeper that is not there: the master starts, never leads, answers 503
    proc = Process(masters.argv(port, "--zk", f"zk://127.0.0.1:{free_port()}/mesos", work_dir=tmp_path / "nz"),
                   tmp_path / "nz.log")
    try:
        api = masters.api(port)
        wait_for(api.ok, timeout=20, what="master without ZooKeeper")
        assert api.call("POST", "/api/v1/scheduler", b"{}", headers=JSON_HEADERS)[0] == 503
    finally:
        proc.stop()


def test_restarted_master_waits_for_registered_agents(tmp_path: Path) -> None:
    """A task on an agent that has not re-registered yet gets no reconciliation answer."""
    port = free_port()
    masters = Masters(tmp_path)
    argv = masters.argv(port, work_dir=tmp_path / "m")
    proc = Process(argv, tmp_path / "m1.log")
    master = Master(masters.api(port))
    try:
        wait_for(master.api.ok, what="master")
        agent_id = FakeAgent(master).id
        wait_for(lambda: agent_id in (tmp_path / "m" / "registry.json").read_text(),
                 what="registry written")
        proc.kill9()
        proc.stop()
        proc = Process(argv, tmp_path / "m2.log")
        wait_for(master.api.ok, what="restarted master")
        fw = Framework(master, PARTITION_AWARE)
        fw.call("RECONCILE", reconcile={"tasks": [
            {"task_id": {"value": "waiting"}, "agent_id": {"value": agent_id}},
            {"task_id": {"value": "elsewhere"}, "agent_id": {"value": "no-such-agent"}}]})
        assert fw.update()["task_id"] == {"value": "elsewhere"}
        assert not [e for e in fw.stream.drain(quiet=0.5) if e["type"] == "UPDATE"]
        FakeAgent(master, agent_id=agent_id)  # the agent comes back with no such task
        fw.call("RECONCILE", reconcile={"tasks": [
            {"task_id": {"value": "waiting"}, "agent_id": {"value": agent_id}}]})
        assert fw.update("waiting")["state"] == "TASK_GONE"
    finally:
        master.close()
        proc.stop()


def test_failover_timeout_then_removal(master: Master) -> None:
    fw = Framework(master, {"user": "u", "name": "slow", "failover_timeout": 0.5})
    fw.stream.close()
    state = wait_for(lambda: (s := master.get("/state").json()) and any(
        f["id"] == fw.id and not f["connected"] for f in s["frameworks"]) and s,
        what="framework disconnected, still known")
    assert fw.id not in [f["id"] for f in state["completed_frameworks"]]
    wait_for(lambda: fw.id in [f["id"] for f in master.get("/state").json()[
        "completed_frameworks"]], timeout=5, what="framework removed after failover_timeout")


def test_master_prefixed_paths(master: Master) -> None:
    stream = master.subscribe({"user": "u", "name": "n"})
    stream.close()
    body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}
    prefixed = master.post("/master/api/v1/scheduler", body,
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert prefixed.status_code == 415  # same handler, same checks
    assert master.post("/master/api/v1", {"type": "GET_HEALTH"}).json()["get_health"] == {
        "healthy": True}
    assert master.get("/master/state").json()["id"] == master.get("/state").json()["id"]


def test_agent_reconnect_reconciles_its_tasks(master: Master) -> None:
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch([
        task_info("kept", agent.id), task_info("lost", agent.id)])]})
    agent.stream.wait_for("RUN_TASK")
    agent.update(fw.id, "kept", "TASK_RUNNING")
    fw.update("kept")
    agent.stream.close()  # connection drops; the agent comes back without "lost"
    wait_for(lambda: not master.operator("GET_AGENTS")["get_agents"]["agents"][0]["active"],
             what="agent marked disconnected")
    back = FakeAgent(master, agent_id=agent.id, reregister={
        "frameworks": [{**fw.info, "id": {"value": fw.id}}],
        "tasks": [{"task_id": {"value": "kept"}, "framework_id": {"value": fw.id},
                   "name": "kept", "state": "TASK_RUNNING",
                   "resources": task_info("kept", agent.id)["resources"]}]})
    status = fw.update("lost")
    assert status["state"] == "TASK_LOST" and status["reason"] == "REASON_RECONCILIATION"
    tasks = master.operator("GET_TASKS")["get_tasks"]["tasks"]
    assert [(t["task_id"]["value"], t["state"]) for t in tasks] == [("kept", "TASK_RUNNING")]
    assert master.operator("GET_AGENTS")["get_agents"]["agents"][0]["active"]
    back.close()


def test_a_task_that_ended_while_its_agent_was_away_is_not_dropped(master: Master) -> None:
    """The agent re-sends the task's unacknowledged TASK_FINISHED with its re-registration
    instead of listing it among its tasks: the framework hears FINISHED, never DROPPED/LOST."""
    import base64

    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch([task_info("done", agent.id)])]})
    agent.stream.wait_for("RUN_TASK")
    agent.update(fw.id, "done", "TASK_RUNNING")
    running = fw.update("done")
    fw.call("ACKNOWLEDGE", acknowledge={"agent_id": {"value": agent.id}, "task_id": {"value": "done"},
                                        "uuid": running["uuid"]})
    agent.stream.close()
    wait_for(lambda: not master.operator("GET_AGENTS")["get_agents"]["agents"][0]["active"],
             what="agent marked disconnected")
    finished = {"task_id": {"value": "done"}, "state": "TASK_FINISHED", "source": "SOURCE_EXECUTOR",
                "agent_id": {"value": agent.id}, "uuid": base64.b64encode(b"0123456789abcdef").decode()}
    back = FakeAgent(master, agent_id=agent.id, reregister={
        "frameworks": [{**fw.info, "id": {"value": fw.id}}], "tasks": [],
        "updates": [{"type": "UPDATE", "framework_id": {"value": fw.id}, "status": finished,
                     "latest_state": "TASK_FINISHED"}]})
    ended = fw.stream.wait_for(lambda e: e.get("type") == "UPDATE"
                               and e["update"]["status"]["task_id"]["value"] == "done"
                               and e["update"]["status"]["state"] != "TASK_RUNNING", 10.0)
    assert ended["update"]["status"]["state"] == "TASK_FINISHED", ended
    back.close()


def test_update_framework(master: Master) -> None:
    fw = Framework(master, {"user": "u", "name": "before"})
    info = {**fw.info, "name": "after", "id": {"value": fw.id}}
    response = fw.call("UPDATE_FRAMEWORK", update_framework={"framework_info": info})
    assert response.status_code == 200
    names = [f["name"] for f in master.get("/state").json()["frameworks"] if f["id"] == fw.id]
    assert names == ["after"]
    changed_user = fw.call("UPDATE_FRAMEWORK", update_framework={
        "framework_info": {**info, "user": "root"}})
    assert changed_user.status_code == 400
    mismatch = fw.call("UPDATE_FRAMEWORK", update_framework={
        "framework_info": {**info, "id": {"value": "other"}}})
    assert mismatch.status_code == 400
    assert fw.call("UNKNOWN").status_code == 501
