"""A cluster for the exec tests: an agent that loads busybox images from a directory, a raw
framework, and the operator's client settings (what `dockyard up` writes for the CLI)."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from framework import cgroups
from framework.local.agent import checkpoint
from framework.mesos import attach
from framework.security.client import ClientConfig
from tests.support.procs import dockyard
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support import images

IMAGE_MARKER = "NAME=dockyard-exec-test-image"
ROOT = Path(__file__).resolve().parents[2]


def image_container(name: str = "busybox:exec", runtime: str | None = None) -> dict:
    """A ContainerInfo with image `name`, run by `runtime` (dockyard's extension) when given."""
    container: dict = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": name}}}}
    if runtime:
        container["dockyard"] = {"runtime": runtime}
    return container


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`busybox:exec.tar`: busybox-static with an /etc/os-release of its own."""
    directory = tmp_path_factory.mktemp("archives")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text(IMAGE_MARKER + "\n")
    images.cli_archive(directory, "busybox:exec", root)
    return directory


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            archives: Path) -> Iterator[Cluster]:
    """One agent; a test module's `AGENT_ARGS` are added to its flags."""
    extra = list(getattr(request.module, "AGENT_ARGS", []))
    with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                 agent_args=["--docker-registry", str(archives), *extra]).start() as running:
        yield running


@pytest.fixture(scope="module")
def framework(cluster: Cluster) -> Iterator[RawFramework]:
    client = RawFramework(cluster.master_api()).start()
    yield client
    client.stop()


@pytest.fixture(scope="module")
def settings(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> ClientConfig:
    """The operator's client settings, also as a file (for the client run as a process)."""
    operator = cluster.operator
    assert operator is not None
    document = {"master": cluster.master_url, "principal": operator.principal, "secret": operator.secret}
    path = tmp_path_factory.mktemp("client") / "client.json"
    path.write_text(json.dumps(document))
    return ClientConfig(**document, source=str(path))


def start_task(framework: RawFramework, task_id: str, command: str, *, mem: float = 64.0, image: bool = True,
               user: str | None = None, env: dict[str, str] | None = None, runtime: str | None = None) -> dict:
    """Launch a task (busybox, or on the host) and wait until it runs; its TASK_RUNNING status."""
    task = command_task(command, task_id=task_id, mem=mem,
                        **({"container": image_container(runtime=runtime)} if image else {}))
    if user:
        task["command"]["user"] = user
    if env:
        task["command"]["environment"] = {"variables": [{"name": k, "value": v} for k, v in env.items()]}
    framework.launch(framework.offer(), [task])
    return framework.wait_state(task_id, "TASK_RUNNING", timeout=60)


@dataclass
class Ran:
    code: int
    stdout: bytes
    stderr: bytes


def run(settings: ClientConfig, task_id: str, *argv: str, stdin: bytes | None = None) -> Ran:
    """`exec` through the client library, in this process."""
    out, err = io.BytesIO(), io.BytesIO()
    code = attach.exec_task(settings, task_id, list(argv), stdout=out, stderr=err)
    return Ran(code, out.getvalue(), err.getvalue())


def client_argv(settings: ClientConfig, *arguments: str) -> list[str]:
    """`dockyard task exec|attach ...` as a user types it: `arguments` start with `exec` or `attach`."""
    what, *rest = arguments
    return dockyard("task", what, "--config", str(settings.source), *rest)


def task_record(cluster: Cluster, status: dict) -> dict:
    """The executor's record of the task's container, named by its status's ContainerID."""
    value = status["container_status"]["container_id"]["value"]
    record = checkpoint.read_json(cluster.workdir / "agent0" / "containers" / value / "state.json")
    assert isinstance(record, dict), f"no container record for {value}"
    return record


def nested_groups(record: dict) -> list[Path]:
    """The nested containers' cgroups below a task's (in the hierarchy that counts processes)."""
    group = cgroups.Cgroup(record["cgroup"]["paths"])
    controller = "" if group.layout.version == 2 else "pids"
    top = group.dir(controller)
    return [p for p in top.rglob("nested-*") if p.is_dir()] if top.exists() else []
