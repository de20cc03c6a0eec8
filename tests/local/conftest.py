"""Fixtures for the embedded agent tests: a real master and agent, a raw framework."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.framework import RawFramework

REGISTRATION_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One master and one agent for a test module; executors must subscribe within 3 s."""
    with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                 agent_args=["--executor-registration-timeout", str(REGISTRATION_TIMEOUT)]).start() as running:
        yield running


@pytest.fixture
def framework(cluster: Cluster) -> Iterator[RawFramework]:
    """A fresh framework per test (torn down after), speaking raw v1 HTTP."""
    client = RawFramework(cluster.master_api(), capabilities=["TASK_KILLING_STATE"]).start()
    yield client
    client.stop()
