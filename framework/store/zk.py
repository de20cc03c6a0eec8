"""The ZooKeeper store: one znode per key, ZooKeeper's own versions as ours.

Used with `--zk zk://hosts/path` so that several scheduler instances share
state; a conditional write maps straight onto ZooKeeper's versioned set, so a
stale leader loses with ConflictError rather than clobbering the new one.
"""
from __future__ import annotations

from urllib.parse import urlparse

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError, NotEmptyError

from framework.errors import ConflictError, StoreError
from framework.store.base import ABSENT, Store, check_key


def parse_zk_url(url: str) -> tuple[str, str]:
    """`zk://h1:2181,h2:2181/dockyard` -> ("h1:2181,h2:2181", "/dockyard")."""
    parsed = urlparse(url)
    if parsed.scheme != "zk" or not parsed.netloc:
        raise StoreError(f"not a zk:// URL: {url!r}")
    return parsed.netloc, parsed.path.rstrip("/") or "/dockyard"


class ZooKeeperStore(Store):
    def __init__(self, client: KazooClient, root: str, owns_client: bool = False) -> None:
        self.client = client
        self.root = root.rstrip("/")
        self._owns_client = owns_client
        try:
            self.client.ensure_path(self.root or "/")
        except KazooException as error:
            raise StoreError(f"cannot create {self.root} in ZooKeeper: {error}") from error

    @classmethod
    def from_url(cls, url: str, timeout: float = 15.0) -> "ZooKeeperStore":
        hosts, root = parse_zk_url(url)
        client = KazooClient(hosts=hosts, timeout=timeout)
        try:
            client.start(timeout=timeout)
        except Exception as error:  # kazoo raises its own timeout type
            raise StoreError(f"cannot reach ZooKeeper at {hosts}: {error}") from error
        return cls(client, root, owns_client=True)

    def _path(self, key: str) -> str:
        parts = check_key(key)
        return self.root + ("/" + "/".join(parts) if parts else "")

    def get(self, key: str) -> tuple[bytes | None, int]:
        try:
            data, stat = self.client.get(self._path(key))
        except NoNodeError:
            return None, ABSENT
        except KazooException as error:
            raise StoreError(f"cannot read {key}: {error}") from error
        return data, stat.version

    def put(self, key: str, value: bytes, expected_version: int | None = None) -> int:
        path = self._path(key)
        try:
            if expected_version == ABSENT:
                self.client.create(path, value, makepath=True)
                return 0
            if expected_version is not None:
                return self.client.set(path, value, version=expected_version).version
            try:
                return self.client.set(path, value).version
            except NoNodeError:
                try:
                    self.client.create(path, value, makepath=True)
                    return 0
                except NodeExistsError:  # somebody created it in between: plain overwrite
                    return self.client.set(path, value).version
        except (BadVersionError, NodeExistsError) as error:
            raise ConflictError(f"{key}: expected version {expected_version} ({type(error).__name__})") from error
        except NoNodeError as error:
            raise ConflictError(f"{key}: expected version {expected_version}, but it does not exist") from error
        except KazooException as error:
            raise StoreError(f"cannot write {key}: {error}") from error

    def delete(self, key: str, expected_version: int | None = None, recursive: bool = True) -> bool:
        path = self._path(key)
        try:
            if expected_version is not None:
                self.client.delete(path, version=expected_version, recursive=False)
            else:
                if self.client.exists(path) is None:  # kazoo's recursive delete hides absence
                    return False
                self.client.delete(path, recursive=recursive)
            return True
        except NoNodeError:
            if expected_version not in (None, ABSENT):
                raise ConflictError(f"{key}: expected version {expected_version}, but it does not exist")
            return False
        except BadVersionError as error:
            raise ConflictError(f"{key}: expected version {expected_version}") from error
        except NotEmptyError as error:
            raise StoreError(f"{key} has children") from error
        except KazooException as error:
            raise StoreError(f"cannot delete {key}: {error}") from error

    def children(self, prefix: str) -> list[str]:
        try:
            return sorted(self.client.get_children(self._path(prefix)))
        except NoNodeError:
            return []
        except KazooException as error:
            raise StoreError(f"cannot list {prefix}: {error}") from error

    def close(self) -> None:
        if self._owns_client:
            self.client.stop()
            self.client.close()
