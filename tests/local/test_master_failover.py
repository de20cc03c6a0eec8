"""Reconciliation and operator events across a leader change of the embedded master.

Two real `dockyard master` processes share a ZooKeeper; fake agents speak the
internal agent protocol. What a real Mesos master does (master.cpp `reconcile`,
explicit reconciliation of a task the master does not know):

* its agent is recovered (in the registry, not re-registered yet): no answer;
  with no agent id, no answer while any agent is still recovered;
* its agent is registered: TASK_GONE;
* its agent is unreachable (the registry keeps that across leaders): TASK_UNREACHABLE,
  with the time it was marked unreachable;
* its agent is unknown: TASK_UNKNOWN;
* a framework that is not PARTITION_AWARE gets TASK_LOST for the last three.

And a re-registering agent's tasks reach operators as TASK_ADDED (Framework::addTask).
"""
from __future__ import annotations

import json
import threading
import time
import uuid as uuidlib
from typing import Any, Iterator

import httpx
import pytest

from tests.support.mesos_http import FakeAgent, Framework, Master, task_info
from tests.support.procs import free_port, wait_for

from .test_master import PARTITION_AWARE, StartMaster, _procs_of, start_master  # noqa: F401

FLAGS = ("--agent-ping-interval", "0.2", "--agent-ping-timeout", "2", "--agent-reregister-timeout", "4")
PLAIN = {"user": "tester", "name": "plain"}


class Pinger:
    """Keeps fake agents alive on a master (they answer no pings of their own)."""

    def __init__(self, master: Master, agents: list[FakeAgent]) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(master, agents), daemon=True)
        self.thread.start()

    def _run(self, master: Master, agents: list[FakeAgent]) -> None:
        while not self.stop.wait(0.1):
            for agent in agents:
                try:
                    agent.post("PING")
                except httpx.HTTPError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def elected(master: Master) -> bool:
    return master.get("/metrics/snapshot").json()["master/elected"] == 1.0


def reconcile(fw: Framework, *tasks: tuple[str, str | None]) -> None:
    fw.call("RECONCILE", reconcile={"tasks": [
        {"task_id": {"value": tid}, **({"agent_id": {"value": aid}} if aid else {})} for tid, aid in tasks]})


def answers(fw: Framework, quiet: float = 1.0) -> dict[str, dict[str, Any]]:
    """The reconciliation answers that arrive until `quiet` seconds pass without one."""
    return {e["update"]["status"]["task_id"]["value"]: e["update"]["status"]
            for e in fw.stream.drain(quiet) if e["type"] == "UPDATE"}


@pytest.fixture
def zk_path(zk) -> Iterator[str]:  # noqa: ANN001
    yield zk.url(f"/mesos-{uuidlib.uuid4().hex[:8]}")


