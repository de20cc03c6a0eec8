"""Executor authentication on a real agent: tokens, the claims rule, and what no caller gets in.

A test cluster, secured as `up` runs one: agents authenticated, and one agent with
`--authenticate-http-executors` and every other agent realm on; executors are real processes
(dockyard's, and processes that never subscribe so that a test can play them).
Without the executor realm, a forged UPDATE with ids read from /state was taken:
every refusal below is 202 on an agent without it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from framework.security import tokens
from framework.security.bundle import Bundle
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import dockyard, http_ok, wait_for
from tests.support.security import authorization, call, executor_token

from .agent_support import executor_call, executor_info, raw_request, status_of, task_for, update_call

REALM_CHALLENGE = 'Bearer realm="mesos-agent-executor"'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                 agent_args=["--executor-registration-timeout", "20"]).start() as running:
        yield running


@pytest.fixture(scope="module")
def bundle(cluster: Cluster) -> Bundle:
    assert cluster.bundle is not None
    return cluster.bundle


@pytest.fixture
def framework(cluster: Cluster) -> Iterator[RawFramework]:
    client = RawFramework(cluster.master_api(), capabilities=["TASK_KILLING_STATE"]).start()
    yield client
    client.stop()


def idle_executor(framework: RawFramework, cluster: Cluster, bundle: Bundle, executor_id: str,
                  task_id: str) -> dict:
    """An executor process that never subscribes (the test speaks for it), with one task queued."""
    framework.launch(framework.offer(), [task_for(executor_info(executor_id), task_id)])
    return cluster.executor(executor_id, framework.framework_id)


def decline_offers(framework: RawFramework) -> None:
    """Decline, for a while, every offer this framework holds unused."""
    used = {o for e in framework.events if e["type"] == "_USED" for o in e["ids"]}
    ids = [o["id"] for e in list(framework.events) if e["type"] == "OFFERS"
           for o in e["offers"]["offers"] if o["id"]["value"] not in used]
    if ids:
        framework.call({"type": "DECLINE", "decline": {"offer_ids": ids, "filters": {"refuse_seconds": 60}}})
    framework.call({"type": "SUPPRESS", "suppress": {}})


def test_dockyard_executors_run_their_tasks_with_their_tokens(framework: RawFramework, cluster: Cluster) -> None:
    """The command executor and a warm one both authenticate every call (SUBSCRIBE, UPDATEs)."""
    framework.launch(framework.offer(), [command_task("echo hello", task_id="plain")])
    assert framework.wait_terminal("plain")["state"] == "TASK_FINISHED"
    warm = executor_info("warm-auth", argv=dockyard("executor"), env={"DOCKYARD_EXECUTOR_IDLE_TIMEOUT": "5"})
    framework.launch(framework.offer(), [task_for(warm, f"warm-{n}", f"echo {n}") for n in range(3)])
    for n in range(3):
        assert framework.wait_terminal(f"warm-{n}")["state"] == "TASK_FINISHED"
    assert [u["state"] for u in framework.updates("warm-0")][-1] == "TASK_FINISHED"


def test_forged_update_without_a_token_is_refused_and_changes_nothing(framework: RawFramework, cluster: Cluster,
                                                                     bundle: Bundle) -> None:
    """The attack: ids from /state, any uuid, TASK_FAILED. Refused; the task lives on."""
    executor = idle_executor(framework, cluster, bundle, "victim-exec", "victim")
    address = cluster.agent_address(0)
    forged = update_call(framework.framework_id or "", "victim-exec", "victim", "TASK_FAILED")
    status, headers, body = executor_call(address, forged)
    assert (status, headers.get("www-authenticate"), body) == (401, REALM_CHALLENGE, b"401 Unauthorized.")
    # Valid operator credentials are not an executor's: the realm takes tokens only.
    status, headers, _ = executor_call(address, forged, authorization=authorization(bundle.operator)["Authorization"])
    assert status == 401 and headers["www-authenticate"].startswith(REALM_CHALLENGE)
    foreign = tokens.issue(b"another agent's key, 32 bytes long!!", framework_id=executor["framework_id"],
                           executor_id="victim-exec", container_id=executor["container"])
    status, headers, _ = executor_call(address, forged, foreign)
    assert status == 401
    assert 'error="invalid_token"' in headers["www-authenticate"] and "signature" in headers["www-authenticate"]
    time.sleep(0.5)
    assert not any(u["state"] == "TASK_FAILED" for u in framework.updates("victim"))
    assert [t["id"] for t in cluster.executor("victim-exec")["queued_tasks"]] == ["victim"]


def test_a_token_acts_for_its_own_executor_and_current_container_only(cluster: Cluster, bundle: Bundle) -> None:
    """Mesos's claims rule (slave/http.cpp `verifyExecutorClaims`), with Mesos's messages."""
    first = RawFramework(cluster.master_api(), name="first").start()
    second = RawFramework(cluster.master_api(), name="second").start()
    try:
        address = cluster.agent_address(0)
        first.launch(first.offer(), [task_for(executor_info("exec-a"), "task-a"),
                                     task_for(executor_info("exec-b"), "task-b")])
        decline_offers(first)  # what is left goes to the second framework
        a = cluster.executor("exec-a", first.framework_id)
        b = cluster.executor("exec-b", first.framework_id)
        twin = idle_executor(second, cluster, bundle, "exec-a", "task-twin")  # same executor id, other framework
        token_a = executor_token(bundle, a)
        claims = json.dumps({"claims": {"cid": a["container"], "eid": "exec-a", "fid": a["framework_id"]}},
                            separators=(",", ":"))

        status, _, body = executor_call(address, update_call(b["framework_id"], "exec-b", "task-b", "TASK_FAILED"),
                                        token_a)
        assert status == 403
        assert body.decode() == (f"Authenticated principal '{claims}' does not contain an 'eid' claim with the "
                                 f"executor ID exec-b, which is set in the call")

        status, _, body = executor_call(address, update_call(twin["framework_id"], "exec-a", "task-twin",
                                                             "TASK_FAILED"), token_a)
        assert status == 403
        assert body.decode() == (f"Authenticated principal '{claims}' does not contain an 'fid' claim with the "
                                 f"framework ID {twin['framework_id']}, which is set in the call")

        stale = tokens.issue(bundle.executor_key_file.read_bytes(), framework_id=a["framework_id"],
                             executor_id="exec-a", container_id="an-earlier-container")
        status, _, body = executor_call(address, {"type": "SUBSCRIBE", "framework_id": {"value": a["framework_id"]},
                                                  "executor_id": {"value": "exec-a"}, "subscribe": {}}, stale)
        assert status == 403
        assert body.decode().endswith("does not contain a 'cid' claim with the correct active ContainerID")

        # Lookups come first, as in Mesos: an unknown framework is a 400, whoever asks.
        unknown = update_call("no-such-framework", "exec-a", "task-a", "TASK_RUNNING")
        assert executor_call(address, unknown, token_a)[:1] == (400,)
        # HEARTBEAT needs a valid token, of any executor; no claims are checked.
        heartbeat = {"type": "HEARTBEAT", "framework_id": {"value": b["framework_id"]},
                     "executor_id": {"value": "exec-b"}}
        assert executor_call(address, heartbeat, token_a)[0] == 202
        assert executor_call(address, heartbeat)[0] == 401

        # Its own token passes the claims: what stops this MESSAGE is the next check, as in Mesos.
        status, _, body = executor_call(address, {"type": "MESSAGE", "framework_id": {"value": a["framework_id"]},
                                                  "executor_id": {"value": "exec-a"}, "message": {"data": ""}},
                                        token_a)
        assert (status, body) == (403, b"Executor is not subscribed")
        assert first.updates("task-b") == [] and second.updates("task-twin") == []
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("header", [
    b"Bearer", b"Bearer ", b"Bearer a b", b"Bearer abc.def", b"Bearer \xff\xfe\xfd", b"bearer x.y.z",
    b"Basic " + b"A" * 20000, b"Bearer " + b"eyJ" * 4000, b"Negotiate x", b"Bearer ..", b"Basic \xff:\x00",
    b"Basic Og==", b"Basic " + __import__("base64").b64encode(b"operator:wrong"),
])
@pytest.mark.parametrize("method, path", [("POST", b"/api/v1/executor"), ("GET", b"/state"),
                                          ("GET", b"/files/read?path=/etc/passwd&offset=0")])
def test_hostile_authorization_headers_are_401_and_the_agent_keeps_serving(cluster: Cluster, header: bytes,
                                                                           method: str, path: bytes) -> None:
    address = cluster.agent_address(0)
    body = json.dumps({"type": "HEARTBEAT", "framework_id": {"value": "f"}, "executor_id": {"value": "e"}}).encode()
    request = (method.encode() + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: " + header + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
               + body)
    answer = raw_request(address, request)
    assert answer, "no answer at all"
    assert status_of(answer) in (400, 401, 431), answer[:200]  # never a 5xx (400/431: too long for the server)
    assert http_ok(f"http://{address}/health")


def test_tampered_and_truncated_tokens_are_401(framework: RawFramework, cluster: Cluster, bundle: Bundle) -> None:
    executor = idle_executor(framework, cluster, bundle, "tamper-exec", "tamper")
    good = executor_token(bundle, executor)
    header, payload, signature = good.split(".")
    swapped = tokens.issue(b"0" * 32, framework_id="x", executor_id="y", container_id="z").split(".")[1]
    heartbeat = {"type": "HEARTBEAT", "framework_id": {"value": executor["framework_id"]},
                 "executor_id": {"value": "tamper-exec"}}
    assert executor_call(cluster.agent_address(0), heartbeat, good)[0] == 202
    for bad in (good[:-4], f"{header}.{payload}", f"{header}.{swapped}.{signature}", f"{header}.{payload}.",
                good + "x", good.replace(".", "", 1)):
        status, headers, _ = executor_call(cluster.agent_address(0), heartbeat, bad)
        assert status == 401, bad
        assert 'error="invalid_token"' in headers["www-authenticate"]


def test_readonly_routes_want_credentials_and_health_is_open(cluster: Cluster, bundle: Bundle) -> None:
    base = cluster.agent_api(0).url
    for path in ("/state", "/monitor/statistics", "/metrics", "/metrics/snapshot", "/files/browse?path=/"):
        status, headers, body = call("GET", base + path)
        assert (status, headers.get("www-authenticate"), body) == (
            401, 'Basic realm="mesos-agent-readonly"', b"401 Unauthorized."), path
        assert call("GET", base + path, bundle.viewer)[0] != 401, path
    assert call("GET", base + "/health")[0] == 200
    # An executor's token is not an operator's credential.
    assert call("GET", base + "/state", headers={"Authorization": "Bearer x.y.z"})[0] == 401


def test_the_files_api_serves_sandboxes_to_whom_the_acls_allow(framework: RawFramework, cluster: Cluster,
                                                               bundle: Bundle) -> None:
    framework.launch(framework.offer(), [command_task("echo in the sandbox", task_id="files-task")])
    assert framework.wait_terminal("files-task")["state"] == "TASK_FINISHED"
    state = json.loads(call("GET", cluster.agent_api(0).url + "/state", bundle.viewer)[2])
    directory = next(e["directory"] for f in state["frameworks"] + state["completed_frameworks"]
                     for e in f["executors"] + f["completed_executors"] if e["id"] == "files-task")
    base = cluster.agent_api(0).url + "/files/read?offset=0&path="
    status, _, body = call("GET", base + f"{directory}/stdout", bundle.viewer)
    assert status == 200 and json.loads(body)["data"] == "in the sandbox\n"
    # The agent's checkpoints and image store are not sandboxes: refused to anyone.
    meta = str(cluster.workdir / "agent0" / "meta" / "slaves")
    assert call("GET", base + meta, bundle.operator)[0] == 403
    # The scheduler principal 'dockyard' may read sandboxes (generated ACLs); an unknown one may not log in.
    assert call("GET", base + f"{directory}/stdout", bundle.identity("dockyard"))[0] == 200


def test_agent_restart_keeps_a_recovered_executors_token_valid(tmp_path: Path) -> None:
    """Tokens are derived again, never stored: a recovered executor's calls still pass."""
    with Cluster(tmp_path, agents=1).start() as cluster:
        bundle = cluster.bundle
        assert bundle is not None
        client = RawFramework(cluster.master_api(), name="ckpt", checkpoint=True).start()
        try:
            warm = executor_info("survivor", argv=dockyard("executor"), env={"DOCKYARD_EXECUTOR_IDLE_TIMEOUT": "60"})
            client.launch(client.offer(), [task_for(warm, "long", "sleep 3; echo done")])
            client.wait_state("long", "TASK_RUNNING")
            cluster.kill_agent(0)
            cluster.start_agent(0)
            assert client.wait_terminal("long", timeout=30)["state"] == "TASK_FINISHED"
            client.launch(offer_after(client, "long"), [task_for(warm, "after", "echo after")])
            assert client.wait_terminal("after", timeout=30)["state"] == "TASK_FINISHED", client.updates("after")
            executor = cluster.executor("survivor", client.framework_id)
            assert "refused by agent" not in (Path(executor["directory"]) / "stderr").read_text()
            assert not tokens_on_disk(cluster, bundle)
        finally:
            client.stop()


