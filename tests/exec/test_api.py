"""The agent's `/api/v1` as Mesos answers it: bad requests, streams, nested containers, who may.

Every refusal is checked for Mesos's status and words (src/slave/http.cpp, validation.cpp,
io/switchboard.cpp), and after the worst of them a session still works: the agent serves on.
The last tests replay what the Mesos CLI sends for `mesos task exec -i` and check the
agent's log says who ran what and how it ended, and nothing of what went through.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from framework.mesos import processio
from framework.security import tokens
from tests.exec.conftest import start_task, task_record
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework
from tests.support.procs import wait_for
from tests.support.security import authorization

pytestmark = pytest.mark.root
AGENT_ARGS = ["--http-heartbeat-interval", "0.3"]

JSON = {"Content-Type": "application/json", "Accept": "application/json"}
STREAM_IN = {"Content-Type": "application/recordio", "Message-Content-Type": "application/json",
             "Accept": "application/json"}
STREAM_OUT = {"Content-Type": "application/json", "Accept": "application/recordio",
              "Message-Accept": "application/json"}


@pytest.fixture(scope="module")
def task(framework: RawFramework, cluster: Cluster) -> dict:
    """A busybox task, and its ContainerID as its statuses name it."""
    status = start_task(framework, "api-box", "sleep 600")
    return status["container_status"]["container_id"]


@pytest.fixture(scope="module")
def agent(cluster: Cluster) -> Iterator[httpx.Client]:
    """The agent's /api/v1 as the operator."""
    api = cluster.agent_api(0)
    with httpx.Client(base_url=api.url, headers=authorization(cluster.operator), timeout=20) as client:
        yield client


def post(agent: httpx.Client, body: Any, headers: dict[str, str] = JSON) -> httpx.Response:
    """`body`: a call (sent as JSON), bytes, or an iterator of bytes (sent as it comes, chunked)."""
    content = json.dumps(body) if isinstance(body, dict) else body
    return agent.post("/api/v1", content=content, headers=headers)


def nested(parent: dict) -> dict:
    return processio.container_id(uuid.uuid4().hex, parent)


def session(agent: httpx.Client, cid: dict, argv: list[str], tty: bool = False) -> tuple[int, bytes, list[dict]]:
    """A whole session: (status, stdout, the records)."""
    with agent.stream("POST", "/api/v1", content=json.dumps(processio.session_call(cid, argv, tty=tty)),
                      headers=STREAM_OUT) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, response.content, []
        decoder, records = processio.recordio.Decoder(), []
        for chunk in response.iter_raw():
            records += [json.loads(r) for r in decoder.feed(chunk)]
    out = b"".join(d[1] for d in map(processio.decoded_data, records) if d and d[0] == "STDOUT")
    return 200, out, records


def wait(agent: httpx.Client, cid: dict, kind: str = "WAIT_CONTAINER") -> httpx.Response:
    field = kind.lower()
    return post(agent, {"type": kind, field: {"container_id": cid}})


def frames(*messages: dict) -> bytes:
    return b"".join(processio.frame(m) for m in messages)


def test_a_quiet_session_heartbeats_and_protobuf_records_carry_raw_bytes(agent: httpx.Client, task: dict) -> None:
    status, out, records = session(agent, nested(task), ["sh", "-c", "sleep 1; echo late"])
    beats = [r for r in records if r["type"] == "CONTROL"]
    assert status == 200 and out == b"late\n" and len(beats) >= 2
    assert beats[0] == {"type": "CONTROL", "control": {"type": "HEARTBEAT",
                                                       "heartbeat": {"interval": {"nanoseconds": 300000000}}}}
    call = processio.session_call(nested(task), ["printf", "\\377\\000x"])
    with agent.stream("POST", "/api/v1", content=json.dumps(call),
                      headers={**STREAM_OUT, "Message-Accept": "application/x-protobuf"}) as response:
        assert response.headers["message-content-type"] == "application/x-protobuf"
        raw = processio.recordio.Decoder().feed(b"".join(response.iter_raw()))
    assert [processio.decoded_protobuf(r) for r in raw] == [("STDOUT", b"\xff\x00x")]


