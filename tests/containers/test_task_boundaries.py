"""What a task gets from its agent and executor, and what it cannot ask for.

* its environment: what Mesos gives a task (MESOS_*, PATH) plus its own, never the agent's;
* the agent's container policy: privileged containers and host-path volumes refused at the
  agent, the flags checked at agent start;
* the fetcher: a `file://` URI is opened with the task's user's permissions.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from executor.fetcher import ArtifactCache, FetchError, as_user, fetch_all
from tests.support import images
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import dockyard

IMAGE = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox:test"}}}}
AGENT_SECRET = "AWS_SECRET_ACCESS_KEY"


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("archives")
    images.busybox_image().write_docker_archive(directory / "busybox:test.tar", "busybox:test")
    return directory


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, archives: Path) -> Iterator[Cluster]:
    """An agent started with a secret and a setting of its own in its environment."""
    saved = {name: os.environ.get(name) for name in (AGENT_SECRET, "DOCKYARD_AGENT_ONLY")}
    os.environ[AGENT_SECRET] = "agent-secret-value"
    os.environ["DOCKYARD_AGENT_ONLY"] = "agent-setting-value"
    try:
        with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                     agent_args=["--docker-registry", str(archives)]).start() as running:
            yield running
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def framework(cluster: Cluster) -> Iterator[RawFramework]:
    client = RawFramework(cluster.master_api()).start()
    yield client
    client.stop()


def task_output(cluster: Cluster, task_id: str) -> str:
    return (Path(cluster.executor(task_id, timeout=10)["directory"]) / "stdout").read_text()


def names(env_output: str) -> set[str]:
    return {line.split("=", 1)[0] for line in env_output.splitlines() if "=" in line}


@pytest.mark.root
def test_tasks_get_what_mesos_gives_them_and_their_own_env_only(framework: RawFramework, cluster: Cluster) -> None:
    own = {"environment": {"variables": [{"name": "FROM_TASK", "value": "mine"}]}}
    host = command_task("env", task_id="env-host")
    host["command"].update(own)
    image = command_task("env", task_id="env-image", mem=64, container=IMAGE)
    image["command"].update(own)
    framework.launch(framework.offer(), [host, image])
    for task_id in ("env-host", "env-image"):
        assert framework.wait_terminal(task_id, timeout=60)["state"] == "TASK_FINISHED"
        out = task_output(cluster, task_id)
        seen = names(out)
        assert "agent-secret-value" not in out and "agent-setting-value" not in out, out
        assert not {name for name in seen if name.startswith(("DOCKYARD_", "LIBPROCESS_SSL"))}, seen
        assert {"MESOS_TASK_ID", "MESOS_SANDBOX", "MESOS_FRAMEWORK_ID", "FROM_TASK", "PATH"} <= seen
        shell = {"PWD", "SHLVL", "OLDPWD", "_", "HOME"}  # what the shell (or the image, for HOME) adds
        assert seen - shell <= {n for n in seen if n.startswith("MESOS_")} | {"PATH", "FROM_TASK", "LIBPROCESS_IP",
                                                                            "LIBPROCESS_PORT"}, seen
    assert "FROM_TASK=mine" in task_output(cluster, "env-host")


def test_an_executor_takes_only_the_agents_settings_from_its_environment(tmp_path: Path) -> None:
    """The agent's own variables stop at the executor too, but for its settings and what
    downloads need; an inherited token never passes."""
    from framework.local.agent.sandbox import AgentAddress, executor_environment

    env = executor_environment(
        framework_id="F", executor_id="E", directory=tmp_path, agent_id="S", address=AgentAddress("127.0.0.1", 5051),
        checkpoint=False, shutdown_grace=5.0, work_dir=tmp_path, command_env={"FROM_EXECUTOR_INFO": "1"},
        inherit={AGENT_SECRET: "x", "HOME": "/root", "DOCKYARD_ISOLATION": "cgroups/cpu", "PATH": "/usr/bin",
                 "https_proxy": "http://proxy:3128", "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": "outer",
                 "MESOS_RECOVERY_TIMEOUT": "1mins"})
    assert {AGENT_SECRET, "HOME", "MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "MESOS_RECOVERY_TIMEOUT"}.isdisjoint(env)
    assert env["DOCKYARD_ISOLATION"] == "cgroups/cpu" and env["PATH"] == "/usr/bin"
    assert env["https_proxy"] == "http://proxy:3128" and env["FROM_EXECUTOR_INFO"] == "1"
    assert env["MESOS_FRAMEWORK_ID"] == "F"


@pytest.mark.root
def test_the_agent_refuses_privileged_containers_and_host_paths(framework: RawFramework, tmp_path: Path) -> None:
    privileged = command_task("true", task_id="wants-privileged", mem=64,
                              container={**IMAGE, "docker": {"image": "busybox:test", "privileged": True}})
    mounted = command_task("true", task_id="wants-etc", mem=64,
                           container={**IMAGE, "volumes": [{"container_path": "/host", "host_path": "/etc",
                                                            "mode": "RO"}]})
    framework.launch(framework.offer(), [privileged, mounted])
    for task_id, words in (("wants-privileged", "--allow-privileged"), ("wants-etc", "may never be mounted")):
        status = framework.wait_terminal(task_id, timeout=30)
        assert (status["state"], status.get("reason"), status["source"]) == (
            "TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED", "SOURCE_AGENT"), status
        assert words in status["message"], status


@pytest.mark.parametrize("flags, words", [
    (["--allowed-host-paths", "/etc"], "may never be given to a container"),
    (["--allowed-host-paths", "relative/dir"], "is not an absolute path"),
    (["--seccomp-profile", "/no/such/profile.json"], "seccomp profile /no/such/profile.json"),
    (["--isolation", "cgroups/cpu,namespaces/users"], "unknown isolator"),
])
def test_the_agent_refuses_a_policy_it_cannot_keep(tmp_path: Path, flags: list[str], words: str) -> None:
    done = subprocess.run(dockyard("agent", "--master", "127.0.0.1:1", "--work-dir", str(tmp_path / "agent"),
                                   *flags), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert words in done.stderr, done.stderr


def test_the_agent_refuses_its_own_work_dir_as_a_host_path(tmp_path: Path) -> None:
    done = subprocess.run(dockyard("agent", "--master", "127.0.0.1:1", "--work-dir", str(tmp_path / "agent"),
                                   "--allowed-host-paths", str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "work dir" in done.stderr, done


# -- the fetcher ---------------------------------------------------------------------------------

@pytest.fixture
def private_file(tmp_path: Path) -> Path:
    """A file only root may read, as the host's /etc/shadow."""
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    secret = directory / "secret.txt"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    return secret


