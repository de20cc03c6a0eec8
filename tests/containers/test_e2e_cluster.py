"""Tasks with an image, end to end on the embedded cluster, with no registry at all.

The agent gets `--docker-registry DIR`, a directory of `docker save` archives
named `<repo>:<tag>.tar` (Mesos's local puller); the image is made by
`dockyard image build` itself. A raw v1 framework launches the tasks and sees
what a Mesos framework would see: states, messages and reasons.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import dockyard

pytestmark = pytest.mark.root

MARKER = "built into busybox:test"


def image_container(name: str = "busybox:test") -> dict:
    return {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": name}}}}


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`busybox:test.tar` (busybox-static plus a marker file), built with the CLI."""
    directory = tmp_path_factory.mktemp("archives")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "etc").mkdir()
    (root / "etc" / "dockyard-image").write_text(MARKER + "\n")
    built = subprocess.run(dockyard("image", "build", "--tag", "busybox:test", "--busybox", "--from-rootfs",
                                    str(root), "--cmd", "/bin/sh", "--output",
                                    str(directory / "busybox:test.tar")),
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return directory


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, archives: Path) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                 agent_args=["--docker-registry", str(archives)]).start() as running:
        yield running


@pytest.fixture
def framework(cluster: Cluster) -> Iterator[RawFramework]:
    client = RawFramework(cluster.master_api()).start()
    yield client
    client.stop()


def task_stdout(cluster: Cluster, task_id: str) -> str:
    """The task's stdout, found through the agent's /state (the sandbox Mesos reports)."""
    return (Path(cluster.executor(task_id, timeout=10)["directory"]) / "stdout").read_text()


def test_task_runs_inside_the_image_from_a_local_archive(framework: RawFramework, cluster: Cluster) -> None:
    script = ("cat /etc/dockyard-image; test -e /etc/os-release || echo no-os-release; echo pid=$$ init=$(cat /proc/1/comm); "
              "echo sandbox=$MESOS_SANDBOX; ls /bin/busybox")
    framework.launch(framework.offer(), [command_task(script, task_id="in-image", mem=64,
                                                      container=image_container())])
    status = framework.wait_terminal("in-image", timeout=45)
    assert status["state"] == "TASK_FINISHED", status
    out = task_stdout(cluster, "in-image")
    assert MARKER in out  # the file only the image has
    assert "no-os-release" in out  # the host's /etc (Debian) is not there
    assert "init=init" in out and "pid=1 " not in out  # PID 1 is the init (tini), the task its child
    assert "sandbox=/mnt/mesos/sandbox" in out and "/bin/busybox" in out
    # the archive was loaded into the agent's store under the name the task gave
    listed = subprocess.run(dockyard("image", "ls", "--json", "--work-dir", str(cluster.workdir / "agent0")),
                            capture_output=True, text=True, timeout=30)
    assert "docker.io/library/busybox:test" in listed.stdout


def test_image_missing_from_the_directory_fails_the_launch(framework: RawFramework) -> None:
    framework.launch(framework.offer(), [command_task("true", task_id="no-image",
                                                      container=image_container("busybox:absent"))])
    status = framework.wait_terminal("no-image", timeout=45)
    assert status["state"] == "TASK_FAILED"
    assert status.get("reason") == "REASON_CONTAINER_LAUNCH_FAILED"
    assert "busybox:absent.tar" in status["message"]


