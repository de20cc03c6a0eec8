"""The `Store` contract every backend keeps.

Keys are absolute slash paths (`/jobs/backup/runs/r1`); a key may have a value
and children at once, as a znode does. Every value carries a version, and a
write may demand the version it read: the loser of a race gets `ConflictError`
instead of silently overwriting (how two scheduler instances stay honest).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod

from framework.errors import StoreError

ABSENT = -1  # the version of a key that does not exist; pass it to demand a create
_SEGMENT = re.compile(r"^[A-Za-z0-9_.:@=+,-]+$")


def check_key(key: str) -> list[str]:
    """Split a key into segments, refusing anything that could escape the store."""
    if not key.startswith("/"):
        raise StoreError(f"store key must start with '/': {key!r}")
    parts = [p for p in key.split("/") if p]
    for part in parts:
        if part in (".", "..") or not _SEGMENT.match(part):
            raise StoreError(f"store key segment not allowed: {part!r} in {key!r}")
    return parts


class Store(ABC):
    """Versioned key-value state with hierarchical keys."""

    @abstractmethod
    def get(self, key: str) -> tuple[bytes | None, int]:
        """The value and its version; `(None, ABSENT)` when the key does not exist."""

    @abstractmethod
    def put(self, key: str, value: bytes, expected_version: int | None = None) -> int:
        """Write `value`; with `expected_version` (ABSENT = must not exist) only if unchanged.

        Returns the new version; raises ConflictError when the expectation fails.
        """

    @abstractmethod
    def delete(self, key: str, expected_version: int | None = None, recursive: bool = True) -> bool:
        """Remove a key (and its children); False when it did not exist."""

    @abstractmethod
    def children(self, prefix: str) -> list[str]:
        """Names (not paths) of the direct children of `prefix`, sorted."""

    def put_lazy(self, key: str, value: bytes) -> int:
        """Write now, make durable at the next `sync()` (group commit); backends that are
        durable on every write just write."""
        return self.put(key, value)

    def sync(self) -> None:
        """Make every `put_lazy` so far durable; a no-op for always-durable backends."""

    def close(self) -> None:
        """Release connections; the default has nothing to release."""
