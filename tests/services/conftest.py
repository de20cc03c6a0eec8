"""An embedded cluster (3 agents) and a scheduler process for the services tests."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import subprocess

import pytest

from tests.support.cluster import Cluster
from tests.support.procs import dockyard, wait_for
from tests.support.scheduler import SchedulerProcess


class Marathon(SchedulerProcess):
    """The shared scheduler process plus the app look-ups the services tests repeat."""

    def app(self, app_id: str) -> dict:
        return self.call("GET", f"/v2/apps/{app_id.strip('/')}")["app"]

    def wait_deployed(self, app_id: str, timeout: float = 30) -> dict:
        return self.wait_until(lambda: self.app(app_id), lambda app: not app["deployments"],
                               f"{app_id} deployed", timeout)

    def sandbox(self, task_id: str) -> Path:
        """Where a task's files are (the agents share this machine)."""
        found = self.wait_until(lambda: self.call("GET", f"/dockyard/v1/tasks/{task_id}"),
                                lambda task: task["sandbox"], f"the sandbox of {task_id}")
        return Path(found["sandbox"])

    def stdout(self, task_id: str) -> str:
        """What a task printed so far."""
        out = self.sandbox(task_id) / "stdout"
        return out.read_text() if out.exists() else ""


IMAGE = "busybox:test"


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three agents whose image source is a directory holding a busybox image the test built.

    The agents share this machine's network: each offers its own slice of ports (the
    resources name none, see Cluster.agent_resources), as `dockyard up` does, so two
    instances on different agents never get the same host port."""
    workdir = tmp_path_factory.mktemp("services-cluster")
    images = workdir / "images"
    images.mkdir()
    subprocess.run(dockyard("image", "build", "--busybox", "--tag", IMAGE, "--output", str(images / f"{IMAGE}.tar")),
                   check=True, capture_output=True, timeout=120)
    with Cluster(workdir, agents=3, resources="cpus:4;mem:4096;disk:10000",
                 agent_args=["--docker-registry", str(images)]).start() as c:
        yield c


@pytest.fixture(scope="package")
def marathon(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Marathon]:
    with Marathon.start(cluster, tmp_path_factory.mktemp("services-scheduler")) as m:
        yield m


@pytest.fixture(autouse=True)
def _no_app_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the scheduler, delete what it left (also when it failed: apps and
    the groups that stay once their apps are gone) and wait until every app is gone: its
    processes would hold ports, and survive the cluster's stop."""
    yield
    if "marathon" not in request.fixturenames:
        return
    marathon = request.getfixturevalue("marathon")
    marathon.status("DELETE", "/v2/groups?force=true")  # the root group: every app and group, as in Marathon
    for app in marathon.call("GET", "/v2/apps")["apps"]:
        marathon.status("DELETE", f"/v2/apps/{app['id'].strip('/')}?force=true")
    # /v2/tasks still lists the live tasks of an app being deleted (/v2/apps no longer does)
    wait_for(lambda: not marathon.call("GET", "/v2/tasks")["tasks"], timeout=60, what="every app's tasks ended")
