"""A fresh deployment per test: every HA test kills something, so none may share one."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.faults.harness import Deployment
from tests.support.zookeeper import ZooKeeper


@pytest.fixture
def deploy(zk: ZooKeeper, tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """`deploy(masters=2, agents=1, ...)` starts a deployment; all are stopped at the end."""
    started: list[Deployment] = []

    def start(**options: object) -> Deployment:
        deployment = Deployment(tmp_path / f"d{len(started)}", zk, **options)  # type: ignore[arg-type]
        started.append(deployment)
        return deployment.start()

    yield start
    for deployment in started:
        deployment.stop()


def job(job_id: str, cmd: str, **run: object) -> dict:
    return {"id": job_id, "run": {"cmd": cmd, "cpus": 0.1, "mem": 32, **run}}
