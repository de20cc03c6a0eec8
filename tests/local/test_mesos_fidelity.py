"""The embedded master answers as a Mesos 1.11 master does, where clients look: real `dockyard master`
processes, agents speaking the internal protocol (FakeAgent), raw v1 HTTP.

Each expectation is Mesos's (the source named beside it); docs/mesos-compatibility.md lists them.
"""
from __future__ import annotations

from typing import Any

import httpx

from framework.mesos.resources import Resources
from tests.support.mesos_http import FakeAgent, Framework, Master, launch, task_info
from tests.support.procs import wait_for

from .test_master import StartMaster, start_master  # noqa: F401

RR = [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}]


def _post(master: Master, body: Any, **headers: str) -> httpx.Response:
    return master.post("/api/v1", body, headers={"Content-Type": "application/json",
                                                 "Accept": "application/json", **headers})


def _error_of(master: Master, info: dict[str, Any], **subscribe: Any) -> str:
    """The ERROR a refused SUBSCRIBE streams before the master closes it."""
    stream = master.subscribe(master.framework_info(info), **subscribe)
    assert stream.status == 200
    event = stream.next()
    assert event["type"] == "ERROR", event
    assert stream.ended.wait(5)
    return event["error"]["message"]


# -------------------------------------------------------------------- /tasks and completed frameworks
def test_torn_down_frameworks_keep_their_tasks_in_every_view(start_master: StartMaster) -> None:
    master = start_master()
    agent = FakeAgent(master)
    fw = Framework(master)
    stamps = {"old": 1000.0, "new": 3000.0, "middle": 2000.0}
    offer = fw.offers()[0]
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]],
                              "operations": [launch([task_info(t, agent.id) for t in stamps])]})
    for task_id, stamp in stamps.items():
        agent.stream.wait_for(lambda e: e.get("type") == "RUN_TASK"
                              and e["run_task"]["task"]["task_id"]["value"] == task_id)
        agent.update(fw.id, task_id, "TASK_RUNNING", timestamp=stamp)
        fw.update(task_id)
    assert fw.call("TEARDOWN").status_code == 202
    wait_for(lambda: fw.id in {f["id"] for f in master.get("/state").json()["completed_frameworks"]},
             what="the framework completed")

    # master/readonly_handler.cpp `tasks`: completed frameworks too, newest first status first
    listed = master.get("/tasks").json()["tasks"]
    assert [t["id"] for t in listed] == ["new", "middle", "old"]
    assert {t["state"] for t in listed} == {"TASK_KILLED"} and {t["framework_id"] for t in listed} == {fw.id}
    ascending = master.get("/tasks", params={"order": "asc"}).json()["tasks"]
    assert [t["id"] for t in ascending] == ["old", "middle", "new"]
    page = master.get("/master/tasks", params={"limit": "1", "offset": "1"}).json()["tasks"]
    assert [t["id"] for t in page] == ["middle"]
    assert master.get("/tasks", params={"offset": "3"}).json()["tasks"] == []
    assert [t["id"] for t in master.get("/tasks", params={"limit": "x"}).json()["tasks"]] == \
        ["new", "middle", "old"]  # not a number: the default limit, as numify fails
    only = master.get("/tasks", params={"framework_id": fw.id, "task_id": "old"}).json()["tasks"]
    assert [t["id"] for t in only] == ["old"]
    assert master.get("/tasks", params={"framework_id": "other"}).json()["tasks"] == []

    state = master.get("/state").json()
    completed = [f for f in state["completed_frameworks"] if f["id"] == fw.id][0]
    assert sorted(t["id"] for t in completed["completed_tasks"]) == ["middle", "new", "old"]
    tasks = master.operator("GET_TASKS")["get_tasks"]
    assert sorted(t["task_id"]["value"] for t in tasks["completed_tasks"]) == ["middle", "new", "old"]
    got = master.operator("GET_STATE")["get_state"]["get_tasks"]["completed_tasks"]
    assert sorted(t["task_id"]["value"] for t in got) == ["middle", "new", "old"]


