"""Framework principals and the local authorizer's ACLs on a real `dockyard master` process.

What a Mesos master does (src/master/validation.cpp, http.cpp `scheduler`,
master.cpp `_subscribe`, src/authorizer/local/authorizer.cpp):

* a SUBSCRIBE naming a principal other than the authenticated one is a 400; one
  naming none is registered under the authenticated one;
* a framework id belongs to its principal: SUBSCRIBE with it from another principal
  gets one ERROR (`Changing framework's principal is not allowed.`) and the running
  framework is untouched; other calls from another principal are 400s;
* `register_frameworks`, `run_tasks`, `teardown_frameworks` refuse; `view_*` filter.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from framework.security.bundle import Identity
from tests.support.cluster import Cluster
from tests.support.mesos_http import EventStream, FakeAgent, Master, task_info as task
from tests.support.procs import wait_for

PRINCIPALS = ("operator", "viewer", "dockyard", "other", "intruder", "outsider", "agent-a")
IDS = {p: Identity(p, f"secret-of-{p}") for p in PRINCIPALS}
OPERATOR, VIEWER, DOCKYARD, OTHER, INTRUDER, OUTSIDER, AGENT = (IDS[p] for p in PRINCIPALS)
ANY = {"type": "ANY"}

ACLS = {
    "permissive": False,
    "register_frameworks": [
        {"principals": {"values": ["dockyard", "intruder"]}, "roles": ANY},
        {"principals": {"values": ["other"]}, "roles": {"values": ["*"]}},
    ],
    "run_tasks": [
        {"principals": {"values": ["dockyard"]}, "users": {"values": ["alice", "nobody"]}},
        {"principals": {"values": ["other", "intruder"]}, "users": ANY},
    ],
    "register_agents": [{"principals": {"values": ["agent-a"]}, "agents": ANY}],
    "teardown_frameworks": [{"principals": {"values": ["operator"]}, "framework_principals": ANY}],
    **{action: [{"principals": {"values": ["operator", "dockyard", "other", "intruder"]}, "users": ANY},
                {"principals": {"values": ["viewer"]}, "users": {"values": ["alice"]}}]
       for action in ("view_frameworks", "view_tasks", "view_executors")},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master with this module's principals and ACLs, every realm authenticated. `secure=False`:
    these flags are the subject, in place of the support's own bundle."""
    work: Path = tmp_path_factory.mktemp("master-frameworks")
    (work / "credentials.json").write_text(json.dumps(
        {"credentials": [{"principal": i.principal, "secret": i.secret} for i in IDS.values()]}))
    (work / "acls.json").write_text(json.dumps(ACLS))
    with Cluster(work, agents=0, secure=False, master_args=[
            "--credentials", str(work / "credentials.json"), "--acls", str(work / "acls.json"),
            "--authenticate-http-frameworks", "--authenticate-http-readonly", "--authenticate-http-readwrite",
            "--authenticate-agents", "--agent-ping-timeout", "600"], operator=OPERATOR).start() as running:
        yield running


@pytest.fixture(scope="module")
def master(cluster: Cluster) -> Iterator[Master]:
    """A client of the master without credentials; `master.as_(identity)` for each principal."""
    client = Master(cluster.master_api().as_(None))
    yield client
    client.close()


@pytest.fixture(scope="module")
def agent(master: Master) -> Iterator[FakeAgent]:
    registered = FakeAgent(master.as_(AGENT))
    yield registered
    registered.close()


def subscribe(master: Master, info: dict[str, Any], identity: Identity | None,
              framework_id: str | None = None) -> EventStream:
    """A raw SUBSCRIBE as `identity` (with `framework_id`: in the call and in the FrameworkInfo)."""
    if framework_id is not None:
        info = {**info, "id": {"value": framework_id}}
    return master.as_(identity).subscribe(info, framework_id=framework_id)


def state(master: Master, identity: Identity) -> dict[str, Any]:
    response = master.as_(identity).get("/state")
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def operator_call(master: Master, identity: Identity, kind: str, **payload: Any) -> httpx.Response:
    return master.as_(identity).post("/api/v1", {"type": kind, **payload})


