"""The embedded agent end to end: real master, agent, executors and tasks.

The framework side is raw v1 HTTP (tests/support/framework.py), so every field a
scheduler would see is checked as it arrives.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from framework.mesos import recordio
from framework.mesos.messages import valid_uuid
from tests.support import leaks
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import dockyard, wait_for
from tests.support.security import bearer, executor_token

from .conftest import REGISTRATION_TIMEOUT


def agent_get(cluster: Cluster, path: str, **options: Any) -> httpx.Response:
    """GET from the agent as the cluster's operator."""
    with cluster.agent_api(0).client() as client:
        return client.get(path, **options)


def custom_executor(command: str, executor_id: str | None = None) -> dict:
    return {"executor_id": {"value": executor_id or f"exec-{uuid.uuid4().hex[:8]}"}, "type": "CUSTOM",
            "command": {"value": command},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}


def dockyard_executor(executor_id: str, idle_seconds: float = 30) -> dict:
    """Our own executor as a custom one: what a scheduler reuses to run many tasks warm."""
    argv = dockyard("executor")
    info = custom_executor("", executor_id)
    info["command"] = {"shell": False, "value": argv[0], "arguments": argv, "environment": {"variables": [
        {"name": "DOCKYARD_EXECUTOR_IDLE_TIMEOUT", "value": str(idle_seconds)}]}}
    return info


def executor_sandbox(cluster: Cluster, executor_id: str) -> Path:
    return Path(cluster.executor(executor_id, timeout=10)["directory"])


# -- command tasks ------------------------------------------------------------------------------

def test_command_task_exit_3_fails_and_exit_0_finishes(framework: RawFramework) -> None:
    offer = framework.offer()
    framework.launch(offer, [command_task("exit 3", task_id="exit-3"), command_task("exit 0", task_id="exit-0")])
    framework.wait_terminal("exit-3")
    framework.wait_terminal("exit-0")
    failed = framework.updates("exit-3")
    assert [u["state"] for u in failed] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert failed[-1]["message"] == "Command exited with status 3"
    assert "reason" not in failed[-1]
    for update in failed:
        assert valid_uuid(update["uuid"])
        assert update["executor_id"] == {"value": "exit-3"}
        assert update["source"] == "SOURCE_EXECUTOR"
        assert update["agent_id"] == offer["agent_id"]
    assert [u["state"] for u in framework.updates("exit-0")] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]


def test_kill_with_grace_escalates_to_sigkill(framework: RawFramework, cluster: Cluster) -> None:
    offer = framework.offer()
    task = command_task("trap 'echo got TERM' TERM; while true; do sleep 0.05; done", task_id="trapper",
                        kill_policy={"grace_period": {"nanoseconds": 10_000_000_000}})
    framework.launch(offer, [task])
    framework.wait_state("trapper", "TASK_RUNNING")
    sandbox = executor_sandbox(cluster, "trapper")
    time.sleep(0.2)  # the shell installs its trap after it starts; the marker below is what is checked
    begun = time.monotonic()
    framework.kill("trapper", offer["agent_id"], grace=1.0)  # the KILL's policy overrides the task's
    killed = framework.wait_terminal("trapper")
    elapsed = time.monotonic() - begun
    assert killed["state"] == "TASK_KILLED"
    assert killed["message"] == "Command terminated with signal SIGKILL"
    assert 1.0 <= elapsed < 8.0  # the task's own policy (10 s) was overridden by the KILL's (1 s)
    assert [u["state"] for u in framework.updates("trapper")][-2:] == ["TASK_KILLING", "TASK_KILLED"]
    wait_for(lambda: "got TERM" in (sandbox / "stdout").read_text(), 5, what="the trap to have run")


def test_task_group_shares_a_default_executor_and_fails_together(framework: RawFramework,
                                                                 cluster: Cluster) -> None:
    offer = framework.offer()
    executor = {"executor_id": {"value": "group-exec"}, "type": "DEFAULT",  # Mesos wants cpus, mem, disk
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                              {"name": "disk", "type": "SCALAR", "scalar": {"value": 10}}]}
    framework.launch_group(offer, executor, [
        command_task("echo from-a; sleep 0.3; exit 1", task_id="group-a"),
        command_task("sleep 60", task_id="group-b"),
    ])
    assert framework.wait_terminal("group-a")["state"] == "TASK_FAILED"
    assert framework.wait_terminal("group-b")["state"] == "TASK_KILLED"
    running = framework.wait_state("group-a", "TASK_RUNNING")
    assert running["executor_id"] == {"value": "group-exec"}
    labels = {label["key"]: label["value"] for label in running["labels"]["labels"]}
    assert labels["dockyard.sandbox"] == "tasks/group-a"
    sandbox = executor_sandbox(cluster, "group-exec")
    assert (sandbox / "tasks" / "group-a" / "stdout").read_text() == "from-a\n"


