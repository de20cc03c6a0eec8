"""The embedded store: an append-only journal plus a snapshot, under the data dir.

Every write appends one record to `journal` (a put or a delete, with the key's new
version); the index of live keys lives in memory and points at where each value
sits on disk, so memory grows with the number of keys, not with their size. When
the journal has grown well past the live data, the live records are rewritten as
a new `snapshot` and the journal starts over (a generation number in both names
which journal belongs to which snapshot, so a crash mid-compaction never replays
an old journal over a newer snapshot).

Why not a file per key: on ext4 a rename over an existing file forces the new
file's data out (`auto_da_alloc`), which made each task state change cost a
synchronous writeback; an append costs a write. Group commit (`put_lazy` +
`sync`) turns many appends into one fsync.

Each record is `length, crc32, payload`; a torn or corrupt tail (a crash
mid-append) is cut off at load. Both files start with a header naming the format
and its schema version, so a future dockyard can migrate (or refuse) an old data
dir instead of misreading it. A data dir from the earlier one-file-per-key
layout is imported on first open. One process at a time: the directory is locked.
The state holds every spec (and their environments): the directory is 0700 and
every file in it 0600, also those an older dockyard left readable.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from framework.errors import ConflictError, StoreError
from framework.store.base import ABSENT, Store, check_key

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
MAGIC = "dockyard-store"
_FRAME = struct.Struct(">II")  # payload length, crc32 of the payload
COMPACT_MIN_BYTES = 4 << 20  # below this the journal is never compacted
LOCK_WAIT_SECONDS = 10.0  # a predecessor still shutting down releases the lock soon
FILE_MODE, DIR_MODE = 0o600, 0o700


def _create(path: Path) -> int:
    """A new file, private from its first byte (truncated if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an existing file keeps its old mode through O_CREAT
    return fd


@dataclass(slots=True)
class _Entry:
    version: int
    source: int  # which file holds the value: _SNAPSHOT or _JOURNAL
    offset: int  # of the value inside that file
    length: int


_SNAPSHOT, _JOURNAL = 0, 1


def _frame(meta: dict, value: bytes = b"") -> tuple[bytes, int]:
    """The record bytes and the offset of `value` within them."""
    header = json.dumps(meta, separators=(",", ":")).encode() + b"\n"
    payload = header + value
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload, _FRAME.size + len(header)


def _records(raw: bytes, path: Path):
    """(meta, value offset, value length, end) for each intact record; stops at a torn tail."""
    position = 0
    while position + _FRAME.size <= len(raw):
        length, crc = _FRAME.unpack_from(raw, position)
        start, end = position + _FRAME.size, position + _FRAME.size + length
        if end > len(raw) or zlib.crc32(raw[start:end]) != crc:
            return
        newline = raw.index(b"\n", start, end)
        try:
            meta = json.loads(raw[start:newline])
        except ValueError as error:
            raise StoreError(f"{path}: unreadable record at byte {position} ({error})") from error
        yield meta, newline + 1, end - newline - 1, end
        position = end


def _canonical(key: str) -> str:
    """One spelling per key (`/a//b/` is `/a/b`), refusing keys that could escape."""
    return "/" + "/".join(check_key(key))


def _check_header(meta: dict, path: Path) -> int:
    if meta.get("format") != MAGIC:
        raise StoreError(f"{path}: not a dockyard store file")
    if meta.get("schema") != SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema {meta.get('schema')} is not supported "
                         f"(this dockyard reads schema {SCHEMA_VERSION})")
    return int(meta["generation"])


