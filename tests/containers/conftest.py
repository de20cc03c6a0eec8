"""Fixtures for the container tests: a real registry, busybox images, launchers that clean up."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from executor.containers.launcher import Container, ContainerLauncher
from executor.images.store import ImageStore
from executor.launcher import LaunchSpec
from framework import cgroups
from tests.support import images, registry
from tests.support.procs import wait_for

BUSYBOX_CONFIG = {"Env": ["PATH=/bin", "FROM_IMAGE=yes", "OVERRIDE=image"], "WorkingDir": "/tmp",
                  "Cmd": ["/bin/sh"]}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/containers" in str(item.fspath) and os.geteuid() != 0 and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason="needs root"))


@pytest.fixture(scope="session")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry.Registry]:
    """An anonymous docker-registry on loopback for the whole session."""
    if not registry.available() or shutil.which("skopeo") is None:
        pytest.fail("docker-registry and skopeo are needed: run the tests through `make test`")
    server = registry.Registry(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def busybox(reg: registry.Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`test/busybox:1` in the registry: busybox plus a marker layer."""
    image = images.busybox_image([[images.file("etc/marker", "layer two\n")]], config=BUSYBOX_CONFIG)
    layout = image.write_oci_layout(tmp_path_factory.mktemp("layout") / "busybox", "1")
    ref = f"{reg.host}/test/busybox:1"
    images.skopeo_copy(f"oci:{layout}:1", f"docker://{ref}")
    return ref


@pytest.fixture(scope="session")
def shared_work(tmp_path_factory: pytest.TempPathFactory, busybox: str) -> Path:
    """A work dir whose store already holds busybox (container tests share it)."""
    work = tmp_path_factory.mktemp("work")
    ImageStore(work).pull(busybox)
    return work


class Launches:
    """Start containers for a test and destroy every one of them afterwards."""

    def __init__(self, work_dir: Path, base: Path, image: str) -> None:
        self.work_dir = work_dir
        self.base = base
        self.image = image
        self.started: list[Container] = []
        self.count = 0

    def spec(self, command: str | dict, resources: dict | None = None, container: dict | None = None,
             env: dict | None = None, name: str = "task") -> LaunchSpec:
        self.count += 1
        sandbox = self.base / f"{name}-{self.count}"
        sandbox.mkdir(parents=True)
        cmd = {"value": command} if isinstance(command, str) else command
        info = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": self.image}}}}
        info.update(container or {})
        return LaunchSpec(task_id=f"{name}-{self.count}", command=cmd, env=env or {}, sandbox=sandbox,
                          resources=resources or {"cpus": 1, "mem": 128}, container=info, work_dir=self.work_dir)

    def launch(self, command: str | dict, **kwargs) -> Container:
        runtime = kwargs.pop("runtime", None)
        container = ContainerLauncher(runtime).launch(self.spec(command, **kwargs))
        self.started.append(container)
        return container

    def cleanup(self) -> None:
        for container in self.started:
            container.destroy()


@pytest.fixture
def launches(shared_work: Path, tmp_path: Path, busybox: str) -> Iterator[Launches]:
    helper = Launches(shared_work, tmp_path, busybox)
    yield helper
    helper.cleanup()


def stdout_of(container: Container) -> str:
    return (Path(container.spec.sandbox) / "stdout").read_text()


def wait_output(container: Container, text: str, timeout: float = 20) -> str:
    wait_for(lambda: text in stdout_of(container), timeout=timeout, what=f"{text!r} in the task's stdout")
    return stdout_of(container)


def traces(work_dir: Path, container_id: str) -> list[str]:
    """Everything a container may leave on the host; empty when it is fully cleaned up."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        found += [line.split()[4] for line in handle if container_id in line]
    for subtree in cgroups.find_subtrees():
        found += [str(p) for p in subtree.glob(f"{container_id}*")]
    found += [str(p) for p in (work_dir / "runtime").glob(f"*/{container_id}")]
    found += [str(p) for p in (work_dir / "containers").glob(f"{container_id}*")]
    return found
