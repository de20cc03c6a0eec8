"""The debug API's messages and the client's reading of the master, without a cluster.

ContainerID rules and printing, wait statuses and exit codes, the ProcessIO records both
sides build, the agent's call validation, and `locate`: which tasks a session may be
launched under, and the one line the user gets for each that it may not.
"""
from __future__ import annotations

import json

import pytest

from framework.local.agent.model import container_status
from framework.local.agent.api import Refused, parse_call
from framework.local.agent.nested_io import input_error
from framework.mesos import processio
from framework.mesos.attach import AttachError, locate


def test_container_ids_follow_mesos_rules() -> None:
    nested = processio.container_id("child", processio.container_id("task", {"value": "executor"}))
    assert processio.container_key(nested) == "executor.task.child"
    assert processio.root_value(nested) == "executor"
    assert processio.invalid_container_id(nested) is None
    assert "contains invalid characters" in processio.invalid_container_id({"value": "a.b"})
    assert "contains invalid characters" in processio.invalid_container_id({"value": "a b"})
    assert "contains invalid characters" in processio.invalid_container_id({"value": "a/b"})
    assert processio.invalid_container_id({"value": ""}) == "ID must not be empty"
    assert processio.invalid_container_id({"value": ".."}) == "'..' is disallowed"
    assert "exceeds the maximum length (242)" in processio.invalid_container_id({"value": "x" * 243})
    assert processio.invalid_container_id({"value": "ok", "parent": {"value": "a.b"}}).startswith(
        "'ContainerID.parent' is invalid: ")
    deep: dict = {"value": "v"}
    for _ in range(20):
        deep = {"value": "v", "parent": deep}
    assert "nested too deeply" in processio.invalid_container_id(deep)


def test_wait_statuses_and_exit_codes() -> None:
    assert processio.wait_status(3, None) == 768
    assert processio.wait_status(None, 9) == 9
    assert [processio.exit_code(s) for s in (0, 768, 9, 15, None)] == [0, 3, 137, 143, 1]


def test_records_both_sides_build() -> None:
    fast = processio.data_frame("STDOUT", b"\x00\xffhello")
    assert fast == processio.frame(processio.data("STDOUT", b"\x00\xffhello"))
    [raw] = processio.recordio.Decoder().feed(fast)
    assert processio.decoded_data(json.loads(raw)) == ("STDOUT", b"\x00\xffhello")
    call = processio.session_call({"value": "n", "parent": {"value": "t"}}, ["ls", "-l"], tty=True, rows=30,
                                  columns=100, environment={"TERM": "xterm"})
    launch = call["launch_nested_container_session"]
    assert launch["command"] == {"value": "ls", "arguments": ["ls", "-l"], "shell": False,
                                 "environment": {"variables": [{"name": "TERM", "value": "xterm"}]}}
    assert launch["container"] == {"type": "MESOS", "tty_info": {"window_size": {"rows": 30, "columns": 100}}}
    assert parse_call(json.dumps(call).encode()) == call


def test_the_agent_validates_calls_as_mesos() -> None:
    def refused(call: dict) -> str:
        with pytest.raises(Refused) as caught:
            parse_call(json.dumps(call).encode())
        assert caught.value.status == 400
        return caught.value.message

    session = {"type": "LAUNCH_NESTED_CONTAINER_SESSION",
               "launch_nested_container_session": {"container_id": {"value": "n", "parent": {"value": "t"}},
                                                   "container": {"linux_info": {"share_cgroups": False}}}}
    assert "'share_cgroups' cannot be set to 'false' for nested container sessions" in refused(session)
    assert refused({"type": "KILL_NESTED_CONTAINER", "kill_nested_container": {
        "container_id": {"value": "n", "parent": {"value": "t"}}, "signal": "nine"}}).startswith(
        "Failed to convert JSON into Call protobuf: 'kill_nested_container.signal' is not")
    assert refused({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {}}) == (
        "Failed to validate agent::Call: Expecting 'attach_container_input.type' to be present")
    assert refused({"type": "ATTACH_CONTAINER_OUTPUT"}) == (
        "Failed to validate agent::Call: Expecting 'attach_container_output' to be present")
    assert refused({"wait_container": {"container_id": {"value": "x"}}}) == (
        "Failed to validate agent::Call: Expecting 'type' to be present")
    assert parse_call(b'{"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "x"}}}')