class EmbeddedStore(Store):
    """Single-process journal store; a lock makes compare-and-set atomic within the process."""

    def __init__(self, root: str | Path, fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(self.root, DIR_MODE)
        self.fsync = fsync
        self._lock = threading.RLock()
        self._lock_fd = self._take_directory_lock()
        self._index: dict[str, _Entry] = {}
        self._children: dict[str, set[str]] = {"/": set()}
        self._live_bytes = 0
        self._appended = 0  # records appended so far
        self._durable = 0  # of those, how many an fsync has covered
        self._sync_lock = threading.Lock()  # one fsync at a time; never taken before `_lock`
        self._fds: dict[int, int] = {}
        self._load()

    # -- opening -----------------------------------------------------------------------------
    def _take_directory_lock(self) -> int:
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise StoreError(f"{self.root} is in use by another process "
                                     "(two schedulers cannot share one data dir)") from None
                time.sleep(0.1)

    def _load(self) -> None:
        snapshot = self.root / "snapshot"
        generation = self._replay(snapshot, _SNAPSHOT) if snapshot.exists() else 0
        journal = self.root / f"journal-{generation}"
        fresh = not journal.exists()
        if fresh:
            self._start_journal(generation)
        else:
            self._replay(journal, _JOURNAL, expect_generation=generation)
        for stale in [*self.root.glob("journal-*"), *self.root.glob(".snapshot-*")]:
            if stale.name != journal.name:  # left by a crash mid-compaction
                stale.unlink()
        self._generation = generation
        for existing in self.root.iterdir():  # left readable by an older dockyard
            if existing.is_file() and existing.stat().st_mode & 0o077:
                os.chmod(existing, FILE_MODE)
        self._fds[_SNAPSHOT] = os.open(snapshot, os.O_RDONLY) if snapshot.exists() else -1
        self._fds[_JOURNAL] = os.open(journal, os.O_RDWR | os.O_APPEND)
        self._journal_bytes = os.fstat(self._fds[_JOURNAL]).st_size
        if fresh and not snapshot.exists():
            self._import_legacy_layout()

    def _start_journal(self, generation: int) -> None:
        record, _ = _frame({"format": MAGIC, "schema": SCHEMA_VERSION, "generation": generation})
        path = self.root / f"journal-{generation}"
        with os.fdopen(_create(path), "wb") as out:
            out.write(record)
            out.flush()
            os.fsync(out.fileno())
        self._fsync_directory()

    def _replay(self, path: Path, source: int, expect_generation: int | None = None) -> int:
        raw = path.read_bytes()
        records = _records(raw, path)
        first = next(records, None)
        if first is None:
            raise StoreError(f"{path}: not a dockyard store file")
        generation = _check_header(first[0], path)
        if expect_generation is not None and generation != expect_generation:
            raise StoreError(f"{path}: journal of generation {generation}, snapshot of {expect_generation}")
        end = first[3]
        for meta, offset, length, end in records:
            key = meta["key"]
            if meta["op"] == "put":
                self._index_put(key, _Entry(int(meta["version"]), source, offset, length))
            else:
                self._index_delete(key)
        if end < len(raw):
            log.warning("%s: cutting a torn tail of %d bytes (a crash mid-write)", path, len(raw) - end)
            os.truncate(path, end)
        return generation

    def _import_legacy_layout(self) -> None:
        """Bring in the values of a data dir written by the one-file-per-key store."""
        for value_file in sorted(self.root.rglob(".value")):
            raw = value_file.read_bytes()
            header, _, value = raw.partition(b"\n")
            try:
                meta = json.loads(header)
            except ValueError as error:
                raise StoreError(f"{value_file}: not a dockyard store file ({error})") from error
            if meta.get("format") != MAGIC or meta.get("schema") != 1:
                raise StoreError(f"{value_file}: store schema {meta.get('schema')} is not supported")
            key = "/" + value_file.parent.relative_to(self.root).as_posix()
            self._append({"op": "put", "key": key, "version": int(meta["version"])}, value, key=key,
                         version=int(meta["version"]))
        if self._index:
            self.sync()
            log.info("imported %d keys from the file-per-key store layout", len(self._index))
            for value_file in self.root.rglob(".value"):
                value_file.unlink()

    # -- the index ----------------------------------------------------------------------------
    def _index_put(self, key: str, entry: _Entry) -> None:
        old = self._index.get(key)
        self._live_bytes += entry.length - (old.length if old else 0)
        self._index[key] = entry
        parts = check_key(key)
        parent = "/"
        for part in parts:
            self._children.setdefault(parent, set()).add(part)
            parent = parent.rstrip("/") + "/" + part

    def _index_delete(self, key: str) -> None:
        """Forget `key` and everything under it."""
        pending = [key]
        while pending:
            name = pending.pop()
            entry = self._index.pop(name, None)
            if entry is not None:
                self._live_bytes -= entry.length
            prefix = name.rstrip("/") + "/"
            pending.extend(prefix + child for child in self._children.pop(name, ()))
        parts = check_key(key)
        if parts:
            self._children.get("/" + "/".join(parts[:-1]), set()).discard(parts[-1])

    def _exists(self, key: str) -> bool:
        parts = check_key(key)
        if not parts:
            return True
        return key in self._index or parts[-1] in self._children.get("/" + "/".join(parts[:-1]), ())

    # -- writing ------------------------------------------------------------------------------
    def _append(self, meta: dict, value: bytes, key: str, version: int | None) -> None:
        record, value_offset = _frame(meta, value)
        fd = self._fds[_JOURNAL]
        start = self._journal_bytes
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view):]
        except OSError as error:
            os.ftruncate(fd, start)
            raise StoreError(f"cannot write {key}: {error}") from error
        self._appended += 1
        if version is None:
            self._index_delete(key)
        else:
            self._index_put(key, _Entry(version, _JOURNAL, start + value_offset, len(value)))
        self._journal_bytes = start + len(record)

    def put_lazy(self, key: str, value: bytes) -> int:
        """Appended now, durable at the next `sync()`: many writes share one fsync."""
        return self._put(key, value, None, durable=False)

    def put(self, key: str, value: bytes, expected_version: int | None = None) -> int:
        return self._put(key, value, expected_version, durable=True)

    def _put(self, key: str, value: bytes, expected_version: int | None, durable: bool) -> int:
        key = _canonical(key)
        with self._lock:
            entry = self._index.get(key)
            current = entry.version if entry else ABSENT
            if expected_version is not None and expected_version != current:
                raise ConflictError(f"{key}: expected version {expected_version}, found {current}")
            new_version = 0 if current == ABSENT else current + 1
            self._append({"op": "put", "key": key, "version": new_version}, value, key, new_version)
            self._maybe_compact()
        if durable:
            self.sync()
        return new_version

    def delete(self, key: str, expected_version: int | None = None, recursive: bool = True) -> bool:
        key = _canonical(key)
        with self._lock:
            entry = self._index.get(key)
            current = entry.version if entry else ABSENT
            if expected_version is not None and expected_version != current:
                raise ConflictError(f"{key}: expected version {expected_version}, found {current}")
            if not self._exists(key):
                return False
            if not recursive and self._children.get(key):
                raise StoreError(f"{key} has children")
            self._append({"op": "delete", "key": key}, b"", key, None)
            self._maybe_compact()
            return True

    def sync(self) -> None:
        """Make every record appended so far durable; waits for an fsync already under way.

        The fsync runs outside `_lock`: writers keep appending meanwhile, and the next
        sync covers them (group commit).
        """
        with self._lock:
            target = self._appended
        if target <= self._durable:
            return
        with self._sync_lock:
            if target <= self._durable:
                return
            if self.fsync:  # the journal as of now: a compaction swaps it only under _sync_lock
                os.fsync(self._fds[_JOURNAL])
            self._durable = max(self._durable, target)

    # -- reading ------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[bytes | None, int]:
        key = _canonical(key)
        with self._lock:
            entry = self._index.get(key)
            if entry is None:
                return None, ABSENT
            return self._value(entry), entry.version

    def _value(self, entry: _Entry) -> bytes:
        try:
            return os.pread(self._fds[entry.source], entry.length, entry.offset)
        except OSError as error:
            raise StoreError(f"cannot read the store: {error}") from error

    def children(self, prefix: str) -> list[str]:
        key = _canonical(prefix)
        with self._lock:
            return sorted(self._children.get(key, ()))

    # -- compaction ---------------------------------------------------------------------------
    def _maybe_compact(self) -> None:
        size = self._journal_bytes
        if size > COMPACT_MIN_BYTES and size > 2 * self._live_bytes + COMPACT_MIN_BYTES // 2:
            self.compact()

    def compact(self) -> None:
        """Write the live records as a new snapshot and start a fresh journal."""
        with self._lock:
            generation = self._generation + 1
            temp = self.root / f".snapshot-{generation}"
            entries: dict[str, _Entry] = {}
            with os.fdopen(_create(temp), "wb") as out:
                record, _ = _frame({"format": MAGIC, "schema": SCHEMA_VERSION, "generation": generation})
                out.write(record)
                position = len(record)
                for key, entry in self._index.items():
                    record, value_offset = _frame({"op": "put", "key": key, "version": entry.version},
                                                  self._value(entry))
                    out.write(record)
                    entries[key] = _Entry(entry.version, _SNAPSHOT, position + value_offset, entry.length)
                    position += len(record)
                out.flush()
                os.fsync(out.fileno())
            self._start_journal(generation)
            os.replace(temp, self.root / "snapshot")
            self._fsync_directory()
            old_journal = self.root / f"journal-{self._generation}"
            with self._sync_lock:  # an fsync under way finishes on the old journal first
                for fd in self._fds.values():
                    if fd >= 0:
                        os.close(fd)
                self._fds = {_SNAPSHOT: os.open(self.root / "snapshot", os.O_RDONLY),
                             _JOURNAL: os.open(self.root / f"journal-{generation}", os.O_RDWR | os.O_APPEND)}
                self._durable = self._appended  # the fsynced snapshot holds every record
            old_journal.unlink(missing_ok=True)
            self._index = entries
            self._generation = generation
            self._journal_bytes = os.fstat(self._fds[_JOURNAL]).st_size

    def _fsync_directory(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if not self._fds:
            return
        self.sync()
        with self._lock, self._sync_lock:
            for fd in self._fds.values():
                if fd >= 0:
                    os.close(fd)
            self._fds = {}
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
