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

import pytest
from kazoo.client import KazooClient

from framework.local.master.registry import ZooKeeperRegistry
from framework.security.bundle import Identity
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.mesos_http import FakeAgent, Master, task_info
from tests.support.procs import REPO, wait_for
from tests.support.security import Endpoint

AGENT_A = Identity("agent-a", "secret-a")
AGENT_B = Identity("agent-b", "secret-b")
SCHEDULER = Identity("dockyard", "secret-s")


def _credentials(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "credentials.json"
    path.write_text(json.dumps({"credentials": [{"principal": i.principal, "secret": i.secret}
                                                for i in (AGENT_A, AGENT_B, SCHEDULER)]}))
    return path


def _agents_only(tmp_path: Path, *flags: str, masters: int = 1, zk_url: str | None = None) -> Cluster:
    """Masters that authenticate agents alone, with this module's credentials: the flags under test.
    `secure=False`: the support's own bundle would authenticate every realm with other principals."""
    return Cluster(tmp_path, agents=0, masters=masters, zk_url=zk_url, secure=False,
                   master_args=["--credentials", str(_credentials(tmp_path)), "--authenticate-agents", *flags])


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Cluster]:
    with _agents_only(tmp_path, "--agent-ping-timeout", "600").start() as running:
        yield running


@pytest.fixture
def api(master: Cluster) -> Iterator[Master]:
    """A client of the master without credentials; `api.as_(identity)` for anyone else."""
    client = Master(master.master_api())
    yield client
    client.close()


def _agent_ids(master: Cluster) -> set[str]:
    return {a["id"] for a in master.get_json("/master/state")["slaves"]}


def test_agents_must_authenticate(master: Cluster, api: Master) -> None:
    for who in (None, Identity("agent-a", "wrong")):
        refused = FakeAgent(api.as_(who), registered=False)
        assert refused.status == 401
        assert refused.stream.headers is not None
        assert refused.stream.headers["www-authenticate"] == 'Basic realm="dockyard-master-agents"'
        assert refused.stream.body == b"401 Unauthorized."
    assert not _agent_ids(master)
    assert FakeAgent(api.as_(AGENT_A), registered=False).status == 200


def test_another_principal_cannot_speak_for_an_agent(master: Cluster, api: Master) -> None:
    real = FakeAgent(api.as_(AGENT_A), hostname="real", port=5061)
    assert real.id
    # A framework with a task on the real agent: what a forged UNREGISTER used to lose.
    fw = api.subscribe({"user": "u", "name": "f"})
    framework_id = fw.next()["subscribed"]["framework_id"]["value"]
    offer = fw.wait_for("OFFERS")["offers"]["offers"][0]
    accepted = api.call({"type": "ACCEPT", "framework_id": {"value": framework_id}, "accept": {
        "offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {
            "task_infos": [task_info("t1", real.id)]}}], "filters": {"refuse_seconds": 0}}}, stream_id=fw.stream_id)
    assert accepted.status_code == 202
    real.stream.wait_for("RUN_TASK")
    assert real.update(framework_id, "t1", "TASK_RUNNING")[0].status_code == 202

    other = api.as_(AGENT_B)
    for kind, payload in (("UNREGISTER", {}), ("PING", {}), ("EXECUTOR_EXITED", {
            "framework_id": {"value": framework_id}, "executor_id": {"value": "t1"}}),
            ("BATCH", {"calls": [{"type": "UNREGISTER"}]})):
        forged = real.post(kind, other, **payload)
        assert forged.status_code == 403, (kind, forged.status_code, forged.text)
        assert forged.text == f"Agent {real.id} is registered by another principal"
    forged, _ = real.update(framework_id, "t1", "TASK_FAILED", caller=other)
    assert forged.status_code == 403
    thief = FakeAgent(other, hostname="real", port=5061, agent_id=real.id, registered=False)
    assert thief.status == 403
    squatter = FakeAgent(other, hostname="real", port=5061, registered=False)  # REGISTER at its address
    assert squatter.status == 403

    # Nothing happened: the agent, its stream and its running task are all still there.
    assert _agent_ids(master) == {real.id}
    assert not real.stream.ended.is_set()
    (framework,) = [f for f in master.get_json("/state")["frameworks"] if f["id"] == framework_id]
    assert [(t["id"], t["state"]) for t in framework["tasks"]] == [("t1", "TASK_RUNNING")]
    assert not [e for e in fw.drain(0.5) if e.get("type") == "UPDATE"
                and e["update"]["status"]["state"] != "TASK_RUNNING"]
    # The agent's own principal still may.
    assert real.post("PING").status_code == 202
    again = FakeAgent(api.as_(AGENT_A), hostname="real", port=5061, agent_id=real.id, reregister={
        "tasks": [{"task_id": {"value": "t1"}, "framework_id": {"value": framework_id}, "state": "TASK_RUNNING",
                   "resources": []}]}, registered=False)
    assert again.status == 200
    fw.close()


def test_the_binding_survives_a_master_restart(master: Cluster, api: Master) -> None:
    real = FakeAgent(api.as_(AGENT_A), hostname="real", port=5062)
    wait_for(lambda: real.id in json.loads((master.workdir / "master0" / "registry.json").read_text())
             .get("owners", {}), timeout=10, what="the registry written")
    real.stream.close()  # gone without a word (an UNREGISTER would end the binding)
    master.stop_master(0)
    master.start_master(0)
    thief = FakeAgent(api.as_(AGENT_B), hostname="real", port=5062, agent_id=real.id, registered=False)
    assert thief.status == 403
    back = FakeAgent(api.as_(AGENT_A), hostname="real", port=5062, agent_id=real.id, registered=False)
    assert back.status == 200
    assert _agent_ids(master) == {real.id}


def _elected(master: Endpoint) -> bool:
    try:
        return master.get_json("/metrics/snapshot", timeout=2)["master/elected"] == 1.0
    except (OSError, ValueError, KeyError):
        return False


def test_the_binding_survives_a_leader_change(zk: Any, tmp_path: Path) -> None:
    with _agents_only(tmp_path, "--agent-reregister-timeout", "30", masters=2,
                      zk_url=zk.url("/owners-failover")).start() as cluster:
        leading = 0 if _elected(cluster.master_api(0)) else 1
        leader, standby = cluster.master_api(leading), cluster.master_api(1 - leading)
        client = Master(leader)
        try:
            real = FakeAgent(client.as_(AGENT_A), hostname="real", port=5063)
            real.stream.close()  # gone without a word (an UNREGISTER would end the binding)
            cluster.stop_master(leading)  # SIGTERM: it leaves ZooKeeper at once
            wait_for(lambda: _elected(standby), timeout=30, what="the standby elected")
            other = Master(standby)
            client.opened.append(other)
            assert FakeAgent(other.as_(AGENT_B), hostname="real", port=5063, agent_id=real.id,
                             registered=False).status == 403
            assert FakeAgent(other.as_(AGENT_A), hostname="real", port=5063, agent_id=real.id,
                             registered=False).status == 200
        finally:
            client.close()


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
    """A test cluster's agent registers with its own credential (`agent-agent0`), as every one does."""
    with Cluster(tmp_path / "c", agents=1).start() as cluster:
        assert "--authenticate-agents" in cluster.security_flags("master")
        assert "--credential" in cluster.security_flags("agent", "agent0")
        framework = RawFramework(cluster.master_api()).start()
        try:
            offer = framework.offer()
            framework.launch(offer, [command_task("exit 0", task_id="authenticated")])
            assert framework.wait_terminal("authenticated", timeout=30)["state"] == "TASK_FINISHED"
        finally:
            framework.stop()