def test_a_session_and_its_exit_status(agent: httpx.Client, task: dict) -> None:
    cid = nested(task)
    status, out, records = session(agent, cid, ["sh", "-c", "echo hello; exit 3"])
    assert (status, out) == (200, b"hello\n")
    answer = wait(agent, cid)
    assert answer.status_code == 200
    assert answer.json() == {"type": "WAIT_CONTAINER",
                             "wait_container": {"exit_status": 768, "message": "Command exited with status 3"}}
    deprecated = wait(agent, cid, "WAIT_NESTED_CONTAINER").json()
    assert deprecated["wait_nested_container"]["exit_status"] == 768
    again = post(agent, processio.session_call(cid, ["true"]), STREAM_OUT)
    assert again.status_code == 202  # the id is taken


@pytest.mark.parametrize("body, headers, status, said", [
    (processio.session_call({"value": "x"}, ["true"]) | {"launch_nested_container_session": {}}, STREAM_OUT, 400,
     "Missing required fields: launch_nested_container_session.container_id"),
    (processio.session_call({"value": "x"}, ["true"]), STREAM_OUT, 400,
     "Failed to validate agent::Call: Expecting 'launch_nested_container_session.container_id.parent' to be present"),
    (processio.session_call({"value": "a.b", "parent": {"value": "p"}}, ["true"]), STREAM_OUT, 400,
     "'launch_nested_container_session.container_id' is invalid: 'ContainerID.value' 'a.b' contains invalid"),
    ({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"parent": {"value": "p"}}}}, JSON, 400,
     "Missing required fields: wait_container.container_id.value"),
    (b"{not json", JSON, 400, "Failed to parse body into JSON"),
    ({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "x"}}}, STREAM_OUT, 406,
     "Streaming response is not supported for WAIT_CONTAINER call"),
    ({"type": "GET_HEALTH"}, {"Accept": "application/json"}, 400, "Expecting 'Content-Type' to be present"),
    ({"type": "GET_HEALTH"}, {"Content-Type": "application/x-protobuf"}, 400,
     "Failed to parse body into a protobuf object"),
    ({"type": "GET_HEALTH"}, {"Content-Type": "text/plain"}, 415, "Expecting 'Content-Type' of application/json"),
    ({"type": "GET_HEALTH"}, {"Content-Type": "application/recordio"}, 400,
     "Expecting 'Message-Content-Type' to be set for streaming requests"),
    ({"type": "GET_HEALTH"}, {**JSON, "Accept": "text/html"}, 406, "Expecting 'Accept' to allow application/json"),
    ({"type": "GET_HEALTH"}, {**JSON, "Message-Accept": "application/json"}, 406,
     "Expecting 'Message-Accept' to be not set for non-streaming responses"),
    (processio.input_start({"value": "x", "parent": {"value": "p"}}), JSON, 415,
     "Expecting 'Content-Type' to be application/recordio for ATTACH_CONTAINER_INPUT call"),
    (frames({"type": "GET_HEALTH"}), STREAM_IN, 415,
     "Streaming 'Content-Type' application/recordio is not supported for GET_HEALTH call"),
    (b"", STREAM_IN, 400, "Received EOF while reading request body"),
    (b"12\n{\"type\":", STREAM_IN, 400, "ends inside a record"),
    (b"x\n{}", STREAM_IN, 400, "Failed to decode the request body: bad record length"),
    (b"%d\n" % (8 << 20), STREAM_IN, 400, "exceeds"),
    ({"type": "NO_SUCH_CALL"}, JSON, 400, "unknown type 'NO_SUCH_CALL'"),
    ({"type": "GET_STATE"}, JSON, 501, "GET_STATE is not implemented"),
])
def test_bad_requests_get_mesos_answers(agent: httpx.Client, body: Any, headers: dict, status: int,
                                        said: str) -> None:
    answer = post(agent, body, headers)
    assert (answer.status_code, said in answer.text) == (status, True), answer.text
    assert post(agent, {"type": "GET_HEALTH"}).json() == {"type": "GET_HEALTH", "get_health": {"healthy": True}}


def test_only_post(agent: httpx.Client) -> None:
    answer = agent.get("/api/v1")
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
    assert answer.text == "405 Method Not Allowed. Expecting one of { 'POST' }, but received 'GET'."