def test_warm_executor_runs_many_tasks_in_one_process(framework: RawFramework, cluster: Cluster) -> None:
    executor = dockyard_executor("warm-exec")
    ids = [f"warm-{i}" for i in range(6)]
    for batch in (ids[:3], ids[3:]):
        offer = framework.offer()
        tasks = []
        for task_id in batch:
            # A task for a custom executor has no `command`: ours reads it from `data`.
            task = command_task("", task_id=task_id)
            del task["command"]
            task["executor"] = executor
            task["data"] = base64.b64encode(json.dumps({"command": {"value": f"echo {task_id}"}}).encode()).decode()
            tasks.append(task)
        framework.launch(offer, tasks)
        for task_id in batch:
            assert framework.wait_terminal(task_id)["state"] == "TASK_FINISHED"
    sandbox = executor_sandbox(cluster, "warm-exec")
    for task_id in ids:
        assert (sandbox / "tasks" / task_id / "stdout").read_text() == f"{task_id}\n"
    state = agent_get(cluster, "/state").json()
    ours = [f for f in state["frameworks"] if f["id"] == framework.framework_id]
    assert len(ours) == 1 and [e["id"] for e in ours[0]["executors"]] == ["warm-exec"]
    assert {t["id"] for t in ours[0]["executors"][0]["completed_tasks"]} == set(ids)


# -- executors that go wrong ------------------------------------------------------------------------

def test_executor_that_cannot_start_fails_its_task_and_reports_failure(framework: RawFramework) -> None:
    offer = framework.offer()
    task = command_task("true", task_id="orphan")
    del task["command"]
    task["executor"] = custom_executor("/nonexistent/executor", "broken-exec")
    framework.launch(offer, [task])
    failed = framework.wait_terminal("orphan")
    assert failed["state"] == "TASK_FAILED"
    assert failed["reason"] == "REASON_EXECUTOR_TERMINATED"
    assert failed["source"] == "SOURCE_AGENT"
    assert valid_uuid(failed["uuid"])
    failure = framework.wait_event(lambda e: e["type"] == "FAILURE" and "executor_id" in e["failure"])
    assert failure["failure"]["executor_id"] == {"value": "broken-exec"}
    assert failure["failure"]["status"] == 127 << 8  # raw waitpid: sh's "command not found"


