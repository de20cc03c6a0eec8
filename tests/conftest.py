"""Shared fixtures: real services on loopback, started and stopped by the tests."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support import zookeeper


@pytest.fixture(scope="session")
def zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zookeeper.ZooKeeper]:
    """One real ZooKeeper for the session; tests use their own znode paths."""
    if not zookeeper.available():
        pytest.fail("ZooKeeper is not installed: run the tests through `make test`")
    server = zookeeper.ZooKeeper(Path(tmp_path_factory.mktemp("zookeeper"))).start()
    yield server
    server.stop()
