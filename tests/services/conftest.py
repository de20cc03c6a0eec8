"""An embedded cluster (3 agents) and a scheduler process for the services tests."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.procs import Process, dockyard, free_port, http_ok, wait_for


@dataclass
class Marathon:
    url: str
    process: Process

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload.strip() else None

    def status(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            return 200, self.call(method, path, body)
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, (json.loads(raw) if raw.strip() else None)

    def app(self, app_id: str) -> dict:
        return self.call("GET", f"/v2/apps/{app_id.strip('/')}")["app"]

    def wait_deployed(self, app_id: str, timeout: float = 30) -> dict:
        def done() -> dict | None:
            app = self.app(app_id)
            return app if not app["deployments"] else None
        try:
            return wait_for(done, timeout=timeout, what=f"{app_id} deployed")
        except TimeoutError:
            raise AssertionError(f"{self.app(app_id)}\n{self.process.output()[-4000:]}") from None


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("services-cluster")
    with Cluster(workdir, agents=3, resources="cpus:4;mem:4096;disk:10000;ports:[31000-31200]").start() as c:
        yield c


@pytest.fixture(scope="package")
def marathon(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Marathon]:
    workdir = tmp_path_factory.mktemp("services-scheduler")
    port = free_port()
    process = Process(dockyard("scheduler", "--master", cluster.master_address, "--port", str(port),
                               "--data-dir", str(workdir / "data")), workdir / "scheduler.log")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=30, what="scheduler subscribed")
        yield Marathon(f"http://127.0.0.1:{port}", process)
    finally:
        process.stop()