def test_executor_environment_and_registration_timeout(framework: RawFramework, cluster: Cluster) -> None:
    offer = framework.offer()
    task = command_task("true", task_id="silent")
    del task["command"]
    task["executor"] = custom_executor("env > env.txt; exec sleep 60", "silent-exec")
    framework.launch(offer, [task])
    sandbox = executor_sandbox(cluster, "silent-exec")
    env_file = sandbox / "env.txt"
    wait_for(lambda: env_file.exists() and "MESOS_SANDBOX" in env_file.read_text(), 5, what="env.txt")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    agent_id = offer["agent_id"]["value"]
    assert env["MESOS_FRAMEWORK_ID"] == framework.framework_id
    assert env["MESOS_EXECUTOR_ID"] == "silent-exec"
    assert env["MESOS_DIRECTORY"] == env["MESOS_SANDBOX"] == str(sandbox)
    assert str(sandbox).startswith(str(cluster.workdir / "agent0" / "slaves" / agent_id / "frameworks"
                                       / framework.framework_id / "executors" / "silent-exec" / "runs"))
    assert env["MESOS_SLAVE_ID"] == agent_id
    assert env["MESOS_SLAVE_PID"] == f"slave(1)@{cluster.agent_address(0)}"
    assert env["MESOS_AGENT_ENDPOINT"] == cluster.agent_address(0)
    assert env["MESOS_CHECKPOINT"] == "0"
    assert "MESOS_RECOVERY_TIMEOUT" not in env and "MESOS_SUBSCRIPTION_BACKOFF_MAX" not in env
    assert env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "5secs"
    assert env["MESOS_HTTP_COMMAND_EXECUTOR"] in ("0", "1")
    assert env["DOCKYARD_WORK_DIR"] == str(cluster.workdir / "agent0")

    # Known but never subscribed: UPDATE is 403, as on a real agent.
    status = {"task_id": {"value": "silent"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR",
              "uuid": "AAAAAAAAQAAAAAAAAAAAAA=="}
    response = post_executor_call(cluster, {"type": "UPDATE", "framework_id": {"value": framework.framework_id},
                                            "executor_id": {"value": "silent-exec"}, "update": {"status": status}})
    assert response.status_code == 403, response.text

    failed = framework.wait_terminal("silent", timeout=REGISTRATION_TIMEOUT + 10)
    assert failed["state"] == "TASK_FAILED"
    assert failed["reason"] == "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
    assert failed["source"] == "SOURCE_AGENT"


def test_checkpointing_framework_gets_recovery_environment(cluster: Cluster) -> None:
    client = RawFramework(cluster.master_api(), name="checkpointer", checkpoint=True).start()
    try:
        offer = client.offer()
        task = command_task("true", task_id="ckpt")
        del task["command"]
        task["executor"] = custom_executor("env > env.txt", "ckpt-exec")
        client.launch(offer, [task])
        assert client.wait_terminal("ckpt")["reason"] == "REASON_EXECUTOR_TERMINATED"
        env_file = executor_sandbox(cluster, "ckpt-exec") / "env.txt"
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        assert env["MESOS_CHECKPOINT"] == "1"
        assert env["MESOS_RECOVERY_TIMEOUT"] == "15mins"
        assert env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] == "2secs"
        meta = cluster.workdir / "agent0" / "meta" / "slaves" / offer["agent_id"]["value"] / "frameworks"
        assert json.loads((meta / client.framework_id / "framework.info").read_text())["checkpoint"] is True
    finally:
        client.stop()


# -- the executor API's answers ------------------------------------------------------------------------

def executor_headers(cluster: Cluster, executor: dict[str, Any]) -> dict[str, str]:
    """The token the agent would give this executor ({"framework_id", "id", "container"}): the
    agent authenticates its executor API (the signature first, the claims once the executor is
    known), so the checks under test are reached."""
    assert cluster.bundle is not None
    return bearer(executor_token(cluster.bundle, executor))


def post_executor_call(cluster: Cluster, body: dict | str, content_type: str = "application/json",
                       path: str = "/api/v1/executor", executor: dict[str, Any] | None = None) -> httpx.Response:
    """POST to the executor API with the token of `executor` (default: the one the call names)."""
    content = body if isinstance(body, str) else json.dumps(body)
    if executor is None:
        ids = {} if isinstance(body, str) else body
        executor = {"framework_id": ids.get("framework_id", {}).get("value", ""),
                    "id": ids.get("executor_id", {}).get("value", "")}
    with httpx.Client(base_url=cluster.agent_api(0).url, verify=cluster.ssl_context or True, timeout=10) as client:
        return client.post(path, content=content, headers={"Content-Type": content_type,
                                                           **executor_headers(cluster, executor)})


def test_executor_api_rejects_bad_calls_like_mesos(cluster: Cluster, framework: RawFramework) -> None:
    ids = {"framework_id": {"value": framework.framework_id}, "executor_id": {"value": "nobody"}}
    good_status = {"task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR",
                   "uuid": "AAAAAAAAQAAAAAAAAAAAAA=="}
    assert post_executor_call(cluster, {"type": "HEARTBEAT", **ids}).status_code == 202
    unknown = post_executor_call(cluster, {"type": "SUBSCRIBE", **ids, "subscribe": {}})
    assert unknown.status_code == 400
    update = post_executor_call(cluster, {"type": "UPDATE", "framework_id": {"value": "no-such-framework"},
                                          "executor_id": {"value": "e"}, "update": {"status": good_status}})
    assert (update.status_code, update.text) == (400, "Framework cannot be found")
    for broken in ({k: v for k, v in good_status.items() if k != "source"},
                   {**good_status, "state": "TASK_STAGING"},
                   {k: v for k, v in good_status.items() if k != "uuid"},
                   {**good_status, "uuid": "bm90IGEgdXVpZA=="}):
        response = post_executor_call(cluster, {"type": "UPDATE", **ids, "update": {"status": broken}},
                                      path="/slave(1)/api/v1/executor")
        assert response.status_code == 400, broken
    assert post_executor_call(cluster, {"type": "HEARTBEAT", **ids},
                              content_type="application/json; charset=utf-8").status_code == 415
    assert post_executor_call(cluster, "{not json").status_code == 400
    nobody = {"framework_id": framework.framework_id, "id": "nobody"}
    with httpx.Client(base_url=cluster.agent_api(0).url, verify=cluster.ssl_context or True) as client:
        assert client.get("/api/v1/executor", headers=executor_headers(cluster, nobody)).status_code == 405


