"""An embedded cluster (3 agents) and a scheduler process for the services tests."""
from __future__ import annotations

from typing import Iterator

import subprocess

import pytest

from tests.support.cluster import Cluster
from tests.support.procs import dockyard
from tests.support.scheduler import SchedulerProcess


class Marathon(SchedulerProcess):
    """The shared scheduler process plus the app look-ups the services tests repeat."""

    def app(self, app_id: str) -> dict:
        return self.call("GET", f"/v2/apps/{app_id.strip('/')}")["app"]

    def wait_deployed(self, app_id: str, timeout: float = 30) -> dict:
        return self.wait_until(lambda: self.app(app_id), lambda app: not app["deployments"],
                               f"{app_id} deployed", timeout)


IMAGE = "busybox:test"


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three agents whose image source is a directory holding a busybox image the test built."""
    workdir = tmp_path_factory.mktemp("services-cluster")
    images = workdir / "images"
    images.mkdir()
    subprocess.run(dockyard("image", "build", "--busybox", "--tag", IMAGE, "--output", str(images / f"{IMAGE}.tar")),
                   check=True, capture_output=True, timeout=120)
    with Cluster(workdir, agents=3, resources="cpus:4;mem:4096;disk:10000;ports:[31000-31200]",
                 agent_args=["--docker-registry", str(images)]).start() as c:
        yield c


@pytest.fixture(scope="package")
def marathon(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Marathon]:
    with Marathon.start(cluster.master_address, tmp_path_factory.mktemp("services-scheduler")) as m:
        yield m
