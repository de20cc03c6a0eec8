"""A task its executor reported terminal is really gone.

The agent frees a terminal task's resources at once and the framework forgets
it; a task that in fact still ran (an executor that lied, or an UPDATE forged on
an agent without executor authentication) would run on unseen, unkillable by its
framework, and survive even the deletion of its app. Here the executor lies: the
forged UPDATE carries its own token (the agent authenticates executors). The agent makes sure: after
a short grace period, what is left of it (processes in its sandbox, its
container and cgroups) is destroyed, and a command executor that outlives its
only task is shut down. On the agent before this, every process below lived on.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import dockyard, wait_for
from tests.support.security import executor_token

from .agent_support import executor_call, executor_info, task_for, update_call

GRACE = 3.0  # the agent's default terminal_task_grace


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("archives")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "etc").mkdir()
    built = subprocess.run(dockyard("image", "build", "--tag", "busybox:test", "--busybox", "--from-rootfs",
                                    str(root), "--cmd", "/bin/sh", "--output", str(directory / "busybox:test.tar")),
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return directory


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, archives: Path) -> Iterator[Cluster]:
    """A secured agent (executor authentication on) with a directory of images."""
    with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                 agent_args=["--docker-registry", str(archives)]).start() as running:
        yield running


@pytest.fixture
def framework(cluster: Cluster) -> Iterator[RawFramework]:
    client = RawFramework(cluster.master_api()).start()
    yield client
    client.stop()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def working_in(directory: Path) -> int:
    """The host pid of the one process working in `directory` (a task in its own PID namespace
    cannot tell its host pid, so `echo $$` would name a pid of the namespace)."""
    def found() -> int | None:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and Path(f"/proc/{entry.name}/cwd").resolve() == directory \
                        and "sleep" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
            except OSError:
                continue
        return None
    return wait_for(found, 20, what=f"the process working in {directory}")  # type: ignore[return-value]


def sandbox_of(cluster: Cluster, executor_id: str) -> Path:
    return Path(cluster.executor(executor_id)["directory"])


def lie(cluster: Cluster, framework: RawFramework, executor_id: str, task_id: str, state: str) -> int:
    """The executor's own (authenticated) UPDATE saying `task_id` is `state`, when it is not: the status."""
    assert cluster.bundle is not None
    token = executor_token(cluster.bundle, cluster.executor(executor_id, framework.framework_id))
    forged = update_call(framework.framework_id or "", executor_id, task_id, state)
    return executor_call(cluster.agent_address(0), forged, token)[0]


def test_a_warm_executors_task_reported_finished_is_killed_and_its_neighbour_lives(framework: RawFramework,
                                                                                  cluster: Cluster) -> None:
    warm = executor_info("warm-liar", argv=dockyard("executor"), env={"DOCKYARD_EXECUTOR_IDLE_TIMEOUT": "60"})
    framework.launch(framework.offer(), [task_for(warm, "lied-about", "exec sleep 600"),
                                         task_for(warm, "neighbour", "exec sleep 600")])
    framework.wait_state("lied-about", "TASK_RUNNING")
    framework.wait_state("neighbour", "TASK_RUNNING")
    sandbox = sandbox_of(cluster, "warm-liar")
    victim, neighbour = working_in(sandbox / "tasks" / "lied-about"), working_in(sandbox / "tasks" / "neighbour")
    assert lie(cluster, framework, "warm-liar", "lied-about", "TASK_FINISHED") == 202
    assert framework.wait_terminal("lied-about")["state"] == "TASK_FINISHED"
    reported = time.monotonic()
    wait_for(lambda: not alive(victim), GRACE + 10, what="the task reported finished to be killed")
    assert time.monotonic() - reported >= GRACE - 0.5  # after the grace period, not at once
    time.sleep(1.0)
    assert alive(neighbour)
    assert not any(u["state"] != "TASK_RUNNING" for u in framework.updates("neighbour"))
    framework.kill("neighbour")
    assert framework.wait_terminal("neighbour")["state"] == "TASK_KILLED"


def test_a_command_executor_that_outlives_its_task_is_shut_down(framework: RawFramework, cluster: Cluster) -> None:
    framework.launch(framework.offer(), [command_task("exec sleep 600", task_id="lone-liar")])
    framework.wait_state("lone-liar", "TASK_RUNNING")
    sandbox = sandbox_of(cluster, "lone-liar")
    pid = working_in(sandbox)
    assert lie(cluster, framework, "lone-liar", "lone-liar", "TASK_FAILED") == 202
    wait_for(lambda: not alive(pid), GRACE + 15, what="the task and its executor to be ended")

    def completed() -> bool:
        state = cluster.agent_api(0).get_json("/state")
        return any(e["id"] == "lone-liar" for f in state["frameworks"] + state["completed_frameworks"]
                   for e in f["completed_executors"])

    wait_for(completed, 20, what="the command executor to have ended")


def test_a_task_in_an_image_reported_finished_has_its_container_destroyed(framework: RawFramework,
                                                                          cluster: Cluster) -> None:
    image = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox:test"}}}}
    warm = executor_info("warm-image", argv=dockyard("executor"), env={"DOCKYARD_EXECUTOR_IDLE_TIMEOUT": "60"})
    task = task_for(warm, "boxed", "sleep 600", container=image)
    task["resources"][1]["scalar"]["value"] = 64
    framework.launch(framework.offer(), [task])
    framework.wait_state("boxed", "TASK_RUNNING", timeout=60)
    sandbox = sandbox_of(cluster, "warm-image") / "tasks" / "boxed"
    containers = cluster.workdir / "agent0" / "containers"

    def records() -> list[str]:
        return [p.parent.name for p in containers.glob("*/state.json") if str(sandbox) in p.read_text()] \
            if containers.is_dir() else []

    ids = wait_for(records, 10, what="the task's container record")
    sleepers = wait_for(lambda: container_pids(containers / ids[0] / "state.json"), 10,  # type: ignore[index]
                        what="the container's processes")
    assert lie(cluster, framework, "warm-image", "boxed", "TASK_FINISHED") == 202
    wait_for(lambda: not records(), GRACE + 30, what="the container to be destroyed")
    wait_for(lambda: not any(alive(pid) for pid in sleepers), 10, what="the container's processes to be gone")


def container_pids(record_file: Path) -> list[int]:
    """Every process in a container's cgroups (its record names them)."""
    from framework import cgroups

    record = json.loads(record_file.read_text())
    group = cgroups.Cgroup(record["cgroup"]["paths"])
    pids: set[int] = set()
    for directory in group.dirs():
        for procs in directory.rglob("cgroup.procs"):
            pids.update(int(pid) for pid in procs.read_text().split())
    return sorted(pids)