def test_input_stream_refusals(agent: httpx.Client, task: dict) -> None:
    cid = nested(task)
    with agent.stream("POST", "/api/v1", content=json.dumps(processio.session_call(cid, ["cat"])),
                      headers=STREAM_OUT) as output:
        assert output.status_code == 200
        # Data before the record that says whose input this is.
        early = post(agent, frames(processio.input_call(processio.data("STDIN", b"hi"))), STREAM_IN)
        assert (early.status_code, early.text) == (400, "Expecting 'attach_container_input.type' to be CONTAINER_ID")
        wrong = post(agent, frames(processio.input_start(cid),
                                   processio.input_call({"type": "DATA", "data": {"type": "STDOUT", "data": ""}})),
                     STREAM_IN)
        assert (wrong.status_code, wrong.text) == (400, "Expecting 'process_io.data.type' to be 'STDIN'")
        no_tty = post(agent, frames(processio.input_start(cid), processio.input_call(processio.tty_info(5, 5))),
                      STREAM_IN)
        assert no_tty.status_code == 400 and no_tty.text.startswith("Unable to set the window size:")

        def first() -> Iterator[bytes]:
            yield frames(processio.input_start(cid), processio.input_call(processio.data("STDIN", b"one\n")))
            time.sleep(1.0)  # while this stream is open...
            yield frames(processio.input_call(processio.data("STDIN", b"")))

        answers: list[httpx.Response] = []
        sender = threading.Thread(target=lambda: answers.append(post(agent, first(), STREAM_IN)))
        sender.start()
        time.sleep(0.4)
        second = post(agent, frames(processio.input_start(cid)), STREAM_IN)
        assert (second.status_code, second.text) == (409, "Multiple input connections are not allowed")
        sender.join(10)
        assert answers and answers[0].status_code == 200
        decoder, out = processio.recordio.Decoder(), b""
        for chunk in output.iter_raw():
            for raw in decoder.feed(chunk):
                data = processio.decoded_data(json.loads(raw))
                out += data[1] if data else b""
    assert out == b"one\n"  # cat read until the empty DATA record closed its stdin
    assert wait(agent, cid).json()["wait_container"]["exit_status"] == 0


def test_unknown_and_gone_containers(agent: httpx.Client, task: dict, cluster: Cluster) -> None:
    stranger = {"value": "no-such-executor-container"}
    output = post(agent, {"type": "ATTACH_CONTAINER_OUTPUT", "attach_container_output": {"container_id": stranger}},
                  STREAM_OUT)
    assert (output.status_code, output.text) == (404, "Container no-such-executor-container cannot be found")
    unknown = nested(task)
    assert wait(agent, unknown).status_code == 404
    kill = post(agent, {"type": "KILL_NESTED_CONTAINER", "kill_nested_container": {"container_id": unknown}})
    assert kill.status_code == 404 and "cannot be found (or is already killed)" in kill.text
    launched = post(agent, processio.session_call(nested({"value": "dy-gone", "parent": task["parent"]}), ["true"]),
                    STREAM_OUT)
    assert launched.status_code == 400 and "does not exist" in launched.text
    # The task's own container was launched without a TTY: it has no switchboard to attach to.
    own = post(agent, {"type": "ATTACH_CONTAINER_OUTPUT", "attach_container_output": {"container_id": task}},
               STREAM_OUT)
    assert (own.status_code, own.text) == (500, "I/O switchboard server was disabled for this container")


def test_nested_container_calls(agent: httpx.Client, task: dict, cluster: Cluster) -> None:
    """LAUNCH/WAIT/KILL/REMOVE_NESTED_CONTAINER: the older calls, output into the nested sandbox."""
    cid = nested(task)
    launch = {"type": "LAUNCH_NESTED_CONTAINER",
              "launch_nested_container": {"container_id": cid, "command": {"value": "echo to-the-file; sleep 300"}}}
    assert post(agent, launch).status_code == 200
    assert post(agent, launch).status_code == 202
    removed = post(agent, {"type": "REMOVE_NESTED_CONTAINER", "remove_nested_container": {"container_id": cid}})
    assert (removed.status_code, removed.text) == (500, "Nested container has not terminated yet")
    sandbox = Path(task_record(cluster, {"container_status": {"container_id": task}})["sandbox"])
    written = sandbox / "containers" / cid["value"] / "stdout"
    wait_for(lambda: written.exists() and written.read_text() == "to-the-file\n", timeout=10, what="its stdout")
    assert post(agent, {"type": "KILL_NESTED_CONTAINER",
                        "kill_nested_container": {"container_id": cid, "signal": 15}}).status_code == 200
    ended = wait(agent, cid, "WAIT_NESTED_CONTAINER").json()["wait_nested_container"]
    assert ended["exit_status"] == 15  # SIGTERM, as a raw wait status
    assert post(agent, {"type": "REMOVE_NESTED_CONTAINER",
                        "remove_nested_container": {"container_id": cid}}).status_code == 200
    assert wait(agent, cid).status_code == 404
    # With a TTY it has a switchboard: its output is read from the first attach on.
    tty = nested(task)
    call = {"type": "LAUNCH_NESTED_CONTAINER", "launch_nested_container": {
        "container_id": tty, "command": {"value": "sleep 0.5; echo typed-late"},
        "container": {"type": "MESOS", "tty_info": {}}}}
    assert post(agent, call).status_code == 200
    with agent.stream("POST", "/api/v1", headers=STREAM_OUT, content=json.dumps(
            {"type": "ATTACH_CONTAINER_OUTPUT", "attach_container_output": {"container_id": tty}})) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/recordio"
        assert response.headers["message-content-type"] == "application/json"
        body = b"".join(response.iter_raw())
    assert b"typed-late" in b"".join(d[1] for d in map(processio.decoded_data, _decode(body)) if d)
    assert wait(agent, tty).json()["wait_container"]["exit_status"] == 0