# -- files, state, monitoring ----------------------------------------------------------------------------

def test_files_api_reads_a_task_stdout_and_refuses_outside_paths(framework: RawFramework,
                                                                 cluster: Cluster) -> None:
    framework.launch(framework.offer(), [command_task("echo hello from the sandbox", task_id="talker")])
    assert framework.wait_terminal("talker")["state"] == "TASK_FINISHED"
    sandbox = executor_sandbox(cluster, "talker")
    listing = agent_get(cluster, "/files/browse", params={"path": str(sandbox)}).json()
    names = {Path(entry["path"]).name: entry for entry in listing}
    assert {"stdout", "stderr"} <= set(names)
    assert names["stdout"]["mode"].startswith("-rw")
    content = "hello from the sandbox\n"
    assert agent_get(cluster, "/files/read", params={"path": str(sandbox / "stdout")}).json() == {
        "data": "", "offset": len(content)}
    assert agent_get(cluster, "/files/read", params={"path": str(sandbox / "stdout"), "offset": 0}).json() == {
        "data": content, "offset": 0}
    assert agent_get(cluster, "/files/read", params={"path": str(sandbox / "stdout"), "offset": 6,
                                                   "length": 4}).json() == {"data": "from", "offset": 6}
    assert agent_get(cluster, "/files/download", params={"path": str(sandbox / "stdout")}).text == content
    latest = sandbox.parent / "latest" / "stdout"  # runs/latest points at the newest run, as in Mesos
    assert agent_get(cluster, "/files/read", params={"path": str(latest), "offset": 0}).json()["data"] == content
    assert [Path(e["path"]).name for e in agent_get(cluster, "/files/browse",
                                                    params={"path": str(sandbox / "stdout")}).json()] == ["stdout"]
    assert agent_get(cluster, "/files/read", params={"path": "/etc/passwd", "offset": 0}).status_code == 403
    escape = f"{sandbox}/../../../../../../../../../../etc/passwd"
    assert agent_get(cluster, "/files/read", params={"path": escape, "offset": 0}).status_code == 403
    assert agent_get(cluster, "/files/read", params={"path": str(sandbox / "missing")}).status_code == 404


def test_state_monitor_health_and_metrics(framework: RawFramework, cluster: Cluster) -> None:
    framework.launch(framework.offer(), [command_task("sleep 30", task_id="sleeper")])
    framework.wait_state("sleeper", "TASK_RUNNING")
    assert agent_get(cluster, "/health").status_code == 200
    state = agent_get(cluster, "/state").json()
    assert state["hostname"] == "agent0"
    assert state["resources"]["cpus"] == 4
    assert state["pid"] == f"slave(1)@{cluster.agent_address(0)}"
    tasks = [t for f in state["frameworks"] for e in f["executors"] for t in e["tasks"]]
    assert any(t["id"] == "sleeper" and t["state"] == "TASK_RUNNING" for t in tasks)
    stats = agent_get(cluster, "/monitor/statistics").json()
    mine = [s for s in stats if s["executor_id"] == "sleeper"]
    assert mine and mine[0]["framework_id"] == framework.framework_id
    assert mine[0]["statistics"]["mem_rss_bytes"] > 0 and "cpus_user_time_secs" in mine[0]["statistics"]
    metrics = agent_get(cluster, "/metrics").text
    assert "dockyard_agent_tasks_running" in metrics
    framework.kill("sleeper")
    assert framework.wait_terminal("sleeper")["state"] == "TASK_KILLED"


# -- losing the agent -----------------------------------------------------------------------------------