# -------------------------------------------------------------------- SUBSCRIBE
def test_subscribe_refuses_invalid_roles_in_mesos_order_and_words(start_master: StartMaster) -> None:
    master = start_master()
    multi = [{"type": "MULTI_ROLE"}]
    # src/master/validation.cpp `framework::internal::validateRoles`, src/common/roles.cpp `validate`
    assert _error_of(master, {"user": "u", "name": "n", "roles": ["a"]}) == \
        "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"
    assert _error_of(master, {"user": "u", "name": "n", "role": "a", "roles": ["a"], "capabilities": multi}) == \
        "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
    assert _error_of(master, {"user": "u", "name": "n", "roles": ["a", "b", "a"], "capabilities": multi}) == \
        "'FrameworkInfo.roles' contains duplicate items: { a }"
    assert _error_of(master, {"user": "u", "name": "n", "roles": ["ok", "a/"], "capabilities": multi}) == \
        "'FrameworkInfo.roles' contains invalid role: Role 'a/' cannot end with a slash"
    assert _error_of(master, {"user": "u", "name": "n", "role": "-x"}) == \
        "'FrameworkInfo.role' is not a valid role: Role component '-x' is invalid because it starts with a dash"
    assert _error_of(master, {"user": "u", "name": "n", "role": "a/../b"}) == \
        "'FrameworkInfo.role' is not a valid role: Role 'a/../b' cannot include '..' as a component"
    assert _error_of(master, {"user": "u", "name": "n", "role": "a b"}) == \
        "'FrameworkInfo.role' is not a valid role: Role component 'a b' is invalid because it contains " \
        "backspace or whitespace"
    assert _error_of(master, {"user": "u", "name": "n", "role": ""}) == \
        "'FrameworkInfo.role' is not a valid role: Role names cannot be the empty string"
    # the roles come before the suppressed roles, which come after the master's own checks
    assert _error_of(master, {"user": "u", "name": "n", "role": "-x"}, suppressed_roles=["y"]).startswith(
        "'FrameworkInfo.role' is not a valid role")
    assert _error_of(master, {"user": "u", "name": "n", "roles": ["a"], "capabilities": multi},
                     suppressed_roles=["b"]) == "Suppressed roles { b } are not contained in the set of roles"
    assert _error_of(master, {"user": "u", "name": "n", "id": {"value": "a/b"}}, framework_id="a/b") == \
        "'a/b' contains invalid characters"
    nested = Framework(master, {"user": "u", "name": "n", "role": "eng/web"})  # hierarchical roles are valid
    nested.close()


# -------------------------------------------------------------------- task ids
def test_task_ids_are_refused_in_mesos_words(start_master: StartMaster) -> None:
    master = start_master()
    agent = FakeAgent(master)
    fw = Framework(master)
    cases = {"a/b": "'a/b' contains invalid characters", ".": "'.' is disallowed",
             "x" * 256: "ID must not be greater than 255 characters", "": "ID must not be empty"}
    half_gpu = task_info("half-gpu", agent.id)
    half_gpu["resources"].append({"name": "gpus", "type": "SCALAR", "scalar": {"value": 0.5}})
    for task, message in [*((task_info(t, agent.id), m) for t, m in cases.items()),
                          (half_gpu, "Task uses invalid resources: Invalid 'gpus' resource: The 'gpus' resource "
                                     "must be an unsigned integer")]:
        offer = fw.offers()[0]
        fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch([task])],
                                  "filters": {"refuse_seconds": 0}})
        update = fw.update(task["task_id"]["value"])
        assert (update["state"], update["reason"], update["message"]) == ("TASK_ERROR", "REASON_TASK_INVALID",
                                                                          message)


# -------------------------------------------------------------------- operator API
def test_operator_api_checks_calls_in_mesos_order(start_master: StartMaster) -> None:
    master = start_master()
    # src/master/http.cpp `Master::Http::api`: an unknown type is dropped by the conversion
    unknown = _post(master, {"type": "NO_SUCH_CALL"})
    assert (unknown.status_code, unknown.text) == (400, "Failed to validate master::Call: Expecting 'type' "
                                                        "to be present")
    not_implemented = _post(master, {"type": "UNKNOWN"})
    assert (not_implemented.status_code, not_implemented.text) == (501, "501 Not Implemented.")
    no_payload = _post(master, {"type": "DRAIN_AGENT"})
    assert (no_payload.status_code, no_payload.text) == (400, "Failed to validate master::Call: Expecting "
                                                              "'drain_agent' to be present")
    required = _post(master, {"type": "DRAIN_AGENT", "drain_agent": {}})
    assert (required.status_code, required.text) == (400, "Failed to convert JSON into Call protobuf: Missing "
                                                           "required fields: drain_agent.agent_id")
    # validation comes before `Accept`
    assert _post(master, {"type": "NO_SUCH_CALL"}, Accept="text/plain").status_code == 400
    assert _post(master, {"type": "GET_HEALTH"}, Accept="text/plain").status_code == 406
    wrong_method = master.get("/api/v1")
    assert (wrong_method.status_code, wrong_method.text, wrong_method.headers["allow"]) == (
        405, "405 Method Not Allowed. Expecting one of { 'POST' }, but received 'GET'.", "POST")
    media = master.post("/api/v1", None, raw=b"{}", headers={"Content-Type": "text/plain"})
    assert (media.status_code, media.text) == (415, "Expecting 'Content-Type' of application/json or "
                                                    "application/x-protobuf")
    # no Mesos .proto here: a protobuf body is answered as one Mesos cannot parse, an empty one is an empty Call
    proto = master.post("/api/v1", None, raw=b"\x08\x01", headers={"Content-Type": "application/x-protobuf"})
    assert (proto.status_code, proto.text) == (400, "Failed to parse body into Call protobuf")
    empty = master.post("/api/v1", None, raw=b"", headers={"Content-Type": "application/x-protobuf"})
    assert (empty.status_code, empty.text) == (400, "Failed to validate master::Call: Expecting 'type' to be "
                                                    "present")