def test_oom_in_the_image_reaches_the_framework_as_memory_limitation(framework: RawFramework) -> None:
    hog = command_task("dd if=/dev/zero of=/dev/null bs=200M count=1; echo survived; sleep 30",
                       task_id="oom-hog", mem=32, container=image_container())
    framework.launch(framework.offer(), [hog])
    status = framework.wait_terminal("oom-hog", timeout=45)
    assert status["state"] == "TASK_FAILED"
    assert status["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert "Memory limit exceeded" in status["message"]
    assert status["source"] == "SOURCE_EXECUTOR"


def test_host_task_is_isolated_and_its_oom_is_reported_too(framework: RawFramework, cluster: Cluster) -> None:
    """No image: host filesystem, but its own cgroups (the agent's default --isolation), as
    Mesos's cgroups isolators run command tasks."""
    framework.launch(framework.offer(), [command_task("grep -e memory -e '^0::' /proc/self/cgroup; "
                                                      "test -e /etc/os-release && echo host-fs",
                                                      task_id="host-plain")])
    assert framework.wait_terminal("host-plain", timeout=30)["state"] == "TASK_FINISHED"
    out = task_stdout(cluster, "host-plain")
    assert "/dockyard/dy-" in out and "host-plain" in out and "host-fs" in out, out
    hog = command_task("dd if=/dev/zero of=/dev/null bs=200M count=1; echo survived; sleep 30",
                       task_id="host-hog", mem=32)
    framework.launch(framework.offer(), [hog])
    status = framework.wait_terminal("host-hog", timeout=45)
    assert (status["state"], status.get("reason")) == ("TASK_FAILED", "REASON_CONTAINER_LIMITATION_MEMORY")
    assert "Memory limit exceeded: Requested: 32MB" in status["message"]  # the whole task went, not just dd


def test_a_killed_executors_image_container_is_destroyed_at_once(framework: RawFramework,
                                                                 cluster: Cluster) -> None:
    """Issue 6: `kill -9` of the executor leaves `runc run` and the container running (they are
    in their own session); the agent destroys them, the overlay and the cgroup before it reports
    the task failed, not at its next start."""
    import os
    import signal

    from tests.support import leaks

    framework.launch(framework.offer(), [command_task("sleep 600", task_id="orphan-image", mem=64,
                                                      container=image_container())])
    framework.wait_state("orphan-image", "TASK_RUNNING", timeout=45)

    def traces() -> list[str]:
        return [i for i in leaks.leftovers([cluster.workdir / "agent0"]) if "-orphan-image-" in i]
    before = traces()
    assert any(i.startswith("mount ") for i in before) and any(i.startswith("runc ") for i in before), before
    executor = next(pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                    if _env(pid).get("MESOS_EXECUTOR_ID") == "orphan-image" and "MESOS_TASK_ID" not in _env(pid)
                    and b"executor" in _cmdline(pid))
    os.kill(executor, signal.SIGKILL)
    status = framework.wait_terminal("orphan-image", timeout=30)
    assert (status["state"], status["source"]) == ("TASK_FAILED", "SOURCE_AGENT")
    assert traces() == []


def _env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(i.split("=", 1) for i in raw.decode(errors="replace").split("\0") if "=" in i)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_an_agent_with_namespaces_pid_gives_command_tasks_their_own_pid_namespace(tmp_path: Path) -> None:
    """--isolation reaches the executors: with namespaces/pid the task is PID 2 under an init
    (dockyard-init, PID 1), and a SIGTERM still ends it promptly."""
    with Cluster(tmp_path, agents=1,
                 agent_args=["--isolation", "cgroups/cpu,cgroups/mem,namespaces/pid"]).start() as cluster:
        client = RawFramework(cluster.master_api()).start()
        try:
            client.launch(client.offer(), [command_task("echo pid=$$ init=$(cat /proc/1/comm); "
                                                        "grep -c . /proc/self/cgroup >/dev/null && echo ok",
                                                        task_id="in-pid-ns")])
            assert client.wait_terminal("in-pid-ns", timeout=30)["state"] == "TASK_FINISHED"
            out = task_stdout(cluster, "in-pid-ns")
            assert "pid=2 init=dockyard-init" in out and "ok" in out, out
            client.launch(client.offer(), [command_task("exec sleep 60", task_id="killed-in-pid-ns")])
            client.wait_state("killed-in-pid-ns", "TASK_RUNNING", timeout=30)
            client.kill("killed-in-pid-ns")
            status = client.wait_terminal("killed-in-pid-ns", timeout=30)
            assert status["state"] == "TASK_KILLED" and "SIGTERM" in status.get("message", ""), status
        finally:
            client.stop()


def test_an_agent_refuses_an_isolator_it_does_not_know(tmp_path: Path) -> None:
    """As a Mesos agent does: a bad --isolation stops it at start, naming what it knows."""
    done = subprocess.run(dockyard("agent", "--master", "127.0.0.1:1", "--work-dir", str(tmp_path / "agent"),
                                   "--isolation", "cgroups/cpu,network/port_mapping"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "unknown isolator 'network/port_mapping'" in done.stderr and "namespaces/pid" in done.stderr
