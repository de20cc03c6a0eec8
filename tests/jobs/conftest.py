"""One embedded cluster and one scheduler process for the job tests (real processes)."""
from __future__ import annotations

import io
import json
import urllib.error
from typing import Any, Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.scheduler import SchedulerProcess


DETAIL = {"Dockyard-Detail": "true"}


class Scheduler(SchedulerProcess):
    """The shared scheduler process plus the run look-ups the job tests repeat. Its calls ask
    for dockyard's detail (`Dockyard-Detail`), as the CLI does: exit codes, attempts, reasons."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        status, headers, raw = self.api.call(method, path, body, headers=DETAIL)
        if status >= 400:
            raise urllib.error.HTTPError(self.url + path, status, raw.decode(errors="replace")[:300],
                                         headers, io.BytesIO(raw))  # type: ignore[arg-type]
        return json.loads(raw) if raw.strip() else None

    def run(self, job_id: str, run_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")

    def wait_finished(self, job_id: str, run_id: str, timeout: float = 30) -> dict:
        return self.wait_until(lambda: self.run(job_id, run_id), lambda run: run["status"] in ("SUCCESS", "FAILED"),
                               f"run {run_id} of {job_id} to finish", timeout)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("jobs-cluster")
    # a small artifact cache, so that test_artifacts... sees the agent's budget reach the executors
    with Cluster(workdir, agents=2, resources="cpus:2;mem:2048;disk:10000;ports:[31000-31100]",
                 agent_args=["--fetcher-cache-size", "64KB"]).start() as c:
        yield c


@pytest.fixture(scope="package")
def scheduler(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduler]:
    with Scheduler.start(cluster, tmp_path_factory.mktemp("jobs-scheduler"), clock=True) as s:
        yield s