class Fw:
    """A subscribed framework as `identity`, torn down at the end of the test."""

    def __init__(self, master: Master, identity: Identity, info: dict[str, Any]) -> None:
        self.master = master
        self.identity = identity
        self.stream = subscribe(master, info, identity)
        assert self.stream.status == 200, (self.stream.status, self.stream.body)
        first = self.stream.next()
        assert first["type"] == "SUBSCRIBED", first
        self.id: str = first["subscribed"]["framework_id"]["value"]

    def call(self, kind: str, identity: Identity | None = None, **payload: Any) -> httpx.Response:
        body = {"type": kind, "framework_id": {"value": self.id}, **payload}
        return self.master.as_(identity or self.identity).call(body, stream_id=self.stream.stream_id)

    def launch(self, offer: dict[str, Any], operation: dict[str, Any]) -> httpx.Response:
        return self.call("ACCEPT", accept={"offer_ids": [offer["id"]], "operations": [operation],
                                           "filters": {"refuse_seconds": 0}})

    def offer(self) -> dict[str, Any]:
        return self.stream.wait_for("OFFERS")["offers"]["offers"][0]

    def update(self, task_id: str) -> dict[str, Any]:
        return self.stream.wait_for(lambda e: e.get("type") == "UPDATE"
                                    and e["update"]["status"]["task_id"]["value"] == task_id)["update"]["status"]

    def close(self) -> None:
        if not self.stream.ended.is_set():
            self.call("TEARDOWN")
        self.stream.close()


@pytest.fixture
def frameworks(master: Master) -> Iterator[list[Fw]]:
    opened: list[Fw] = []
    yield opened
    for fw in opened:
        fw.close()


def _open(opened: list[Fw], master: Master, identity: Identity, info: dict[str, Any]) -> Fw:
    fw = Fw(master, identity, info)
    opened.append(fw)
    return fw


def _only_error(stream: EventStream) -> str:
    """The message of a stream that carries one ERROR event and ends."""
    assert stream.status == 200, (stream.status, stream.body)
    event = stream.next()
    assert event["type"] == "ERROR", event
    assert stream.ended.wait(5), "the stream stays open after its ERROR"
    with pytest.raises(EOFError):
        stream.next(timeout=1)
    return event["error"]["message"]


# -- principals ---------------------------------------------------------------------------------

def test_a_subscribe_naming_another_principal_is_refused(master: Master) -> None:
    stream = subscribe(master, {"user": "alice", "name": "f", "principal": "other"}, DOCKYARD)
    assert stream.status == 400
    assert stream.body.decode() == ("Failed to validate scheduler::Call: Authenticated principal 'dockyard' "
                                    "does not match principal 'other' set in `FrameworkInfo`")
    assert subscribe(master, {"user": "alice", "name": "f"}, None).status == 401


def test_the_authenticated_principal_is_recorded_and_shown(master: Master, frameworks: list[Fw]) -> None:
    fw = _open(frameworks, master, DOCKYARD, {"user": "alice", "name": "recorded"})
    legacy = [f for f in state(master, OPERATOR)["frameworks"] if f["id"] == fw.id]
    assert legacy and legacy[0]["principal"] == "dockyard"
    listed = operator_call(master, OPERATOR, "GET_FRAMEWORKS").json()["get_frameworks"]["frameworks"]
    assert [f["framework_info"]["principal"] for f in listed if f["framework_info"]["id"]["value"] == fw.id] \
        == ["dockyard"]


def test_another_principal_cannot_take_a_framework_over(master: Master, frameworks: list[Fw]) -> None:
    fw = _open(frameworks, master, DOCKYARD, {"user": "alice", "name": "victim", "failover_timeout": 0})
    # The hijack: the same framework id from another principal (with or without naming one).
    for info in ({"user": "alice", "name": "thief"}, {"user": "alice", "name": "thief", "principal": "intruder"}):
        thief = subscribe(master, info, INTRUDER, framework_id=fw.id)
        assert _only_error(thief) == "Changing framework's principal is not allowed."
    claims = subscribe(master, {"user": "alice", "name": "thief", "principal": "dockyard"}, INTRUDER,
                       framework_id=fw.id)
    assert claims.status == 400 and b"Authenticated principal 'intruder'" in claims.body
    # The victim keeps its stream, its subscription and its calls.
    assert not fw.stream.ended.is_set()
    assert fw.call("REVIVE").status_code == 202
    (listed,) = [f for f in state(master, OPERATOR)["frameworks"] if f["id"] == fw.id]
    assert listed["active"] and listed["connected"] and listed["name"] == "victim"


