"""What operators decide outlives the master that heard it, as Mesos keeps it in its registry
(src/master/registry.proto: `Slave.deactivated`, `Slave.drain_info`, `quota_configs`): a master
restarted on its work dir (the file registry), or a new leader (the ZooKeeper registry), still
withholds a deactivated agent, goes on with a drain, and enforces each role's quota.

A change is answered only once the registry keeps it, as Mesos answers after its registrar
applied it: these tests kill the master right after the 200.
"""
from __future__ import annotations

import uuid as uuidlib
from typing import Any, Iterator

import httpx
import pytest

from framework.mesos.resources import Resources
from tests.support.mesos_http import FakeAgent, Framework, Master, launch, task_info
from tests.support.procs import free_port, wait_for

from .test_master import StartMaster, _procs_of, start_master  # noqa: F401

GUARANTEES, LIMITS = {"cpus": {"value": 1.0}}, {"cpus": {"value": 2.0}}
QUOTA = {"role": "dev", "guarantees": GUARANTEES, "limits": LIMITS}
TASK = "kept-task"


def _post(master: Master, body: dict[str, Any]) -> httpx.Response:
    return master.post("/api/v1", body)


def _maintenance(master: Master, kind: str, agent_id: str, **extra: Any) -> httpx.Response:
    return _post(master, {"type": kind, kind.lower(): {"agent_id": {"value": agent_id}, **extra}})


def _agent_view(master: Master, agent_id: str) -> dict[str, Any]:
    agents = master.operator("GET_AGENTS")["get_agents"]["agents"]
    return next(a for a in agents if a["agent_info"]["id"]["value"] == agent_id)


class Decided:
    """What `decide` left on a master: a deactivated agent, one draining with a task that
    ignores its kill, the framework of that task, and the draining agent's view."""

    def __init__(self, master: Master) -> None:
        self.idle = FakeAgent(master, hostname="idle", port=5091)
        self.drained = FakeAgent(master, hostname="drained", port=5092)
        fw = Framework(master, {"user": "u", "name": "keeper", "failover_timeout": 600.0})
        self.framework = {**fw.info, "id": {"value": fw.id}}
        offer = next(o for o in fw.offers() if o["agent_id"]["value"] == self.drained.id)
        task = task_info(TASK, self.drained.id)
        assert fw.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [launch([task])]}).status_code == 202
        self.drained.stream.wait_for("RUN_TASK")
        self.drained.update(fw.id, TASK, "TASK_RUNNING")
        self.task = {"task_id": {"value": TASK}, "framework_id": {"value": fw.id}, "name": TASK,
                     "state": "TASK_RUNNING", "resources": task["resources"]}
        assert _maintenance(master, "DEACTIVATE_AGENT", self.idle.id).status_code == 200
        assert _maintenance(master, "DRAIN_AGENT", self.drained.id,
                            max_grace_period={"seconds": 3}).status_code == 200
        assert self.drained.stream.wait_for("KILL_TASK")["kill_task"]["task_id"]["value"] == TASK  # ignored
        assert _post(master, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [QUOTA]}}).status_code == 200
        self.before = _agent_view(master, self.drained.id)
        assert self.before["drain_info"]["state"] == "DRAINING"


def _kill(start: StartMaster, master: Master) -> None:
    proc = next(proc for proc, client in _procs_of(start) if client is master)
    proc.kill9()
    proc.stop()


def _check_kept(master: Master, decided: Decided) -> None:
    """The quota at once; the drain before the agents are back, and going on once they are;
    both agents withheld."""
    idle, drained = decided.idle.id, decided.drained.id
    status = master.operator("GET_QUOTA")["get_quota"]["status"]
    assert status["configs"] == [QUOTA]
    still = _maintenance(master, "REACTIVATE_AGENT", drained)  # known before it re-registers
    assert (still.status_code, still.text) == (400, "Agent is still in the DRAINING state")
    FakeAgent(master, hostname="idle", port=5091, agent_id=idle)
    back = FakeAgent(master, hostname="drained", port=5092, agent_id=drained,
                     reregister={"frameworks": [decided.framework], "tasks": [decided.task]})
    kill = back.stream.wait_for("KILL_TASK")["kill_task"]  # the drain goes on, its grace still bounded
    assert kill["task_id"]["value"] == TASK and kill["kill_policy"]["grace_period"]["nanoseconds"] == 3_000_000_000
    view = _agent_view(master, idle)
    assert view["deactivated"] is True and view["active"] is False and "drain_info" not in view
    view = _agent_view(master, drained)
    assert view["deactivated"] is True and view["active"] is False
    assert view["drain_info"] == decided.before["drain_info"] == {"state": "DRAINING", "config": {
        "mark_gone": False, "max_grace_period": {"nanoseconds": 3_000_000_000}}}
    assert view["estimated_drain_start_time"] == decided.before["estimated_drain_start_time"]
    ops = Framework(master, {"user": "u", "name": "ops", "role": "ops"})
    assert not [e for e in ops.stream.drain(1.0) if e["type"] == "OFFERS"]  # five allocation cycles
    # reactivated, the idle agent is offered, less what dev's unmet guarantee holds back
    assert _maintenance(master, "REACTIVATE_AGENT", idle).status_code == 200
    [offer] = ops.offers()
    assert offer["agent_id"]["value"] == idle
    assert Resources(offer["resources"]).scalar("cpus") == 4.0 - GUARANTEES["cpus"]["value"]


def test_a_restarted_master_keeps_quotas_drains_and_deactivations(start_master: StartMaster) -> None:  # noqa: F811
    port = free_port()
    master = start_master(port=port)
    decided = Decided(master)
    _kill(start_master, master)  # at once: each 200 above means the registry has it
    again = start_master(port=port)
    assert again.operator("GET_AGENTS")["get_agents"]["agents"] == []  # none re-registered yet
    _check_kept(again, decided)
    # a reactivation is kept too: after another restart the idle agent is active
    _kill(start_master, again)
    third = start_master(port=port)
    FakeAgent(third, hostname="idle", port=5091, agent_id=decided.idle.id)
    assert _agent_view(third, decided.idle.id)["deactivated"] is False


@pytest.fixture
def zk_path(zk: Any) -> Iterator[str]:
    yield zk.url(f"/mesos-{uuidlib.uuid4().hex[:8]}")


def elected(master: Master) -> bool:
    return master.get("/metrics/snapshot").json()["master/elected"] == 1.0


def test_a_new_leader_keeps_quotas_drains_and_deactivations(start_master: StartMaster,  # noqa: F811
                                                             zk_path: str) -> None:
    first = start_master("--zk", zk_path)
    wait_for(lambda: elected(first), timeout=20, what="the first master elected")
    second = start_master("--zk", zk_path)
    decided = Decided(first)
    _kill(start_master, first)
    wait_for(lambda: elected(second), timeout=30, what="the second master elected")
    _check_kept(second, decided)
