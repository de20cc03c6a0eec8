"""Who may add an agent to the cluster: Mesos's `register_agents` ACL.

Authentication alone let any principal of the credentials file (the viewer, the
scheduler) register a fake agent and be sent real tasks with their environment.
The generated ACLs refuse those two and allow every other principal, so a new
agent needs a credential but no new rule. ACL files written for a Mesos cluster
may hold actions dockyard does not perform: they are ignored, not refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.errors import SecurityError
from framework.security.acls import Acls
from framework.security.bundle import Bundle

from tests.support.cluster import Cluster
from tests.support.mesos_http import FakeAgent, Master


def test_generated_acls_let_only_agents_and_the_operator_register_agents(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "security").ensure(agents=["a"])
    acls = Acls.load(bundle.acls_file)
    assert acls.authorized("register_agents", "agent-a", None)
    assert acls.authorized("register_agents", "operator", None)
    assert not acls.authorized("register_agents", "viewer", None)
    assert not acls.authorized("register_agents", "dockyard", None)


def test_a_viewer_cannot_register_an_agent(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, agents=1).start()  # the generated bundle's flags and ACLs
    bundle = cluster.bundle
    master = Master(cluster.master_api())
    try:
        for who in (bundle.viewer, bundle.identity("dockyard")):
            refused = FakeAgent(master.as_(who), hostname=f"fake-{who.principal}", registered=False)
            assert refused.status == 403
            assert f"Not authorized to register agent with principal '{who.principal}'" in refused.stream.body.decode()
        assert [a["hostname"] for a in cluster.get_json("/state")["slaves"]] == ["agent0"]
        # An agent's principal may register another agent (capacity, not an identity, is what it adds).
        assert FakeAgent(master.as_(bundle.identity("agent-agent0")), hostname="second", port=5099).status == 200
        assert sorted(a["hostname"] for a in cluster.get_json("/state")["slaves"]) == ["agent0", "second"]
    finally:
        master.close()
        cluster.stop()


def test_mesos_actions_dockyard_does_not_perform_are_ignored_but_typos_refused() -> None:
    acls = Acls.from_json({"permissive": False, "get_endpoints": [{"principals": {"type": "ANY"},
                                                                    "paths": {"type": "ANY"}}],
                           "run_tasks": [{"principals": {"values": ["ops"]}, "users": {"type": "ANY"}}]})
    assert acls.authorized("run_tasks", "ops", "root")
    assert not acls.authorized("run_tasks", "other", "root")
    with pytest.raises(SecurityError, match="unknown ACL action 'get_endpoint'"):
        Acls.from_json({"get_endpoint": []})


def test_files_an_operator_edits_survive_a_restart(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "security").ensure()
    assert bundle.ca_cert.exists(), "clients need the CA before any server certificate is issued"
    edited = {"permissive": True}
    bundle.acls_file.write_text(json.dumps(edited))
    users = json.loads(bundle.users_file.read_text())
    users["credentials"].append({"principal": "alice", "secret": "s3cret-s3cret", "role": "viewer"})
    bundle.users_file.write_text(json.dumps(users))
    Bundle(tmp_path / "security").ensure(agents=["b"])
    assert json.loads(bundle.acls_file.read_text()) == edited
    assert "alice" in bundle.users_file.read_text()
