"""Agents on a master with `--authenticate-agents`: who may speak for an agent id.

An agent authenticates with Basic (its `--credential`) in the realm
`dockyard-master-agents`; the id it is given belongs to its principal. Another
principal naming that id (REREGISTER, UPDATE, BATCH, PING, UNREGISTER, or a
REGISTER from its address) gets 403 and changes nothing: without that, a fake
agent could unregister a real one and have its tasks relaunched elsewhere while
they kept running. The binding is kept in the registry, so it survives a master
restart (registry.json) and a leader change (the ZooKeeper registry).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from kazoo.client import KazooClient

from framework.local.registry import ZooKeeperRegistry
from framework.security.bundle import Identity
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import REPO, wait_for

from .master_support import AuthAgent, SecuredMaster, launch, state, subscribe, task

AGENT_A = Identity("agent-a", "secret-a")
AGENT_B = Identity("agent-b", "secret-b")
SCHEDULER = Identity("dockyard", "secret-s")


def _credentials(directory: Path) -> Path:
    path = directory / "credentials.json"
    path.write_text(json.dumps({"credentials": [{"principal": i.principal, "secret": i.secret}
                                                for i in (AGENT_A, AGENT_B, SCHEDULER)]}))
    return path


@pytest.fixture
def master(tmp_path: Path) -> Iterator[SecuredMaster]:
    running = SecuredMaster(tmp_path, "--credentials", str(_credentials(tmp_path)), "--authenticate-agents",
                            "--agent-ping-timeout", "600")
    yield running
    running.stop()


def _agent_ids(master: SecuredMaster) -> set[str]:
    return {a["id"] for a in state(master.url, None)["slaves"]}


def test_agents_must_authenticate(master: SecuredMaster) -> None:
    for who in (None, Identity("agent-a", "wrong")):
        refused = AuthAgent(master.url, who)
        assert refused.status == 401
        assert refused.stream.headers["www-authenticate"] == 'Basic realm="dockyard-master-agents"'
        assert refused.stream.body == b"401 Unauthorized."
    assert not _agent_ids(master)
    assert AuthAgent(master.url, AGENT_A).status == 200


def test_another_principal_cannot_speak_for_an_agent(master: SecuredMaster) -> None:
    real = AuthAgent(master.url, AGENT_A, hostname="real", port=5061)
    assert real.status == 200 and real.id
    # A framework with a task on the real agent: what a forged UNREGISTER used to lose.
    fw = subscribe(master.url, {"user": "u", "name": "f"}, None)
    framework_id = fw.next()["subscribed"]["framework_id"]["value"]
    offer = fw.wait_for("OFFERS")["offers"]["offers"][0]
    assert launch(master.url, None, framework_id, fw.stream_id, offer,
                  {"type": "LAUNCH", "launch": {"task_infos": [task("t1", real.id)]}}).status_code == 202
    real.stream.wait_for("RUN_TASK")
    assert real.update(framework_id, "t1", "TASK_RUNNING").status_code == 202

    for kind, payload in (("UNREGISTER", {}), ("PING", {}), ("EXECUTOR_EXITED", {
            "framework_id": {"value": framework_id}, "executor_id": {"value": "t1"}}),
            ("BATCH", {"calls": [{"type": "UNREGISTER"}]})):
        forged = real.post(kind, AGENT_B, **payload)
        assert forged.status_code == 403, (kind, forged.status_code, forged.text)
        assert forged.text == f"Agent {real.id} is registered by another principal"
    forged = real.update(framework_id, "t1", "TASK_FAILED", identity=AGENT_B)
    assert forged.status_code == 403
    thief = AuthAgent(master.url, AGENT_B, hostname="real", port=5061, agent_id=real.id)
    assert thief.status == 403
    squatter = AuthAgent(master.url, AGENT_B, hostname="real", port=5061)  # REGISTER at its address
    assert squatter.status == 403

    # Nothing happened: the agent, its stream and its running task are all still there.
    assert _agent_ids(master) == {real.id}
    assert not real.stream.ended.is_set()
    (framework,) = [f for f in state(master.url, None)["frameworks"] if f["id"] == framework_id]
    assert [(t["id"], t["state"]) for t in framework["tasks"]] == [("t1", "TASK_RUNNING")]
    assert not [e for e in fw.drain(0.5) if e.get("type") == "UPDATE"
                and e["update"]["status"]["state"] != "TASK_RUNNING"]
    # The agent's own principal still may.
    assert real.post("PING").status_code == 202
    again = AuthAgent(master.url, AGENT_A, hostname="real", port=5061, agent_id=real.id, reregister={
        "tasks": [{"task_id": {"value": "t1"}, "framework_id": {"value": framework_id}, "state": "TASK_RUNNING",
                   "resources": []}]})
    assert again.status == 200
    fw.close()


def test_the_binding_survives_a_master_restart(master: SecuredMaster) -> None:
    real = AuthAgent(master.url, AGENT_A, hostname="real", port=5062)
    assert real.status == 200 and real.id
    wait_for(lambda: real.id in json.loads((master.workdir / "master" / "registry.json").read_text())
             .get("owners", {}), timeout=10, what="the registry written")
    real.close()
    master.restart()
    thief = AuthAgent(master.url, AGENT_B, hostname="real", port=5062, agent_id=real.id)
    assert thief.status == 403
    back = AuthAgent(master.url, AGENT_A, hostname="real", port=5062, agent_id=real.id)
    assert back.status == 200
    assert _agent_ids(master) == {real.id}


def _elected(master: SecuredMaster) -> bool:
    try:
        return httpx.get(master.url + "/metrics/snapshot", timeout=2).json()["master/elected"] == 1.0
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def test_the_binding_survives_a_leader_change(zk: Any, tmp_path: Path) -> None:
    flags = ("--credentials", str(_credentials(tmp_path)), "--authenticate-agents", "--zk", zk.url("/owners-failover"),
             "--agent-reregister-timeout", "30")
    first = SecuredMaster(tmp_path, *flags, name="first")
    second = SecuredMaster(tmp_path, *flags, name="second")
    try:
        wait_for(lambda: _elected(first) or _elected(second), timeout=30, what="a leader")
        leader, standby = (first, second) if _elected(first) else (second, first)
        real = AuthAgent(leader.url, AGENT_A, hostname="real", port=5063)
        assert real.status == 200 and real.id
        real.close()
        leader.stop()  # SIGTERM: it leaves ZooKeeper at once
        wait_for(lambda: _elected(standby), timeout=30, what="the standby elected")
        assert AuthAgent(standby.url, AGENT_B, hostname="real", port=5063, agent_id=real.id).status == 403
        assert AuthAgent(standby.url, AGENT_A, hostname="real", port=5063, agent_id=real.id).status == 200
    finally:
        first.stop()
        second.stop()


def test_the_binding_is_in_the_zookeeper_registry(zk: Any) -> None:
    """What a new leader reads: the ZooKeeper registry keeps the owners beside the agents."""
    client = KazooClient(hosts=zk.hosts)
    client.start(timeout=10)
    try:
        registry = ZooKeeperRegistry(client, "/test-master-agents-owners")
        registry.save({"S1": {"hostname": "h", "ip": "127.0.0.1", "port": 1}}, {"S2": 1.0},
                      {"S1": "agent-a", "S2": "agent-b"})
        assert registry.load_owners() == {"S1": "agent-a", "S2": "agent-b"}
        assert registry.load() == {"S1": {"hostname": "h", "ip": "127.0.0.1", "port": 1}}
    finally:
        client.stop()
        client.close()


def _agent_has_credential_flag() -> bool:
    done = subprocess.run([sys.executable, str(REPO / "dockyard.py"), "agent", "--help"], capture_output=True,
                          text=True, timeout=60)
    return "--credential " in done.stdout or "--credential\n" in done.stdout


@pytest.mark.skipif(not _agent_has_credential_flag(), reason="`dockyard agent --credential` does not exist yet")
def test_a_real_agent_with_its_credential_runs_tasks(tmp_path: Path) -> None:
    credentials = _credentials(tmp_path)
    (tmp_path / "agent-a.json").write_text(json.dumps({"principal": AGENT_A.principal, "secret": AGENT_A.secret}))
    with Cluster(tmp_path / "c", agents=1, master_args=["--credentials", str(credentials), "--authenticate-agents"],
                 agent_args=["--credential", str(tmp_path / "agent-a.json")]).start() as cluster:
        framework = RawFramework(cluster.master_address).start()
        try:
            offer = framework.offer()
            framework.launch(offer, [command_task("exit 0", task_id="authenticated")])
            assert framework.wait_terminal("authenticated", timeout=30)["state"] == "TASK_FINISHED"
        finally:
            framework.stop()
