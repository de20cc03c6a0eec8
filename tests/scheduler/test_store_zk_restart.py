"""The ZooKeeper store rides out a ZooKeeper restart instead of failing writes."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from framework.errors import StoreError
from framework.store import ABSENT, open_store
from framework.store.zk import ZooKeeperStore
from tests.support import zookeeper


@pytest.fixture
def zk_store(tmp_path: Path) -> Iterator[tuple[zookeeper.ZooKeeper, ZooKeeperStore]]:
    """A real ZooKeeper and a store on it; both stopped whatever fails, the opening included."""
    server = zookeeper.ZooKeeper(tmp_path / "zk").start()
    store = None
    try:
        store = open_store(zk_url=f"zk://{server.hosts}/store-{uuid.uuid4().hex[:8]}")
        assert isinstance(store, ZooKeeperStore)
        yield server, store
    finally:
        if store is not None:
            store.close()
        server.stop()


def test_writes_wait_for_the_session_across_a_zookeeper_restart(zk_store) -> None:
    """A write issued while ZooKeeper is down completes once it is back, with no error."""
    server, store = zk_store
    v0 = store.put("/jobs/a", b"one", expected_version=ABSENT)
    server.stop()
    outcome: dict[str, object] = {}

    def write() -> None:
        try:
            outcome["version"] = store.put("/jobs/a", b"two", expected_version=v0)
            outcome["children"] = store.children("/jobs")
        except Exception as error:  # reported to the test thread below
            outcome["error"] = error

    writer = threading.Thread(target=write)
    writer.start()
    server.start()
    writer.join(timeout=60)
    assert not writer.is_alive()
    assert "error" not in outcome, outcome
    assert outcome["version"] == v0 + 1
    assert outcome["children"] == ["a"]
    assert store.get("/jobs/a") == (b"two", v0 + 1)


def test_a_zookeeper_that_stays_down_fails_as_store_error(zk_store) -> None:
    """Retries are bounded: past the timeout the caller gets StoreError, not a kazoo type."""
    server, store = zk_store
    store.retry_timeout = 2.0
    server.stop()
    try:
        store.put("/jobs/b", b"x")
    except StoreError as error:
        assert "ZooKeeper unavailable" in str(error) or "cannot write" in str(error)
    else:
        raise AssertionError("a write to a stopped ZooKeeper succeeded")


def test_a_status_during_a_zookeeper_outage_is_acknowledged_only_once_stored(zk_store) -> None:
    """The scheduler core over the real ZooKeeper store: an update that arrives while
    ZooKeeper is down is not acknowledged (so the master resends it) and changes nothing;
    the resend after ZooKeeper is back is stored, acknowledged and seen by its job run."""
    from tests.scheduler.test_core_jobs import make_world, running, status

    server, store = zk_store
    _, core, driver, jobs = make_world(store)
    run, task_id = running(core, driver, jobs, "z")
    acks = len(driver.named("acknowledgeStatusUpdate"))
    default_wait, store.retry_timeout = store.retry_timeout, 1.0
    server.stop()
    core.handle_status(status(task_id, "TASK_FINISHED", "Command exited with status 0"))
    assert len(driver.named("acknowledgeStatusUpdate")) == acks
    assert core.get(task_id).state.value == "TASK_RUNNING" and run.status == "ACTIVE"
    server.start()
    store.retry_timeout = default_wait
    core.handle_status(status(task_id, "TASK_FINISHED", "Command exited with status 0"))
    assert len(driver.named("acknowledgeStatusUpdate")) == acks + 1
    assert core.get(task_id).state.value == "TASK_FINISHED" and run.status == "SUCCESS"