# -------------------------------------------------------------------- RESERVATION_REFINEMENT
def test_offers_use_the_reservation_format_the_framework_declared(start_master: StartMaster) -> None:
    master = start_master()
    FakeAgent(master, resources=Resources.parse("cpus(dev):1;cpus:3;mem:1024").to_json())
    refined = Framework(master, {"user": "u", "name": "refined", "roles": ["dev"], "capabilities": RR})
    resources = refined.offers()[0]["resources"]
    # src/common/resources_utils.cpp `upgradeResource`: no `role`, a `reservations` stack when reserved
    assert {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}, "allocation_info": {"role": "dev"},
            "reservations": [{"type": "STATIC", "role": "dev"}]} in resources
    assert {"name": "cpus", "type": "SCALAR", "scalar": {"value": 3.0},
            "allocation_info": {"role": "dev"}} in resources
    assert not any("role" in r for r in resources)
    refined.close()
    legacy = Framework(master, {"user": "u", "name": "legacy", "role": "dev"})
    resources = legacy.offers()[0]["resources"]
    # `downgradeResource`: `role`, and `reservation` only for a dynamic reservation
    assert {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}, "role": "dev"} in resources
    assert {"name": "cpus", "type": "SCALAR", "scalar": {"value": 3.0}, "role": "*"} in resources
    assert not any("reservations" in r or "reservation" in r for r in resources)


# -------------------------------------------------------------------- GPU_RESOURCES
def _offered_hosts(fw: Framework, quiet: float) -> set[str]:
    """The agents `fw` has been offered, once no event came for `quiet` seconds."""
    events = [*fw.stream.seen, *fw.stream.drain(quiet)]
    return {o["hostname"] for e in events if e["type"] == "OFFERS" for o in e["offers"]["offers"]}


def test_gpu_agents_are_offered_only_to_gpu_aware_frameworks(start_master: StartMaster) -> None:
    master = start_master()
    FakeAgent(master, hostname="gpu-agent", port=5061, resources=Resources.parse("cpus:4;mem:1024;gpus:2").to_json())
    FakeAgent(master, hostname="cpu-agent", port=5062, resources=Resources.parse("cpus:4;mem:1024").to_json())
    plain = Framework(master, {"user": "u", "name": "plain"})
    plain.offers()
    # several allocation cycles (0.2 s each) with the GPU agent free: src/master/allocator/mesos/hierarchical.cpp
    # offers an agent with gpus only to a framework with GPU_RESOURCES (`filterGpuResources`)
    assert _offered_hosts(plain, quiet=1.0) == {"cpu-agent"}
    aware = Framework(master, {"user": "u", "name": "aware", "capabilities": [{"type": "GPU_RESOURCES"}]})
    assert aware.offers()[0]["hostname"] == "gpu-agent"


# -------------------------------------------------------------------- quota
def _update_quota(master: Master, *configs: dict[str, Any], force: bool = False) -> httpx.Response:
    return _post(master, {"type": "UPDATE_QUOTA", "update_quota": {"force": force, "quota_configs": list(configs)}})


def _scalars(**amounts: float) -> dict[str, dict[str, float]]:
    return {name: {"value": amount} for name, amount in amounts.items()}


