"""Both store backends keep the same contract: versions, conflicts, children, deletes."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from framework.errors import ConflictError, StoreError
from framework.store import ABSENT, Store, open_store
from framework.store.embedded import EmbeddedStore


@pytest.fixture(params=["embedded", "zookeeper"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "embedded":
        backend: Store = open_store(data_dir=tmp_path)
    else:
        zk = request.getfixturevalue("zk")
        backend = open_store(zk_url=f"zk://{zk.hosts}/test-store-{uuid.uuid4().hex[:8]}")
    yield backend
    backend.close()


def test_absent_key_reads_as_none(store: Store) -> None:
    assert store.get("/nothing/here") == (None, ABSENT)
    assert store.children("/nothing") == []


def test_versions_advance_and_guard_writes(store: Store) -> None:
    v0 = store.put("/jobs/a", b"one", expected_version=ABSENT)
    assert store.get("/jobs/a") == (b"one", v0)
    v1 = store.put("/jobs/a", b"two", expected_version=v0)
    assert v1 > v0
    with pytest.raises(ConflictError):
        store.put("/jobs/a", b"stale", expected_version=v0)
    with pytest.raises(ConflictError):
        store.put("/jobs/a", b"again", expected_version=ABSENT)
    assert store.get("/jobs/a") == (b"two", v1)
    assert store.put("/jobs/a", b"blind") == v1 + 1


def test_children_and_recursive_delete(store: Store) -> None:
    store.put("/jobs/a", b"{}")
    store.put("/jobs/a/runs/r1", b"1")
    store.put("/jobs/b", b"{}")
    assert store.children("/jobs") == ["a", "b"]
    assert store.children("/jobs/a/runs") == ["r1"]
    assert store.delete("/jobs/a") is True
    assert store.get("/jobs/a/runs/r1") == (None, ABSENT)
    assert store.children("/jobs") == ["b"]
    assert store.delete("/jobs/a") is False


def test_delete_with_stale_version_conflicts(store: Store) -> None:
    version = store.put("/k", b"x")
    store.put("/k", b"y")
    with pytest.raises(ConflictError):
        store.delete("/k", expected_version=version)


def test_keys_that_escape_are_refused(store: Store) -> None:
    for key in ("relative", "/a/../b", "/a/b c"):
        with pytest.raises(StoreError):
            store.put(key, b"x")


def test_racing_writers_one_wins(store: Store) -> None:
    store.put("/counter", b"0")
    wins, conflicts = [], []

    def bump() -> None:
        value, version = store.get("/counter")
        try:
            store.put("/counter", str(int(value) + 1).encode(), expected_version=version)
            wins.append(1)
        except ConflictError:
            conflicts.append(1)

    barrier = threading.Barrier(8)
    threads = [threading.Thread(target=lambda: (barrier.wait(), bump())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(store.get("/counter")[0]) == len(wins)
    assert len(wins) + len(conflicts) == 8


def test_embedded_survives_reopen_and_checks_schema(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "s")
    version = first.put("/x", b"kept")
    second = EmbeddedStore(tmp_path / "s")
    assert second.get("/x") == (b"kept", version)
    raw = (tmp_path / "s" / "x" / ".value").read_bytes()
    (tmp_path / "s" / "x" / ".value").write_bytes(raw.replace(b'"schema":1', b'"schema":99'))
    with pytest.raises(StoreError, match="schema 99"):
        EmbeddedStore(tmp_path / "s").get("/x")
    assert not list((tmp_path / "s" / "x").glob(".tmp-*")), "temp files must not linger"