def _decode(body: bytes) -> list[dict]:
    return [json.loads(r) for r in processio.recordio.Decoder().feed(body)]


def test_who_may(cluster: Cluster, task: dict) -> None:
    api = cluster.agent_api(0)
    call = json.dumps(processio.session_call(nested(task), ["true"]))
    anonymous = httpx.post(f"{api.url}/api/v1", content=call, headers=STREAM_OUT)
    assert anonymous.status_code == 401
    # Mesos's `basic,jwt` combined authenticator: operators and executors both
    assert anonymous.headers["www-authenticate"] == ('Basic realm="mesos-agent-readwrite",'
                                                     'Bearer realm="mesos-agent-readwrite"')
    assert cluster.bundle is not None
    viewer = httpx.post(f"{api.url}/api/v1", content=call, headers={**STREAM_OUT, **authorization(cluster.bundle.viewer)})
    assert (viewer.status_code, viewer.text) == (403, "403 Forbidden.")
    for kind, field in (("WAIT_CONTAINER", "wait_container"), ("KILL_NESTED_CONTAINER", "kill_nested_container")):
        refused = httpx.post(f"{api.url}/api/v1", json={"type": kind, field: {"container_id": nested(task)}},
                             headers={**JSON, **authorization(cluster.bundle.viewer)})
        assert refused.status_code == 403


