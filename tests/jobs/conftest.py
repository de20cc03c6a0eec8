"""One embedded cluster and one scheduler process for the job tests (real processes)."""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.procs import Process, dockyard, free_port, http_ok, wait_for


@dataclass
class Scheduler:
    url: str
    process: Process
    clock_file: Path
    workdir: Path

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload.strip() else None

    def set_clock_offset(self, seconds: float) -> None:
        self.clock_file.write_text(repr(seconds))

    def run(self, job_id: str, run_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")

    def wait_finished(self, job_id: str, run_id: str, timeout: float = 30) -> dict:
        def done() -> dict | None:
            run = self.run(job_id, run_id)
            return run if run["status"] in ("SUCCESS", "FAILED") else None
        try:
            return wait_for(done, timeout=timeout, what=f"run {run_id} of {job_id} to finish")
        except TimeoutError:
            raise AssertionError(f"{self.run(job_id, run_id)}\n{self.process.output()[-3000:]}") from None


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("jobs-cluster")
    with Cluster(workdir, agents=2, resources="cpus:2;mem:2048;disk:10000;ports:[31000-31100]").start() as c:
        yield c


@pytest.fixture(scope="package")
def scheduler(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduler]:
    workdir = tmp_path_factory.mktemp("jobs-scheduler")
    port = free_port()
    clock = workdir / "clock-offset"
    clock.write_text("0")
    process = Process(dockyard("scheduler", "--master", cluster.master_address, "--port", str(port),
                               "--data-dir", str(workdir / "data"), "--clock-file", str(clock)),
                      workdir / "scheduler.log")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=30, what="scheduler subscribed")
        yield Scheduler(f"http://127.0.0.1:{port}", process, clock, workdir)
    finally:
        process.stop()