def offer_after(framework: RawFramework, task_id: str) -> dict:
    """An offer made after `task_id` ended (older ones died with the agent's restart)."""
    def fresh() -> dict | None:
        events = list(framework.events)
        ended = max(i for i, e in enumerate(events) if e["type"] == "UPDATE"
                    and e["update"]["status"]["task_id"]["value"] == task_id)
        return next((e["offers"]["offers"][0] for e in events[ended:] if e["type"] == "OFFERS"), None)

    return wait_for(fresh, 20, what="an offer after the restart")  # type: ignore[return-value]


def tokens_on_disk(cluster: Cluster, bundle: Bundle) -> list[Path]:
    """Files under the agent's work dir holding any token of its executors (header of our JWTs)."""
    from .agent_support import grep_tree

    header = tokens.issue(bundle.executor_key_file.read_bytes(), framework_id="f", executor_id="e",
                          container_id="c").split(".")[0]
    return grep_tree(cluster.workdir / "agent0", header.encode())


def test_executor_tls_environment_is_not_given_without_tls(framework: RawFramework, cluster: Cluster,
                                                           bundle: Bundle) -> None:
    """A custom executor gets its token (and no TLS settings on a plain agent)."""
    framework.launch(framework.offer(), [task_for(executor_info("env-exec", "env > env.txt; exec sleep 60"),
                                                  "env-task")])
    executor = cluster.executor("env-exec", framework.framework_id)
    env_file = Path(executor["directory"]) / "env.txt"
    wait_for(lambda: env_file.exists() and "MESOS_SANDBOX" in env_file.read_text(), 10, what="env.txt")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"] == executor_token(bundle, executor)
    assert tokens.verify(bundle.executor_key_file.read_bytes(), env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"]) == {
        "cid": executor["container"], "eid": "env-exec", "fid": framework.framework_id}
    assert "LIBPROCESS_SSL_ENABLED" not in env
