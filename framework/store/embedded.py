"""The embedded store: files under the data dir, one directory per key.

Layout: `<root>/<key segments>/.value` holds a small header line and the value.
The header carries the format's schema version and the key's version, so a
future dockyard can migrate (or refuse) an old data dir instead of misreading
it. Writes go to a temp file, are flushed, then renamed over the old one: a
crash leaves the old value or the new one, never a torn mix.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from framework.errors import ConflictError, StoreError
from framework.store.base import ABSENT, Store, check_key

SCHEMA_VERSION = 1
MAGIC = b"dockyard-store"
VALUE_FILE = ".value"


def _encode(version: int, value: bytes) -> bytes:
    header = json.dumps({"format": MAGIC.decode(), "schema": SCHEMA_VERSION, "version": version},
                        separators=(",", ":")).encode()
    return header + b"\n" + value


def _decode(path: Path, raw: bytes) -> tuple[bytes, int]:
    header, _, value = raw.partition(b"\n")
    try:
        meta = json.loads(header)
    except ValueError as error:
        raise StoreError(f"{path}: not a dockyard store file ({error})") from error
    if meta.get("format") != MAGIC.decode():
        raise StoreError(f"{path}: not a dockyard store file")
    if meta.get("schema") != SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema {meta.get('schema')} is not supported "
                         f"(this dockyard reads schema {SCHEMA_VERSION})")
    return value, int(meta["version"])


class EmbeddedStore(Store):
    """Single-process file store; a lock makes compare-and-set atomic within the process."""

    def __init__(self, root: str | Path, fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.RLock()
        # Versions seen so far: a put need not re-read the file it just wrote.
        self._versions: dict[str, int] = {}
        self._dirty: set[str] = set()  # written by put_lazy, not yet fsynced

    def _dir(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def _read(self, key: str) -> tuple[bytes | None, int]:
        path = self._dir(key) / VALUE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None, ABSENT
        except OSError as error:
            raise StoreError(f"cannot read {key}: {error}") from error
        return _decode(path, raw)

    def _version(self, key: str) -> int:
        if key not in self._versions:
            self._versions[key] = self._read(key)[1]
        return self._versions[key]

    def get(self, key: str) -> tuple[bytes | None, int]:
        with self._lock:
            value, version = self._read(key)
            self._versions[key] = version
            return value, version

    def put_lazy(self, key: str, value: bytes) -> int:
        """Atomic now (temp + rename), durable at the next `sync()`: many writes share
        one pass of fsyncs, off the caller's thread."""
        return self._put(key, value, None, durable=False)

    def sync(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for path in dirty:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # deleted since: nothing to make durable
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def put(self, key: str, value: bytes, expected_version: int | None = None) -> int:
        return self._put(key, value, expected_version, durable=self.fsync)

    def _put(self, key: str, value: bytes, expected_version: int | None, durable: bool) -> int:
        with self._lock:
            current = self._version(key)
            if expected_version is not None and expected_version != current:
                raise ConflictError(f"{key}: expected version {expected_version}, found {current}")
            new_version = 0 if current == ABSENT else current + 1
            directory = self._dir(key)
            try:
                directory.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(_encode(new_version, value))
                        if durable:
                            handle.flush()
                            os.fsync(handle.fileno())
                    os.replace(tmp, directory / VALUE_FILE)
                    if not durable and self.fsync:
                        self._dirty.add(str(directory / VALUE_FILE))
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as error:
                raise StoreError(f"cannot write {key}: {error}") from error
            self._versions[key] = new_version
            return new_version

    def delete(self, key: str, expected_version: int | None = None, recursive: bool = True) -> bool:
        with self._lock:
            current = self._version(key)
            directory = self._dir(key)
            if expected_version is not None and expected_version != current:
                raise ConflictError(f"{key}: expected version {expected_version}, found {current}")
            if not directory.exists():
                return False
            if not recursive and any(p.name != VALUE_FILE for p in directory.iterdir()):
                raise StoreError(f"{key} has children")
            shutil.rmtree(directory, ignore_errors=True)
            prefix = key.rstrip("/") + "/"
            for cached in [k for k in self._versions if k == key or k.startswith(prefix)]:
                del self._versions[cached]
            return True

    def children(self, prefix: str) -> list[str]:
        directory = self._dir(prefix) if prefix.strip("/") else self.root
        try:
            return sorted(p.name for p in directory.iterdir()
                          if p.is_dir() and not p.name.startswith("."))
        except FileNotFoundError:
            return []