def test_update_quota_is_validated_authorized_and_enforced(start_master: StartMaster) -> None:
    master = start_master()
    viewer = master.as_(start_master.__self__.bundle.viewer)  # type: ignore[attr-defined]
    FakeAgent(master, resources=Resources.parse("cpus:4;mem:4096;disk:100").to_json())
    # src/master/quota_handler.cpp `QuotaHandler::update`, src/master/quota.cpp `quota::validate`
    refusals = {
        "Invalid QuotaConfig: Invalid 'QuotaConfig.role': setting quota for the default '*' role is not supported":
            {"role": "*", "limits": _scalars(cpus=1)},
        "Invalid QuotaConfig: 'QuotaConfig.guarantees' {cpus:2} is not contained within the "
        "'QuotaConfig.limits' {cpus:1}": {"role": "dev", "guarantees": _scalars(cpus=2), "limits": _scalars(cpus=1)},
        "Updating quota on nested role 'dev/web' is not supported yet": {"role": "dev/web"},
        "Invalid QuotaConfig: total quota guarantees 'cpus:10' exceed cluster capacity 'cpus:4; disk:100; "
        "mem:4096' (use 'force' flag to bypass this check)": {"role": "dev", "guarantees": _scalars(cpus=10)},
    }
    for message, config in refusals.items():
        answer = _update_quota(master, config)
        assert (answer.status_code, answer.text) == (400, message)
    assert _update_quota(master, {"role": "dev", "guarantees": _scalars(cpus=10)}, force=True).status_code == 200
    assert _update_quota(master, {"role": "dev"}).status_code == 200  # back to the default quota
    assert _post(viewer, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "dev", "limits": _scalars(cpus=1)}]}}).status_code == 403  # `update_quotas`: operator only
    assert master.operator("GET_QUOTA") == {"type": "GET_QUOTA", "get_quota": {"status": {"infos": [],
                                                                                          "configs": []}}}

    guarantees, limits = _scalars(cpus=3, mem=512), _scalars(cpus=3)
    assert _update_quota(master, {"role": "dev", "guarantees": guarantees, "limits": limits}).status_code == 200
    status = viewer.operator("GET_QUOTA")["get_quota"]["status"]
    assert status["configs"] == [{"role": "dev", "guarantees": guarantees, "limits": limits}]
    assert status["infos"] == [{"role": "dev", "guarantee": [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 3.0}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 512.0}}]}]

    # the allocator keeps dev's unmet guarantee from other roles, and dev within its limit
    ops = Framework(master, {"user": "u", "name": "ops", "role": "ops"})
    assert Resources(ops.offers()[0]["resources"]).scalar("cpus") == 1.0
    dev = Framework(master, {"user": "u", "name": "dev", "role": "dev"})
    assert Resources(dev.offers()[0]["resources"]).scalar("cpus") == 3.0
    assert master.get("/state").json()["capabilities"] == ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"]


# -------------------------------------------------------------------- draining
def _agent_view(master: Master, agent_id: str) -> dict[str, Any]:
    agents = master.operator("GET_AGENTS")["get_agents"]["agents"]
    return next(a for a in agents if a["agent_info"]["id"]["value"] == agent_id)


def _maintenance(master: Master, kind: str, agent_id: str, **extra: Any) -> httpx.Response:
    return _post(master, {"type": kind, kind.lower(): {"agent_id": {"value": agent_id}, **extra}})


def _acknowledged(fw: Framework, agent_id: str, task_id: str, state: str) -> dict[str, Any]:
    """The framework's update of `task_id` to `state` (seen already or still to come), acknowledged:
    the master sends a task's next update only once the one before is."""
    def wanted(event: dict[str, Any]) -> bool:
        status = event.get("update", {}).get("status", {})
        return event.get("type") == "UPDATE" and status["task_id"]["value"] == task_id and status["state"] == state

    event = next((e for e in fw.stream.seen if wanted(e)), None) or fw.stream.wait_for(wanted)
    status = event["update"]["status"]
    fw.call("ACKNOWLEDGE", acknowledge={"agent_id": {"value": agent_id}, "task_id": {"value": task_id},
                                        "uuid": status["uuid"]})
    return status


