"""Mesos's answers where a real agent is involved: the executor API's checks, draining running
tasks, and GPUs (GPU_RESOURCES offers, each task held to its own GPUs).

One master and one agent for the module; the agent has two fake GPUs (`--resources gpus:2`
and device numbers in DOCKYARD_GPU_DEVICES, docs/agent.md "GPUs"), so the devices cgroup a
task gets can be read without a GPU in the machine.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from framework.mesos.resources import Resources
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess
from tests.support.security import bearer, executor_token

FAKE_GPUS = "0=240:0,1=240:1"  # major 240: reserved for local use, no driver behind it
GPU_AWARE = ["TASK_KILLING_STATE", "GPU_RESOURCES"]
DEVICES_LIST = ("cat /sys/fs/cgroup/devices$(awk -F: '$2 == \"devices\" {print $3}' /proc/self/cgroup)"
                "/devices.list")


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKYARD_GPU_DEVICES", FAKE_GPUS)  # the agent passes DOCKYARD_* on to its executors
        cluster = Cluster(Path(tmp_path_factory.mktemp("gpu-cluster")), agents=1,
                          resources="cpus:4;mem:4096;disk:10000;gpus:2")
        with cluster.start() as running:
            yield running


@pytest.fixture
def framework(gpu_cluster: Cluster) -> Iterator[RawFramework]:
    client = RawFramework(gpu_cluster.master_api(), capabilities=GPU_AWARE).start()
    yield client
    client.stop()


def _executor_call(cluster: Cluster, body: Any, *, content_type: str = "application/json",
                   accept: str = "application/json", raw: bytes | None = None) -> httpx.Response:
    ids = body if isinstance(body, dict) else {}
    assert cluster.bundle is not None
    token = executor_token(cluster.bundle, {"framework_id": ids.get("framework_id", {}).get("value", "f"),
                                            "id": ids.get("executor_id", {}).get("value", "e")})
    with httpx.Client(base_url=cluster.agent_api(0).url, verify=cluster.ssl_context or True, timeout=10) as client:
        return client.post("/api/v1/executor", content=raw if raw is not None else json.dumps(body),
                           headers={"Content-Type": content_type, "Accept": accept, **bearer(token)})


def _stdout(cluster: Cluster, task_id: str) -> str:
    directory = Path(cluster.executor(task_id)["directory"])
    return wait_for(lambda: (directory / "stdout").read_text() if "END" in (directory / "stdout").read_text()
                    else None, timeout=20, what=f"{task_id}'s output")


# -------------------------------------------------------------------- executor API
def test_executor_api_validates_calls_before_any_lookup(gpu_cluster: Cluster) -> None:
    ids = {"framework_id": {"value": "no-such-framework"}, "executor_id": {"value": "no-such-executor"}}
    status = {"task_id": {"value": "t"}, "state": "TASK_RUNNING", "uuid": "AAAAAAAAQAAAAAAAAAAAAA=="}
    # src/slave/http.cpp `Http::executor`, src/common/validation.cpp `validateExecutorCall`
    answers = {
        "Failed to convert JSON into Call protobuf: Missing required fields: executor_id":
            {"type": "HEARTBEAT", "framework_id": {"value": "f"}},
        "Failed to validate Executor::Call: Expecting 'type' to be present": {"type": "NO_SUCH_CALL", **ids},
        "Failed to validate Executor::Call: Expecting 'subscribe' to be present": {"type": "SUBSCRIBE", **ids},
        "Failed to validate Executor::Call: Received Call from executor no-such-executor of framework "
        "no-such-framework with invalid source, expecting 'SOURCE_EXECUTOR'":
            {"type": "UPDATE", **ids, "update": {"status": status}},
        "Failed to validate Executor::Call: Received TASK_STAGING from executor no-such-executor of framework "
        "no-such-framework which is not allowed":
            {"type": "UPDATE", **ids, "update": {"status": {**status, "source": "SOURCE_EXECUTOR",
                                                            "state": "TASK_STAGING"}}},
        "Framework cannot be found": {"type": "UNKNOWN", **ids},  # valid: only then looked up
    }
    for message, body in answers.items():
        answer = _executor_call(gpu_cluster, body, accept="text/plain")  # `Accept` counts for SUBSCRIBE only
        assert (answer.status_code, answer.text) == (400, message)
    refused = _executor_call(gpu_cluster, {"type": "SUBSCRIBE", **ids, "subscribe": {}}, accept="text/plain")
    assert (refused.status_code, refused.text) == (
        406, "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'")
    assert _executor_call(gpu_cluster, {"type": "HEARTBEAT", **ids}).status_code == 202
    media = _executor_call(gpu_cluster, {}, content_type="text/plain")
    assert (media.status_code, media.text) == (415, "Expecting 'Content-Type' of application/json or "
                                                    "application/x-protobuf")
    proto = _executor_call(gpu_cluster, {}, content_type="application/x-protobuf", raw=b"\x08\x01")
    assert (proto.status_code, proto.text) == (400, "Failed to parse body into Call protobuf")


# -------------------------------------------------------------------- draining a real agent
def _operator(cluster: Cluster, kind: str, **payload: Any) -> httpx.Response:
    with cluster.master_api().client() as client:
        return client.post("/api/v1", content=json.dumps({"type": kind, kind.lower(): payload}),
                           headers={"Content-Type": "application/json"})


def test_drain_kills_a_task_that_ignores_sigterm_after_the_bounded_grace(gpu_cluster: Cluster,
                                                                        framework: RawFramework) -> None:
    stubborn = command_task("trap '' TERM; sleep 600", task_id="stubborn",
                            kill_policy={"grace_period": {"nanoseconds": 60_000_000_000}})
    offer = framework.offer()
    framework.launch(offer, [stubborn])
    framework.wait_state("stubborn", "TASK_RUNNING")
    agent_id = offer["agent_id"]["value"]
    started = time.monotonic()
    assert _operator(gpu_cluster, "DRAIN_AGENT", agent_id={"value": agent_id},
                     max_grace_period={"seconds": 1}).status_code == 200
    try:
        killed = framework.wait_state("stubborn", "TASK_KILLED", timeout=30)
        assert time.monotonic() - started < 20  # its own grace was 60 s: the drain's bound held
        assert killed["reason"] == "REASON_AGENT_DRAINING"
        killing = [u for u in framework.updates("stubborn") if u["state"] == "TASK_KILLING"]
        assert killing and killing[0]["reason"] == "REASON_AGENT_DRAINING"

        def drained() -> bool:
            agents = gpu_cluster.get_json("/master/state")["slaves"]
            return agents[0].get("drain_info", {}).get("state") == "DRAINED"
        wait_for(drained, timeout=20, what="the agent DRAINED")
    finally:
        wait_for(lambda: _operator(gpu_cluster, "REACTIVATE_AGENT", agent_id={"value": agent_id}).status_code == 200,
                 timeout=30, what="the agent reactivated")
    assert framework.offer()["agent_id"]["value"] == agent_id


# -------------------------------------------------------------------- GPUs
def test_each_task_gets_only_its_own_gpus(gpu_cluster: Cluster, framework: RawFramework) -> None:
    def gpu_task(task_id: str, gpus: int, then: str) -> dict[str, Any]:
        task = command_task(f"echo VISIBLE=${{NVIDIA_VISIBLE_DEVICES:-none}}; {DEVICES_LIST}; echo END; {then}",
                            task_id=task_id)
        if gpus:
            task["resources"].append({"name": "gpus", "type": "SCALAR", "scalar": {"value": gpus}})
        return task

    offer = framework.offer()
    assert Resources(offer["resources"]).scalar("gpus") == 2.0
    framework.launch(offer, [gpu_task("first-gpu", 1, "sleep 60")])
    framework.wait_state("first-gpu", "TASK_RUNNING")
    first = _stdout(gpu_cluster, "first-gpu")
    framework.launch(framework.offer(), [gpu_task("second-gpu", 1, "exit 0"), gpu_task("no-gpu", 0, "exit 0")])
    second, plain = _stdout(gpu_cluster, "second-gpu"), _stdout(gpu_cluster, "no-gpu")
    framework.kill("first-gpu")
    # src/slave/containerizer/mesos/isolators/gpu/: the task's GPUs are allowed, the agent's others are not
    assert "VISIBLE=0" in first and "c 240:0 rwm" in first and "c 240:1" not in first
    assert "VISIBLE=1" in second and "c 240:1 rwm" in second and "c 240:0" not in second
    assert "VISIBLE=none" in plain and "240:" not in plain
    assert "c 1:3 rwm" in plain  # /dev/null and the rest of Mesos's default whitelist stay open


def test_the_dockyard_scheduler_declares_gpu_resources(gpu_cluster: Cluster, tmp_path: Path) -> None:
    with SchedulerProcess.start(gpu_cluster, tmp_path / "scheduler"):
        frameworks = gpu_cluster.get_json("/master/frameworks")["frameworks"]
        dockyard = next(f for f in frameworks if f["name"] == "dockyard")
        # so it is offered GPU agents, and Marathon's and Metronome's `gpus` can be placed on them
        assert "GPU_RESOURCES" in dockyard["capabilities"]