@pytest.mark.root
def test_a_local_uri_is_opened_as_the_tasks_user(private_file: Path, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="Permission denied"):
        fetch_all([{"value": private_file.as_uri()}], tmp_path / "nobody", user="nobody")
    assert not (tmp_path / "nobody" / "secret.txt").exists()
    [fetched] = fetch_all([{"value": private_file.as_uri()}], tmp_path / "root", user="root")
    assert fetched.read_text() == "root only\n"
    shared = Path(tempfile.mkdtemp(prefix="dockyard-fetch-", dir="/var/tmp"))  # pytest's tmp is root's only
    try:
        shared.chmod(0o755)
        public = shared / "public.txt"
        public.write_text("anyone\n")
        [fetched] = fetch_all([{"value": str(public)}], tmp_path / "nobody-public", user="nobody")
        assert fetched.read_text() == "anyone\n"
        with pytest.raises(FetchError, match="does not exist on this host"):
            fetch_all([{"value": str(public)}], tmp_path / "ghost", user="no-such-user-here")
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    # the thread is root again: it reads what only root may
    assert private_file.read_text() == "root only\n"


@pytest.mark.root
def test_the_cache_keeps_each_users_entries_apart(private_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    [mine] = fetch_all([{"value": private_file.as_uri(), "cache": True}], tmp_path / "a", cache, user="root")
    assert mine.read_text() == "root only\n"
    with pytest.raises(FetchError, match="Permission denied"):
        fetch_all([{"value": private_file.as_uri(), "cache": True}], tmp_path / "b", cache, user="nobody")
    entries = ArtifactCache(cache, 1 << 20)
    assert entries.entry(private_file.as_uri(), "secret.txt", "root") != entries.entry(private_file.as_uri(),
                                                                                      "secret.txt", "nobody")


@pytest.mark.root
def test_switching_user_changes_the_fetching_thread_only(private_file: Path) -> None:
    inside, outside = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def fetcher() -> None:
        with as_user("nobody"):
            try:
                private_file.read_text()
                seen["nobody"] = "read"
            except PermissionError:
                seen["nobody"] = "denied"
            inside.set()
            outside.wait(10)

    thread = threading.Thread(target=fetcher)
    thread.start()
    assert inside.wait(10)
    seen["root"] = private_file.read_text()  # another thread, meanwhile
    outside.set()
    thread.join()
    assert seen == {"nobody": "denied", "root": "root only\n"}


def test_a_fifo_or_device_is_not_fetched(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    started = time.monotonic()
    with pytest.raises(FetchError, match="not a regular file"):
        fetch_all([{"value": str(tmp_path / "fifo")}], tmp_path / "sandbox")
    with pytest.raises(FetchError, match="not a regular file"):
        fetch_all([{"value": "file:///dev/zero"}], tmp_path / "sandbox")
    assert time.monotonic() - started < 5