def test_calls_from_another_principal_are_refused(master: Master, frameworks: list[Fw]) -> None:
    fw = _open(frameworks, master, DOCKYARD, {"user": "alice", "name": "mine"})
    for kind in ("TEARDOWN", "REVIVE"):
        response = fw.call(kind, identity=INTRUDER)
        assert response.status_code == 400
        assert response.text == ("Authenticated principal 'intruder' does not match principal 'dockyard' set in "
                                 "`FrameworkInfo`")
    assert fw.id in {f["id"] for f in state(master, OPERATOR)["frameworks"]}
    changed = fw.call("UPDATE_FRAMEWORK", update_framework={"framework_info": {
        "user": "alice", "name": "mine", "id": {"value": fw.id}, "principal": "dockyard2"}})
    assert changed.status_code == 400 and changed.text == "Changing framework's principal is not allowed."


# -- ACLs ------------------------------------------------------------------------------------------

def test_registration_needs_register_frameworks(master: Master, frameworks: list[Fw]) -> None:
    refused = subscribe(master, {"user": "alice", "name": "nope"}, OUTSIDER)
    assert _only_error(refused) == "Not authorized to register framework  with roles { * }"
    roles = subscribe(master, {"user": "bob", "name": "roles", "roles": ["prod", "*"],
                                   "capabilities": [{"type": "MULTI_ROLE"}]}, OTHER)
    assert _only_error(roles) == "Not authorized to register framework  with roles { *, prod }"
    assert not [f for f in state(master, OPERATOR)["frameworks"] if f["name"] in ("nope", "roles")]
    fw = _open(frameworks, master, OTHER, {"user": "bob", "name": "star"})  # role * is allowed
    update = fw.call("UPDATE_FRAMEWORK", update_framework={"framework_info": {
        "user": "bob", "name": "star", "id": {"value": fw.id}, "principal": "other", "role": "prod"}})
    assert update.status_code == 403
    assert update.text == f"Not authorized to register framework {fw.id} with roles {{ prod }}"


def test_tasks_need_run_tasks(master: Master, agent: FakeAgent, frameworks: list[Fw]) -> None:
    fw = _open(frameworks, master, DOCKYARD, {"user": "alice", "name": "runner"})
    offer = fw.offer()
    root = task("as-root", agent.id or "", command={"value": "true", "user": "root"})
    fine = task("as-alice", agent.id or "")
    assert fw.launch(offer, {"type": "LAUNCH", "launch": {"task_infos": [root, fine]}}).status_code == 202
    refused = fw.update("as-root")
    assert refused["state"] == "TASK_ERROR" and refused["reason"] == "REASON_TASK_UNAUTHORIZED"
    assert refused["message"] == f"Not authorized to launch task as-root of framework {fw.id} under user 'root'"
    run = agent.stream.wait_for("RUN_TASK")["run_task"]
    assert run["task"]["task_id"]["value"] == "as-alice"
    assert run["framework_info"]["principal"] == "dockyard"

    offer = fw.offer()
    executor = {"executor_id": {"value": "group"}, "type": "DEFAULT", "framework_id": {"value": fw.id},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}
    group = [task("g-alice", agent.id or ""), task("g-root", agent.id or "", command={"value": "true", "user": "root"})]
    assert fw.launch(offer, {"type": "LAUNCH_GROUP", "launch_group": {
        "executor": executor, "task_group": {"tasks": group}}}).status_code == 202
    for task_id in ("g-alice", "g-root"):
        status = fw.update(task_id)
        assert status["state"] == "TASK_ERROR" and status["reason"] == "REASON_TASK_GROUP_UNAUTHORIZED"
        assert status["message"] == f"Not authorized to launch task g-root of framework {fw.id} under user 'root'"
    assert not [e for e in agent.stream.drain(0.5) if e.get("type") == "RUN_TASK_GROUP"]


def test_teardown_needs_teardown_frameworks(master: Master, frameworks: list[Fw]) -> None:
    fw = _open(frameworks, master, DOCKYARD, {"user": "alice", "name": "target"})
    for path in ("/teardown", "/master/teardown"):
        denied = _post_form(master, path, f"frameworkId={fw.id}", VIEWER)
        assert denied.status_code == 403 and denied.text == "403 Forbidden."
    denied = operator_call(master, VIEWER, "TEARDOWN", teardown={"framework_id": {"value": fw.id}})
    assert denied.status_code == 403 and denied.text == "403 Forbidden."
    assert not fw.stream.ended.is_set()
    assert _post_form(master, "/teardown", "", OPERATOR).status_code == 400
    done = operator_call(master, OPERATOR, "TEARDOWN", teardown={"framework_id": {"value": fw.id}})
    assert done.status_code == 200
    assert fw.stream.ended.wait(5)
    assert fw.id not in {f["id"] for f in state(master, OPERATOR)["frameworks"]}