def test_drain_kills_with_bounded_grace_withholds_offers_and_ends_drained(start_master: StartMaster) -> None:
    master = start_master()
    viewer = master.as_(start_master.__self__.bundle.viewer)  # type: ignore[attr-defined]
    agent = FakeAgent(master)
    fw = Framework(master, {"user": "u", "name": "n", "capabilities": [{"type": "TASK_KILLING_STATE"}]})
    offer = fw.offers()[0]
    slow = task_info("slow", agent.id, kill_policy={"grace_period": {"nanoseconds": 30_000_000_000}})
    fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch([slow, task_info("quick", agent.id)])],
                              "filters": {"refuse_seconds": 0}})
    for task_id in ("slow", "quick"):
        agent.stream.wait_for(lambda e: e.get("type") == "RUN_TASK"
                              and e["run_task"]["task"]["task_id"]["value"] == task_id)
        agent.update(fw.id, task_id, "TASK_RUNNING")
        _acknowledged(fw, agent.id, task_id, "TASK_RUNNING")
    offers = [e for e in fw.stream.seen if e["type"] == "OFFERS"][1:] or [fw.stream.wait_for("OFFERS")]
    remaining = offers[0]["offers"]["offers"][0]  # what the two tasks left

    assert (_maintenance(master, "DRAIN_AGENT", "no-such-agent").text, ) == ("Unknown agent",)
    assert _maintenance(viewer, "DRAIN_AGENT", agent.id).status_code == 403  # `drain_agents`: operator only
    assert _maintenance(master, "DRAIN_AGENT", agent.id, max_grace_period={"seconds": 1}).status_code == 200
    # the outstanding offer is rescinded; each task is killed, its grace bounded by max_grace_period
    assert fw.stream.wait_for("RESCIND")["rescind"]["offer_id"] == remaining["id"]
    kills = {}
    for _ in range(2):
        kill = agent.stream.wait_for("KILL_TASK")["kill_task"]
        kills[kill["task_id"]["value"]] = kill.get("kill_policy")
    assert kills == {"slow": {"grace_period": {"nanoseconds": 1_000_000_000}},
                     "quick": {"grace_period": {"nanoseconds": 1_000_000_000}}}
    view = _agent_view(master, agent.id)
    assert view["deactivated"] is True and view["active"] is False
    assert view["drain_info"] == {"state": "DRAINING", "config": {
        "mark_gone": False, "max_grace_period": {"nanoseconds": 1_000_000_000}}}
    assert view["estimated_drain_start_time"]["nanoseconds"] > 0
    still = _maintenance(master, "REACTIVATE_AGENT", agent.id)
    assert (still.status_code, still.text) == (400, "Agent is still in the DRAINING state")

    # the kills' updates carry the drain's reason; once every task is gone (ACKed), the agent is DRAINED
    for task_id in ("slow", "quick"):
        agent.update(fw.id, task_id, "TASK_KILLING")
        agent.update(fw.id, task_id, "TASK_KILLED")
    for task_id in ("slow", "quick"):
        for state in ("TASK_KILLING", "TASK_KILLED"):
            assert _acknowledged(fw, agent.id, task_id, state)["reason"] == "REASON_AGENT_DRAINING"
    wait_for(lambda: _agent_view(master, agent.id)["drain_info"]["state"] == "DRAINED", what="DRAINED")
    slave = next(s for s in master.get("/state").json()["slaves"] if s["id"] == agent.id)
    assert slave["drain_info"]["state"] == "DRAINED" and slave["deactivated"] is True
    assert slave["estimated_drain_start_time_seconds"] > 0
    assert not any(e["type"] == "OFFERS" for e in fw.stream.drain(1.0))  # five cycles: no offer of it

    assert _maintenance(viewer, "REACTIVATE_AGENT", agent.id).status_code == 403
    assert _maintenance(master, "REACTIVATE_AGENT", agent.id).status_code == 200
    assert fw.stream.wait_for("OFFERS")["offers"]["offers"][0]["agent_id"]["value"] == agent.id
    view = _agent_view(master, agent.id)
    assert view["deactivated"] is False and "drain_info" not in view
    not_deactivated = _maintenance(master, "REACTIVATE_AGENT", agent.id)
    assert (not_deactivated.status_code, not_deactivated.text) == (400, "Agent is not deactivated")


def test_deactivate_withholds_offers_and_keeps_tasks(start_master: StartMaster) -> None:
    master = start_master()
    agent = FakeAgent(master)
    fw = Framework(master)
    offer = fw.offers()[0]
    assert _maintenance(master, "DEACTIVATE_AGENT", agent.id).status_code == 200
    assert fw.stream.wait_for("RESCIND")["rescind"]["offer_id"] == offer["id"]
    assert not any(e["type"] == "OFFERS" for e in fw.stream.drain(1.0))
    assert not any(e.get("type") == "KILL_TASK" for e in agent.stream.drain(0.2))
    assert _agent_view(master, agent.id)["deactivated"] is True
    assert _maintenance(master, "REACTIVATE_AGENT", agent.id).status_code == 200
    assert fw.stream.wait_for("OFFERS")["offers"]["offers"][0]["agent_id"]["value"] == agent.id


def test_drain_with_mark_gone_removes_the_drained_agent(start_master: StartMaster) -> None:
    master = start_master()
    agent = FakeAgent(master)
    assert _maintenance(master, "DRAIN_AGENT", agent.id, mark_gone=True).status_code == 200
    assert agent.stream.wait_for("SHUTDOWN")["shutdown"]["message"] == "Agent has been marked gone"
    wait_for(lambda: not master.operator("GET_AGENTS")["get_agents"]["agents"], what="the agent removed")
