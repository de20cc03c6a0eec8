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
    first.put("/gone/child", b"1")
    first.delete("/gone")
    first.close()
    second = EmbeddedStore(tmp_path / "s")
    assert second.get("/x") == (b"kept", version)
    assert second.get("/gone/child") == (None, ABSENT)
    assert second.children("/") == ["x"]
    second.close()
    journal = tmp_path / "s" / "journal-0"
    raw = journal.read_bytes()
    journal.write_bytes(raw.replace(b'"schema":2', b'"schema":99'))
    with pytest.raises(StoreError):  # the header's checksum no longer matches: not ours
        EmbeddedStore(tmp_path / "s")


def _reframe_header(path: Path, schema: int) -> None:
    """Rewrite the header record with another schema version and a valid checksum."""
    import json
    import struct
    import zlib

    raw = path.read_bytes()
    length, _ = struct.unpack_from(">II", raw)
    header = json.loads(raw[8:8 + length])
    payload = json.dumps({**header, "schema": schema}, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(struct.pack(">II", len(payload), zlib.crc32(payload)) + payload + raw[8 + length:])


def test_embedded_refuses_a_schema_it_does_not_know(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.put("/x", b"1")
    store.close()
    _reframe_header(tmp_path / "s" / "journal-0", schema=99)
    with pytest.raises(StoreError, match="schema 99"):
        EmbeddedStore(tmp_path / "s")


def test_embedded_cuts_a_torn_tail_and_keeps_everything_before_it(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.put("/a", b"first")
    store.put("/b", b"second")
    store.close()
    journal = tmp_path / "s" / "journal-0"
    intact = journal.read_bytes()
    journal.write_bytes(intact[:-3])  # a crash in the middle of appending /b
    reopened = EmbeddedStore(tmp_path / "s")
    assert reopened.get("/a") == (b"first", 0)
    assert reopened.get("/b") == (None, ABSENT)
    reopened.put("/c", b"after")  # appends after the cut, not after the garbage
    reopened.close()
    again = EmbeddedStore(tmp_path / "s")
    assert again.get("/c") == (b"after", 0)
    assert again.children("/") == ["a", "c"]


def test_embedded_compacts_and_reopens_from_the_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import framework.store.embedded as embedded

    monkeypatch.setattr(embedded, "COMPACT_MIN_BYTES", 64 << 10)
    store = EmbeddedStore(tmp_path / "s")
    for round_ in range(40):  # rewrite the same keys: the journal grows, the live data does not
        for index in range(20):
            store.put_lazy(f"/tasks/t{index}", f"{round_}:{index}".encode() * 50)
        store.delete(f"/tasks/t{round_ % 20}/gone")
    store.put("/tasks/t0/child", b"nested")
    assert (tmp_path / "s" / "snapshot").exists(), "the journal should have been compacted"
    assert (tmp_path / "s" / "journal-0").exists() is False
    journal_size = sum(p.stat().st_size for p in (tmp_path / "s").glob("journal-*"))
    assert journal_size < 64 << 10
    expected = {f"/tasks/t{i}": f"39:{i}".encode() * 50 for i in range(20)}
    store.close()
    reopened = EmbeddedStore(tmp_path / "s")
    for key, value in expected.items():
        assert reopened.get(key) == (value, 39)
    assert reopened.get("/tasks/t0/child") == (b"nested", 0)
    assert reopened.children("/tasks") == sorted(f"t{i}" for i in range(20))


def test_embedded_ignores_a_journal_left_by_a_crash_mid_compaction(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.put("/k", b"old")
    store.put("/k", b"new")
    old_journal = (tmp_path / "s" / "journal-0").read_bytes()
    store.compact()  # snapshot generation 1 holds /k = new
    store.close()
    # A crash after the snapshot was renamed but before the old journal was removed.
    (tmp_path / "s" / "journal-0").write_bytes(old_journal)
    reopened = EmbeddedStore(tmp_path / "s")
    assert reopened.get("/k") == (b"new", 1)
    assert not (tmp_path / "s" / "journal-0").exists()


def test_embedded_imports_the_file_per_key_layout(tmp_path: Path) -> None:
    root = tmp_path / "s"
    for key, version, value in (("jobs/a", 3, b"{}"), ("jobs/a/runs/r1", 0, b"run")):
        (root / key).mkdir(parents=True)
        header = b'{"format":"dockyard-store","schema":1,"version":%d}' % version
        (root / key / ".value").write_bytes(header + b"\n" + value)
    store = EmbeddedStore(root)
    assert store.get("/jobs/a") == (b"{}", 3)
    assert store.get("/jobs/a/runs/r1") == (b"run", 0)
    assert store.put("/jobs/a", b"{1}", expected_version=3) == 4
    assert not list(root.rglob(".value"))


def test_two_processes_cannot_share_one_embedded_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    import framework.store.embedded as embedded

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from framework.store.embedded import EmbeddedStore; "
         "EmbeddedStore(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(tmp_path / "s")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(embedded, "LOCK_WAIT_SECONDS", 0.3)
        with pytest.raises(StoreError, match="in use by another process"):
            EmbeddedStore(tmp_path / "s")
    finally:
        holder.kill()
        holder.wait()
    EmbeddedStore(tmp_path / "s").close()  # the lock died with its holder


def test_embedded_writers_syncers_and_compactions_at_once_lose_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import framework.store.embedded as embedded

    monkeypatch.setattr(embedded, "COMPACT_MIN_BYTES", 32 << 10)
    store = EmbeddedStore(tmp_path / "s")
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for index in range(300):
                store.put_lazy(f"/w/{name}/k{index % 10}", f"{name}-{index}".encode() * 20)
                if index % 7 == 0:
                    store.sync()
                if index % 50 == 0:
                    store.put(f"/w/{name}/durable", str(index).encode())
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert (tmp_path / "s" / "snapshot").exists(), "compactions should have run meanwhile"
    store.close()
    reopened = EmbeddedStore(tmp_path / "s")
    for name in ("t0", "t1", "t2", "t3"):
        for key in range(10):
            last = max(i for i in range(300) if i % 10 == key)
            assert reopened.get(f"/w/{name}/k{key}")[0] == f"{name}-{last}".encode() * 20
        assert reopened.get(f"/w/{name}/durable")[0] == b"250"