def test_later_input_records_are_checked_as_the_switchboard_does() -> None:
    assert input_error({"type": "CONTAINER_ID"}) == (
        "Expecting 'attach_container_input.type' to be 'PROCESS_IO' instead of: 'CONTAINER_ID'")
    assert input_error({"type": "PROCESS_IO", "process_io": {"type": "DATA", "data": {"type": "STDIN"}}}) == (
        "Expecting 'process_io.data.data' to be present")
    assert input_error({"type": "PROCESS_IO", "process_io": {"type": "CONTROL", "control": {
        "type": "TTY_INFO", "tty_info": {}}}}) == "Expecting 'tty_info.window_size' to be present"
    assert input_error(processio.input_call(processio.heartbeat(30))["attach_container_input"]) is None


def test_the_agent_names_each_statuses_container() -> None:
    """As Mesos's agent: the executor's container, unless the executor named one nested in it."""
    task = {"value": "t", "parent": {"value": "exec"}}
    assert container_status({"container_id": task}, "exec") == {"container_id": task}
    assert container_status(None, "exec") == {"container_id": {"value": "exec"}}
    assert container_status({"container_id": {"value": "t", "parent": {"value": "other"}}}, "exec") == {
        "container_id": {"value": "exec"}}
    assert container_status({"container_id": {"value": "a.b", "parent": {"value": "exec"}}}, "exec") == {
        "container_id": {"value": "exec"}}


def _state(task_state: str = "TASK_RUNNING", bucket: str = "tasks", agent: dict | None = None) -> dict:
    container = {"value": "dy-x", "parent": {"value": "exec"}}
    task = {"id": "web.1", "state": task_state, "slave_id": "S1", "statuses": [
        {"state": "TASK_STARTING", "container_status": {"container_id": container}},
        {"state": task_state, "container_status": {"container_id": container},
         "labels": [{"key": "dockyard.sandbox", "value": "tasks/web.1"}]}]}
    slaves = [agent] if agent is not None else [
        {"id": "S1", "pid": "slave(1)@10.0.0.5:5051", "hostname": "node5", "port": 5051, "active": True}]
    return {"frameworks": [{"id": "F1", bucket: [task]}], "slaves": slaves}


def test_locate_finds_the_agent_and_the_container() -> None:
    target = locate(_state(), "web.1", "https")
    assert target.agent_url == "https://10.0.0.5:5051"
    assert target.container == {"value": "dy-x", "parent": {"value": "exec"}}
    assert (target.framework_id, target.agent_id, target.sandbox) == ("F1", "S1", "tasks/web.1")


@pytest.mark.parametrize("state, said", [
    ({"frameworks": [], "slaves": []}, "no task 'web.1' on this cluster"),
    (_state("TASK_FINISHED", "completed_tasks"), "task web.1 has ended (TASK_FINISHED)"),
    (_state("TASK_UNREACHABLE", "unreachable_tasks"), "task web.1 is unreachable"),
    (_state("TASK_STAGING"), "task web.1 is TASK_STAGING, not running yet"),
    (_state(agent={"id": "S2"}), "the agent of task web.1 (S1) is not registered with the master: it was removed"),
    (_state(agent={"id": "S1", "hostname": "node5", "active": False}), "(node5) is disconnected from the master"),
])
def test_locate_says_why_a_task_cannot_be_entered(state: dict, said: str) -> None:
    with pytest.raises(AttachError) as caught:
        locate(state, "web.1")
    assert said in str(caught.value)