def test_an_executor_token_reaches_below_its_own_container_only(cluster: Cluster, framework: RawFramework,
                                                                task: dict) -> None:
    """Mesos's default executor drives nested containers with its own token. Below its own
    container it launches, waits for, kills and removes them and reads their output; under
    another executor's container, as another user, or for input (which the ACLs keep for the
    operator) it is refused; a token this agent did not sign does not authenticate."""
    assert cluster.bundle is not None
    key = cluster.bundle.executor_key_file.read_bytes()
    other = start_task(framework, "api-other", "sleep 600")["container_status"]["container_id"]
    url = f"{cluster.agent_api(0).url}/api/v1"

    def bearer(parent: dict, signing_key: bytes = key) -> dict[str, str]:
        """The token the agent gave the executor of task container `parent` (its own container)."""
        executor_container = parent["parent"]["value"]
        state = cluster.agent_api(0).get_json("/state")
        framework_id, executor_id = next((f["id"], e["id"]) for f in state["frameworks"] for e in f["executors"]
                                         if e["container"] == executor_container)
        token = tokens.issue(signing_key, framework_id=framework_id, executor_id=executor_id,
                             container_id=executor_container)
        return {"Authorization": f"Bearer {token}"}

    own = bearer(task)
    with httpx.Client(headers=own, timeout=20) as executor:
        cid = nested(task)
        with executor.stream("POST", url, content=json.dumps(processio.session_call(cid, ["echo", "from-executor"])),
                             headers=STREAM_OUT) as response:
            assert response.status_code == 200
            body = b"".join(response.iter_raw())
        assert b"".join(d[1] for d in map(processio.decoded_data, _decode(body)) if d) == b"from-executor\n"
        assert executor.post(url, json={"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {
            "container_id": cid}}, headers=JSON).json()["wait_nested_container"]["exit_status"] == 0

        background = nested(task)
        launched = executor.post(url, json={"type": "LAUNCH_NESTED_CONTAINER", "launch_nested_container": {
            "container_id": background, "command": {"value": "sleep 60"}}}, headers=JSON)
        assert launched.status_code == 200, launched.text
        assert executor.post(url, json={"type": "KILL_NESTED_CONTAINER", "kill_nested_container": {
            "container_id": background}}, headers=JSON).status_code == 200
        waited = executor.post(url, json={"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {
            "container_id": background}}, headers=JSON)
        assert waited.json()["wait_nested_container"]["exit_status"] == 9  # SIGKILL
        assert executor.post(url, json={"type": "REMOVE_NESTED_CONTAINER", "remove_nested_container": {
            "container_id": background}}, headers=JSON).status_code == 200

        refused = [
            executor.post(url, content=json.dumps(processio.session_call(nested(other), ["true"])), headers=STREAM_OUT),
            executor.post(url, json={"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {
                "container_id": nested(other)}}, headers=JSON),
            executor.post(url, json={"type": "KILL_NESTED_CONTAINER", "kill_nested_container": {
                "container_id": nested(other)}}, headers=JSON),
            executor.post(url, content=frames(processio.input_start(nested(task))), headers=STREAM_IN),
            executor.post(url, json={"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": {
                "container_id": nested(task), "command": {"value": "id", "user": "daemon"}}}, headers=STREAM_OUT),
        ]
        assert [(r.status_code, r.text) for r in refused] == [(403, "403 Forbidden.")] * len(refused)
    with httpx.Client(base_url=cluster.agent_api(0).url, headers=bearer(other), timeout=20) as neighbour:
        assert session(neighbour, nested(other), ["true"])[0] == 200  # its own token reaches its own container

    forged = httpx.post(url, content=json.dumps(processio.session_call(nested(task), ["true"])),
                        headers={**STREAM_OUT, **bearer(task, b"k" * 48)})
    assert forged.status_code == 401 and 'error="invalid_token"' in forged.headers["www-authenticate"]
    log = (cluster.workdir / "agent0.log").read_text()
    assert "launched as a session under task api-box (executor" in log
    assert f'by {{"claims":{{"cid":"{task["parent"]["value"]}"' in log


def test_what_the_mesos_cli_sends_and_what_the_agent_logs(agent: httpx.Client, cluster: Cluster,
                                                           task: dict) -> None:
    """`mesos task exec -i api-box cat`: its lookups, its headers, its probe, its input stream."""
    master = cluster.master_api()
    found = [t for t in master.get_json("/tasks?task_id=api-box")["tasks"] if t["id"] == "api-box"]
    parent = found[0]["statuses"][0]["container_status"]["container_id"]
    slave = next(s for s in master.get_json("/slaves")["slaves"] if s["id"] == found[0]["slave_id"])
    assert slave["pid"].rpartition("@")[2] == cluster.agent_address(0)
    cid = {"parent": parent, "value": str(uuid.uuid4())}
    secret = "never-in-the-log"
    call = {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": {
        "container_id": cid, "command": {"value": "cat", "arguments": ["cat"], "shell": False}}}
    with agent.stream("POST", "/api/v1", content=json.dumps(call),
                      headers={**STREAM_OUT, "Accept-Encoding": "gzip"}) as output:
        assert output.status_code == 200
        probe = post(agent, frames(processio.input_start(cid)), {**STREAM_IN, "Connection": "close"})
        assert probe.status_code == 200

        def body() -> Iterator[bytes]:
            yield frames(processio.input_start(cid))
            yield frames(processio.input_call(processio.heartbeat(30)))
            for chunk in (secret.encode(), b"\n"):
                yield frames(processio.input_call(processio.data("STDIN", chunk)))
            yield frames(processio.input_call(processio.data("STDIN", b"")))

        assert post(agent, body(), STREAM_IN).status_code == 200
        records = _decode(b"".join(output.iter_raw()))
    assert b"".join(d[1] for d in map(processio.decoded_data, records) if d) == secret.encode() + b"\n"
    assert all(r["type"] == "DATA" and r["data"]["data"] for r in records)  # no empty DATA: it aborts that CLI
    assert processio.exit_code(wait(agent, cid).json()["wait_container"]["exit_status"]) == 0
    log = (cluster.workdir / "agent0.log").read_text()
    key = processio.container_key(cid)
    assert f"nested container {key} launched as a session under task api-box" in log and "by operator: cat" in log
    assert f"nested container {key} under task api-box (launched by operator) ended" in log
    assert "Command exited with status 0" in log
    assert secret not in log