def test_reconciliation_after_a_leader_change_follows_the_registry(
        start_master: StartMaster, zk_path: str) -> None:  # noqa: F811
    first = start_master("--zk", zk_path, *FLAGS)
    wait_for(lambda: elected(first), what="first master elected")
    second = start_master("--zk", zk_path, *FLAGS)
    kept = FakeAgent(first, hostname="kept", port=5081)
    late = FakeAgent(first, hostname="late", port=5082)
    cut = FakeAgent(first, hostname="cut", port=5083)
    pinger = Pinger(first, [kept, late])  # `cut` stops answering: unreachable after 2 s
    try:
        def cut_is_unreachable() -> bool:
            agents = first.operator("GET_AGENTS")["get_agents"]["agents"]
            return {a["agent_info"]["id"]["value"] for a in agents} == {kept.id, late.id}
        wait_for(cut_is_unreachable, timeout=10, what="agent 'cut' marked unreachable")
        marked_at = time.time()
        time.sleep(0.3)  # the registry write is asynchronous
    finally:
        pinger.close()
    # the leader goes; the other master takes over with the registry only
    next(proc for proc, client in _procs_of(start_master) if client is first).stop()
    wait_for(lambda: elected(second), timeout=20, what="second master elected")

    events = second.stream("/api/v1", {"type": "SUBSCRIBE"})
    aware = Framework(second, PARTITION_AWARE)
    plain = Framework(second, PLAIN)
    try:
        assert events.next()["type"] == "SUBSCRIBED"
        asked = [("t-kept", kept.id), ("t-cut", cut.id), ("t-nowhere", "no-such-agent"), ("t-anywhere", None)]
        reconcile(aware, *asked)
        reconcile(plain, *asked)
        got, got_plain = answers(aware), answers(plain)
        # `kept` is recovering (not re-registered yet), so is any agent for t-anywhere: no answer
        assert sorted(got) == sorted(got_plain) == ["t-cut", "t-nowhere"], (got, got_plain)
        assert (got["t-cut"]["state"], got["t-cut"]["reason"]) == ("TASK_UNREACHABLE", "REASON_RECONCILIATION")
        assert got["t-cut"]["agent_id"] == {"value": cut.id}
        unreachable_at = got["t-cut"]["unreachable_time"]["nanoseconds"] / 1e9
        assert marked_at - 3 < unreachable_at <= marked_at  # when the first leader marked it
        assert got["t-nowhere"]["state"] == "TASK_UNKNOWN"
        assert {t: s["state"] for t, s in got_plain.items()} == {"t-cut": "TASK_LOST", "t-nowhere": "TASK_LOST"}

        # `kept` comes back with a running task: operators hear TASK_ADDED, reconciliation answers
        fid = aware.id
        running = {"task_id": {"value": "t-running"}, "framework_id": {"value": fid}, "name": "t-running",
                   "state": "TASK_RUNNING", "resources": task_info("t-running", kept.id)["resources"]}
        back = FakeAgent(second, hostname="kept", port=5081, agent_id=kept.id, reregister={
            "frameworks": [{**PARTITION_AWARE, "id": {"value": fid}}], "tasks": [running]})
        alive = Pinger(second, [back])
        added = events.wait_for(lambda e: e.get("type") == "TASK_ADDED")["task_added"]["task"]
        assert added["task_id"] == {"value": "t-running"} and added["agent_id"] == {"value": kept.id}
        assert added["state"] == "TASK_RUNNING" and added["framework_id"] == {"value": fid}
        reconcile(aware, ("t-kept", kept.id), ("t-running", kept.id), ("t-anywhere", None))
        got = answers(aware)
        assert got["t-kept"]["state"] == "TASK_GONE" and got["t-running"]["state"] == "TASK_RUNNING"
        assert "t-anywhere" not in got  # `late` is still recovering
        # `late` never comes back: after --agent-reregister-timeout it is unreachable
        wait_for(lambda: (reconcile(aware, ("t-late", late.id)) or answers(aware, 0.3)).get("t-late"),
                 timeout=10, what="an answer for the task on the agent that did not come back")
        reconcile(aware, ("t-late", late.id), ("t-anywhere", None))
        got = answers(aware)
        assert got["t-late"]["state"] == "TASK_UNREACHABLE" and got["t-anywhere"]["state"] == "TASK_UNKNOWN"
        alive.close()
        back.close()
    finally:
        events.close()
        aware.close()
        plain.close()


def test_a_standalone_master_restart_keeps_its_unreachable_agents(start_master: StartMaster,
                                                                  tmp_path) -> None:  # noqa: F811, ANN001
    """The file registry (no ZooKeeper) records unreachable agents too."""
    port = free_port()
    master = start_master(*FLAGS, port=port)
    cut = FakeAgent(master, hostname="cut", port=5083)
    wait_for(lambda: not master.operator("GET_AGENTS")["get_agents"]["agents"], timeout=10,
             what="agent 'cut' marked unreachable")
    registry = tmp_path / f"master-{port}" / "registry.json"
    wait_for(lambda: cut.id in json.loads(registry.read_text()).get("unreachable", {}), timeout=5,
             what="the registry to record it")
    proc = next(proc for proc, client in _procs_of(start_master) if client is master)
    proc.kill9()
    proc.stop()
    again = start_master(*FLAGS, port=port)
    fw = Framework(again, PARTITION_AWARE)
    try:
        reconcile(fw, ("t-cut", cut.id))
        assert fw.update("t-cut")["state"] == "TASK_UNREACHABLE"
    finally:
        fw.close()


def test_a_leader_cut_off_from_zookeeper_steps_down_before_a_successor_can_lead(
        start_master: StartMaster, tmp_path) -> None:  # noqa: F811
    """ZooKeeper gone (here: stopped) leaves a leader unable to know whether its session still
    lives; it must stop leading within the session timeout, as a Mesos master does."""
    from tests.support.zookeeper import ZooKeeper

    zk = ZooKeeper(tmp_path / "zk-fence").start()
    try:
        master = start_master("--zk", zk.url("/fence"), "--zk-session-timeout", "3")
        wait_for(lambda: elected(master), timeout=20, what="the master to lead")
        (process, _), = _procs_of(start_master)
        zk.stop()
        cut = time.monotonic()
        wait_for(lambda: not process.alive(), timeout=15, what="the cut-off leader to step down")
        assert time.monotonic() - cut < 3 + 3, "a leader must not outlive its session unheard"
        assert "fencing in 2.7s" in process.output(), process.output()[-2000:]
    finally:
        zk.stop()
