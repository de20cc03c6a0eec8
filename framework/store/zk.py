"""The ZooKeeper store: one znode per key, ZooKeeper's own versions as ours.

Used with `--zk zk://hosts/path` so that several scheduler instances share
state; a conditional write maps straight onto ZooKeeper's versioned set, so a
stale leader loses with ConflictError rather than clobbering the new one.

While ZooKeeper restarts, or the session moves to another server, every call
fails with a connection error. Rather than turning that into a 500, each
operation waits (at most `retry_timeout`, by default the session timeout) for
the session to come back and tries again. A write whose answer was lost may
have been applied: a retried conditional write that then "conflicts" with
exactly the value it wrote counts as done, so retries stay idempotent.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (BadVersionError, ConnectionLoss, KazooException, NodeExistsError, NoNodeError,
                              NotEmptyError, OperationTimeoutError, SessionExpiredError)
from kazoo.handlers.threading import KazooTimeoutError

from framework.errors import ConflictError, StoreError
from framework.store.base import ABSENT, Store, check_key
from framework.zkclient import parse_zk_url

T = TypeVar("T")
# Errors that mean "not connected right now", not "the operation is wrong": worth a retry.
RETRYABLE = (ConnectionLoss, OperationTimeoutError, SessionExpiredError, KazooTimeoutError)
DEFAULT_ROOT = "/dockyard"  # the state's path when the URL names none


class ZooKeeperStore(Store):
    def __init__(self, client: KazooClient, root: str, owns_client: bool = False,
                 retry_timeout: float | None = None) -> None:
        self.client = client
        self.root = root.rstrip("/")
        self._owns_client = owns_client
        # Bounded by the session timeout: past it ZooKeeper has expired the session anyway.
        self.retry_timeout = retry_timeout if retry_timeout is not None else \
            max(getattr(client, "_session_timeout", 10000) / 1000.0, 1.0)
        self._connected = threading.Event()
        if client.state == KazooState.CONNECTED:
            self._connected.set()
        client.add_listener(self._on_state)
        try:
            self._retry("create " + (self.root or "/"), lambda: self.client.ensure_path(self.root or "/"))
        except StoreError as error:
            raise StoreError(f"cannot create {self.root} in ZooKeeper: {error}") from error

    @classmethod
    def from_url(cls, url: str, timeout: float = 15.0) -> "ZooKeeperStore":
        try:
            zk = parse_zk_url(url, default_path=DEFAULT_ROOT)
        except ValueError as error:
            raise StoreError(str(error)) from error
        client = zk.client(timeout)
        try:
            client.start(timeout=timeout)
        except Exception as error:  # kazoo raises its own timeout type
            raise StoreError(f"cannot reach ZooKeeper at {zk.servers}: {error}") from error
        return cls(client, zk.path, owns_client=True)

    def _on_state(self, state: str) -> None:
        """Kazoo's connection listener (its own thread): track whether calls can succeed."""
        if state == KazooState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()

    def _retry(self, what: str, operation: Callable[[], T]) -> T:
        """Run `operation`, waiting for the session to reconnect and retrying on connection
        errors until `retry_timeout`; then, and for any other kazoo error, StoreError."""
        deadline = time.monotonic() + self.retry_timeout
        while True:
            # kazoo queues a call made while disconnected and its answer never times out:
            # wait for the session here, where the wait is bounded.
            if not self._connected.wait(max(deadline - time.monotonic(), 0.0)):
                raise StoreError(f"cannot {what}: ZooKeeper unavailable for {self.retry_timeout:.0f} s")
            try:
                return operation()
            except RETRYABLE as error:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(f"cannot {what}: ZooKeeper unavailable ({type(error).__name__})") from error
                # The listener wakes us at reconnection; the short cap re-checks a state
                # change that happened between the failure and this wait.
                self._connected.wait(min(left, 0.5))
            except (ConflictError, StoreError):
                raise
            except (NoNodeError, NodeExistsError, BadVersionError, NotEmptyError):
                raise  # answers, not failures: the caller maps them
            except KazooException as error:
                raise StoreError(f"cannot {what}: {error}") from error

    def _path(self, key: str) -> str:
        parts = check_key(key)
        return self.root + ("/" + "/".join(parts) if parts else "")

    def get(self, key: str) -> tuple[bytes | None, int]:
        path = self._path(key)

        def read() -> tuple[bytes | None, int]:
            try:
                data, stat = self.client.get(path)
            except NoNodeError:
                return None, ABSENT
            return data, stat.version

        return self._retry(f"read {key}", read)

    def _already_written(self, path: str, value: bytes, version: int | None) -> int | None:
        """After a retry, was our lost-answer write applied? Its version if so."""
        try:
            data, stat = self.client.get(path)
        except NoNodeError:
            return None
        if data == value and (version is None or stat.version == version):
            return stat.version
        return None

    def put(self, key: str, value: bytes, expected_version: int | None = None) -> int:
        path = self._path(key)
        attempts = [0]

        def write() -> int:
            attempts[0] += 1
            retried = attempts[0] > 1
            try:
                if expected_version == ABSENT:
                    self.client.create(path, value, makepath=True)
                    return 0
                if expected_version is not None:
                    return self.client.set(path, value, version=expected_version).version
            except (BadVersionError, NodeExistsError):
                if retried:  # the first try may have landed before the connection dropped
                    want = 0 if expected_version == ABSENT else expected_version + 1
                    done = self._already_written(path, value, want)
                    if done is not None:
                        return done
                raise
            try:
                return self.client.set(path, value).version
            except NoNodeError:
                try:
                    self.client.create(path, value, makepath=True)
                    return 0
                except NodeExistsError:  # somebody created it in between: plain overwrite
                    return self.client.set(path, value).version

        try:
            return self._retry(f"write {key}", write)
        except (BadVersionError, NodeExistsError) as error:
            raise ConflictError(f"{key}: expected version {expected_version} ({type(error).__name__})") from error
        except NoNodeError as error:
            raise ConflictError(f"{key}: expected version {expected_version}, but it does not exist") from error

    def delete(self, key: str, expected_version: int | None = None, recursive: bool = True) -> bool:
        path = self._path(key)
        attempts = [0]

        def remove() -> bool:
            attempts[0] += 1
            try:
                if expected_version is not None:
                    self.client.delete(path, version=expected_version, recursive=False)
                else:
                    if self.client.exists(path) is None:  # kazoo's recursive delete hides absence
                        return False
                    self.client.delete(path, recursive=recursive)
                return True
            except NoNodeError:
                if attempts[0] > 1 and expected_version not in (None, ABSENT):
                    return True  # our first try removed it before its answer was lost
                raise

        try:
            return self._retry(f"delete {key}", remove)
        except NoNodeError:
            if expected_version not in (None, ABSENT):
                raise ConflictError(f"{key}: expected version {expected_version}, but it does not exist")
            return False
        except BadVersionError as error:
            raise ConflictError(f"{key}: expected version {expected_version}") from error
        except NotEmptyError as error:
            raise StoreError(f"{key} has children") from error

    def children(self, prefix: str) -> list[str]:
        path = self._path(prefix)

        def listing() -> list[str]:
            try:
                return sorted(self.client.get_children(path))
            except NoNodeError:
                return []

        return self._retry(f"list {prefix}", listing)

    def close(self) -> None:
        self.client.remove_listener(self._on_state)
        if self._owns_client:
            self.client.stop()
            self.client.close()