def _post_form(master: Master, path: str, body: str, identity: Identity) -> httpx.Response:
    return master.as_(identity).post(path, None, headers={"Content-Type": "application/x-www-form-urlencoded"},
                                     raw=body.encode())


def test_views_show_a_principal_only_what_it_may_see(master: Master, agent: FakeAgent,
                                                     frameworks: list[Fw]) -> None:
    watcher = master.as_(VIEWER).stream("/api/v1", {"type": "SUBSCRIBE"})
    assert watcher.status == 200
    assert watcher.next()["type"] == "SUBSCRIBED"
    alice = _open(frameworks, master, DOCKYARD, {"user": "alice", "name": "alice-fw"})
    bob = _open(frameworks, master, OTHER, {"user": "bob", "name": "bob-fw"})
    agent_id = agent.id or ""

    def executor(name: str, user: str | None) -> dict[str, Any]:
        command: dict[str, Any] = {"value": "run"}
        if user:
            command["user"] = user
        return {"executor_id": {"value": name}, "command": command, "framework_id": {"value": alice.id},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}

    alice_tasks = [task("seen", agent_id), task("hidden", agent_id, command={"value": "true", "user": "nobody"}),
                   {**task("by-exec", agent_id), "executor": executor("e-alice", None)},
                   {**task("by-exec-nobody", agent_id), "executor": executor("e-nobody", "nobody")}]
    for item in alice_tasks[2:]:
        del item["command"]
    assert alice.launch(alice.offer(), {"type": "LAUNCH", "launch": {"task_infos": alice_tasks}}).status_code == 202
    assert bob.launch(bob.offer(),
                      {"type": "LAUNCH", "launch": {"task_infos": [task("bobs", agent_id)]}}).status_code == 202
    everything = {"seen", "hidden", "by-exec", "by-exec-nobody", "bobs"}
    visible = {"seen", "by-exec"}

    def legacy_tasks(identity: Identity) -> set[str]:
        """This test's tasks in `/tasks` (which, as Mesos's, lists completed frameworks' too)."""
        return {t["id"] for t in master.as_(identity).get("/tasks").json()["tasks"]
                if t["framework_id"] in (alice.id, bob.id)}

    wait_for(lambda: legacy_tasks(OPERATOR) >= everything, timeout=10, what="every task launched")
    assert legacy_tasks(VIEWER) == visible

    seen = state(master, VIEWER)
    assert [f["id"] for f in seen["frameworks"]] == [alice.id]
    assert {t["id"] for t in seen["frameworks"][0]["tasks"]} == visible
    assert {e["executor_id"] for e in seen["frameworks"][0]["executors"]} == {"e-alice"}
    assert [f["id"] for f in master.as_(VIEWER).get("/frameworks").json()["frameworks"]] == [alice.id]
    assert {f["id"] for f in state(master, OPERATOR)["frameworks"]} >= {alice.id, bob.id}

    got = operator_call(master, VIEWER, "GET_STATE").json()["get_state"]
    assert [f["framework_info"]["id"]["value"] for f in got["get_frameworks"]["frameworks"]] == [alice.id]
    assert {t["task_id"]["value"] for t in got["get_tasks"]["tasks"]} == visible
    assert {e["executor_info"]["executor_id"]["value"] for e in got["get_executors"]["executors"]} == {"e-alice"}
    tasks = operator_call(master, VIEWER, "GET_TASKS").json()["get_tasks"]["tasks"]
    assert {t["task_id"]["value"] for t in tasks} == visible
    executors = operator_call(master, VIEWER, "GET_EXECUTORS").json()["get_executors"]["executors"]
    assert {e["executor_info"]["executor_id"]["value"] for e in executors} == {"e-alice"}
    listed = operator_call(master, VIEWER, "GET_FRAMEWORKS").json()["get_frameworks"]["frameworks"]
    assert [f["framework_info"]["id"]["value"] for f in listed] == [alice.id]
    operators = operator_call(master, OPERATOR, "GET_TASKS").json()["get_tasks"]["tasks"]
    assert {t["task_id"]["value"] for t in operators} >= everything

    # The viewer's event stream: what it may see, nothing of the rest.
    heard = watcher.drain(1.0)
    added = {e["task_added"]["task"]["task_id"]["value"] for e in heard if e["type"] == "TASK_ADDED"}
    frameworks_heard = {e["framework_added"]["framework"]["framework_info"]["id"]["value"]
                        for e in heard if e["type"] == "FRAMEWORK_ADDED"}
    assert added == visible, heard
    assert frameworks_heard == {alice.id}
    watcher.close()