def test_agent_killed_hard_has_its_tasks_lost(tmp_path: Path) -> None:
    with Cluster(tmp_path, agents=1, master_args=["--agent-ping-interval", "0.2",
                                                  "--agent-ping-timeout", "1.5"]).start() as cluster:
        client = RawFramework(cluster.master_api()).start()
        try:
            client.launch(client.offer(), [command_task("sleep 60", task_id="doomed")])
            client.wait_state("doomed", "TASK_RUNNING")
            cluster.kill_agent(0)
            lost = client.wait_terminal("doomed", timeout=15)
            assert lost["state"] == "TASK_LOST"
            assert lost["source"] == "SOURCE_MASTER"
            assert lost["reason"] == "REASON_AGENT_REMOVED"
            assert "uuid" not in lost
        finally:
            client.stop()


def test_restarted_agent_takes_back_checkpointed_executors(tmp_path: Path) -> None:
    with Cluster(tmp_path, agents=1).start() as cluster:
        client = RawFramework(cluster.master_api(), name="durable", checkpoint=True).start()
        try:
            offer = client.offer()
            task = command_task("", task_id="survivor")
            del task["command"]
            task["executor"] = dockyard_executor("durable-exec")
            task["data"] = base64.b64encode(json.dumps({"command": {"value": "sleep 60"}}).encode()).decode()
            client.launch(offer, [task])
            client.wait_state("survivor", "TASK_RUNNING")
            before = agent_get(cluster, "/monitor/statistics").json()
            executor_pid_tree = before[0]["statistics"]["processes"]
            assert executor_pid_tree >= 2  # the executor and its task

            cluster.kill_agent(0)
            cluster.start_agent(0)

            def resubscribed() -> bool:
                state = agent_get(cluster, "/state").json()
                return state["id"] == offer["agent_id"]["value"] and any(
                    t["id"] == "survivor" and t["state"] == "TASK_RUNNING"
                    for f in state["frameworks"] for e in f["executors"] for t in e["tasks"])

            wait_for(resubscribed, 20, what="the agent to take back its executor")
            master_tasks = cluster.state()["frameworks"][0]["tasks"]
            assert [(t["id"], t["state"], t["slave_id"]) for t in master_tasks] == [
                ("survivor", "TASK_RUNNING", offer["agent_id"]["value"])]
            client.kill("survivor", offer["agent_id"])
            assert client.wait_terminal("survivor")["state"] == "TASK_KILLED"
        finally:
            client.stop()


def test_agent_reregisters_its_tasks_with_a_restarted_master(tmp_path: Path) -> None:
    with Cluster(tmp_path, agents=1, master_args=["--agent-ping-interval", "0.3"]).start() as cluster:
        client = RawFramework(cluster.master_api(), name="patient").start()
        try:
            offer = client.offer()
            client.launch(offer, [command_task("sleep 60", task_id="steady")])
            client.wait_state("steady", "TASK_RUNNING")
        finally:
            client.stop(teardown=False)
        cluster.kill_master(0)
        cluster.start_master(0)

        def adopted() -> list:
            state = cluster.state()
            return [(t["id"], t["state"], t["slave_id"]) for f in state["frameworks"] for t in f["tasks"]]

        tasks = wait_for(adopted, 20, what="the new master to learn the agent's task")
        assert tasks == [("steady", "TASK_RUNNING", offer["agent_id"]["value"])]
        assert [s["id"] for s in cluster.state()["slaves"]] == [offer["agent_id"]["value"]]


def test_scheduler_shutdown_of_an_executor_kills_its_tasks(framework: RawFramework, cluster: Cluster) -> None:
    offer = framework.offer()
    tasks = []
    for task_id in ("long-1", "long-2"):
        task = command_task("", task_id=task_id)
        del task["command"]
        task["executor"] = dockyard_executor("doomed-exec")
        task["data"] = base64.b64encode(json.dumps({"command": {"value": "sleep 60"}}).encode()).decode()
        tasks.append(task)
    framework.launch(offer, tasks)
    framework.wait_state("long-1", "TASK_RUNNING")
    framework.wait_state("long-2", "TASK_RUNNING")
    framework.call({"type": "SHUTDOWN", "shutdown": {"executor_id": {"value": "doomed-exec"},
                                                     "agent_id": offer["agent_id"]}})
    for task_id in ("long-1", "long-2"):
        killed = framework.wait_terminal(task_id)
        assert killed["state"] == "TASK_KILLED" and killed["source"] == "SOURCE_EXECUTOR"

    def completed() -> bool:
        state = agent_get(cluster, "/state").json()
        frameworks = state["frameworks"] + state["completed_frameworks"]
        return any(e["id"] == "doomed-exec" for f in frameworks for e in f["completed_executors"])

    wait_for(completed, 10, what="the executor to end")


def processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is inside `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == str(directory) or cwd.startswith(f"{directory}/"):
                found.append(int(entry.name))
    return found


def test_executor_crash_fails_live_tasks_and_leaves_no_orphans(framework: RawFramework, cluster: Cluster) -> None:
    offer = framework.offer()
    task = command_task("", task_id="abandoned")
    del task["command"]
    task["executor"] = dockyard_executor("crash-exec")
    task["data"] = base64.b64encode(json.dumps({"command": {"value": "sleep 60"}}).encode()).decode()
    framework.launch(offer, [task])
    framework.wait_state("abandoned", "TASK_RUNNING")
    sandbox = executor_sandbox(cluster, "crash-exec")
    executor_pid = wait_for(lambda: next((pid for pid in processes_in(sandbox) if b"executor" in Path(
        f"/proc/{pid}/cmdline").read_bytes()), None), 10, what="the executor process")
    assert len(processes_in(sandbox / "tasks" / "abandoned")) >= 1
    os.kill(executor_pid, signal.SIGKILL)  # type: ignore[arg-type]
    failed = framework.wait_terminal("abandoned")
    assert (failed["state"], failed["reason"], failed["source"]) == (
        "TASK_FAILED", "REASON_EXECUTOR_TERMINATED", "SOURCE_AGENT")
    failure = framework.wait_event(lambda e: e["type"] == "FAILURE"
                                   and e["failure"].get("executor_id") == {"value": "crash-exec"})
    assert failure["failure"]["status"] == signal.SIGKILL  # raw waitpid status of a signalled process
    wait_for(lambda: not processes_in(sandbox), 10, what="the orphaned task to be killed")


def task_traces(cluster: Cluster, task_id: str) -> list[str]:
    """Cgroups, mounts, runtime state and container records of `task_id` on agent 0."""
    return [item for item in leaks.leftovers([cluster.workdir / "agent0"]) if f"-{task_id}-" in item]


def test_a_killed_executors_containers_are_destroyed_while_the_agent_runs(framework: RawFramework,
                                                                         cluster: Cluster) -> None:
    """Issue 6: as a Mesos containerizer, the agent destroys a dead executor's containers at once
    (not at its next start), and only then reports the task failed."""
    offer = framework.offer()
    task = command_task("", task_id="reaped")
    del task["command"]
    task["executor"] = dockyard_executor("reaped-exec")
    task["data"] = base64.b64encode(json.dumps({"command": {"value": "sleep 60"}}).encode()).decode()
    kept = command_task("sleep 60", task_id="bystander")
    framework.launch(offer, [task, kept])
    framework.wait_state("reaped", "TASK_RUNNING")
    framework.wait_state("bystander", "TASK_RUNNING")
    if os.geteuid() == 0:  # host tasks get a cgroup of their own (executor/containers/hostiso.py)
        assert any(item.startswith("cgroup ") for item in task_traces(cluster, "reaped"))
    sandbox = executor_sandbox(cluster, "reaped-exec")
    executor_pid = wait_for(lambda: next((pid for pid in processes_in(sandbox) if b"executor" in Path(
        f"/proc/{pid}/cmdline").read_bytes()), None), 10, what="the executor process")
    os.kill(executor_pid, signal.SIGKILL)  # type: ignore[arg-type]
    failed = framework.wait_terminal("reaped")
    assert failed["state"] == "TASK_FAILED"
    assert task_traces(cluster, "reaped") == []  # gone before the update was sent
    # The agent's other executor and its container are untouched.
    bystander = task_traces(cluster, "bystander")
    assert os.geteuid() != 0 or any(item.startswith("cgroup ") for item in bystander)
    assert [u["state"] for u in framework.updates("bystander")][-1] == "TASK_RUNNING"
    framework.kill("bystander", offer["agent_id"])
    assert framework.wait_terminal("bystander")["state"] == "TASK_KILLED"
    wait_for(lambda: task_traces(cluster, "bystander") == [], 10, what="the killed task's container removed")


def test_agent_follows_the_leading_master_through_zookeeper(tmp_path: Path, zk) -> None:  # noqa: ANN001
    zk_url = zk.url(f"/mesos-agent-{uuid.uuid4().hex[:8]}")
    with Cluster(tmp_path, agents=1, masters=2, zk_url=zk_url,
                 master_args=["--agent-ping-interval", "0.5"]).start() as cluster:
        leader = cluster.leader()
        assert leader is not None
        leading = 0 if leader.endswith(f":{cluster.master_ports[0]}") else 1
        client = RawFramework(cluster.master_api(leading), name="ha").start()
        try:
            offer = client.offer()
            client.launch(offer, [command_task("sleep 60", task_id="through-failover")])
            client.wait_state("through-failover", "TASK_RUNNING")
        finally:
            client.stop(teardown=False)
        cluster.stop_master(leading)  # a clean exit ends its ZooKeeper session: no session timeout to wait out

        def adopted_by_the_new_leader() -> list:
            state = cluster.state(1 - leading)
            return [(s["id"], t["id"], t["state"]) for s in state["slaves"]
                    for f in state["frameworks"] for t in f["tasks"]]

        assert wait_for(adopted_by_the_new_leader, 30, what="the agent to re-register with the new leader") == [
            (offer["agent_id"]["value"], "through-failover", "TASK_RUNNING")]


def test_executor_api_subscribe_update_acknowledged_like_mesos(framework: RawFramework, cluster: Cluster) -> None:
    """Play the executor by hand: SUBSCRIBE, LAUNCH arrives, UPDATE -> 202, ACKNOWLEDGED with our uuid."""
    offer = framework.offer()
    task = command_task("", task_id="by-hand")
    del task["command"]
    task["executor"] = custom_executor("exec sleep 60", "hand-exec")  # a process that never subscribes
    framework.launch(offer, [task])
    executor_sandbox(cluster, "hand-exec")
    executor = cluster.executor("hand-exec", framework.framework_id)
    ids = {"framework_id": {"value": framework.framework_id}, "executor_id": {"value": "hand-exec"}}
    with httpx.Client(timeout=httpx.Timeout(10.0, read=10.0), verify=cluster.ssl_context or True) as client:
        with client.stream("POST", f"{cluster.agent_api(0).url}/api/v1/executor",
                           content=json.dumps({"type": "SUBSCRIBE", **ids, "subscribe": {}}),
                           headers={"Content-Type": "application/json", "Accept": "application/json",
                                    **executor_headers(cluster, executor)}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"] == "application/json"
            def records():  # noqa: ANN202 - RecordIO records off the chunked body, in order
                decoder = recordio.Decoder()
                for chunk in stream.iter_raw():
                    for record in decoder.feed(chunk):
                        yield json.loads(record)

            reader = records()

            def next_event() -> dict:
                return next(reader)

            subscribed = next_event()
            assert subscribed["type"] == "SUBSCRIBED"
            assert subscribed["subscribed"]["executor_info"]["executor_id"] == {"value": "hand-exec"}
            assert subscribed["subscribed"]["framework_info"]["id"] == {"value": framework.framework_id}
            assert subscribed["subscribed"]["agent_info"]["id"] == offer["agent_id"]
            launch = next_event()
            assert launch["type"] == "LAUNCH" and launch["launch"]["task"]["task_id"] == {"value": "by-hand"}
            uuid_text = base64.b64encode(uuid.uuid4().bytes).decode()
            status = {"task_id": {"value": "by-hand"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR",
                      "uuid": uuid_text}
            answer = post_executor_call(cluster, {"type": "UPDATE", **ids, "update": {"status": status}},
                                        executor=executor)
            assert answer.status_code == 202
            acknowledged = next_event()
            assert acknowledged["type"] == "ACKNOWLEDGED"
            assert acknowledged["acknowledged"] == {"task_id": {"value": "by-hand"}, "uuid": uuid_text}
    seen = framework.wait_state("by-hand", "TASK_RUNNING")
    assert seen["uuid"] == uuid_text and seen["source"] == "SOURCE_EXECUTOR"
    assert seen["agent_id"] == offer["agent_id"] and seen["executor_id"] == {"value": "hand-exec"}
    framework.kill("by-hand", offer["agent_id"])  # our stream is closed: the agent ends the executor
    assert framework.wait_terminal("by-hand")["state"] in ("TASK_KILLED", "TASK_FAILED")
