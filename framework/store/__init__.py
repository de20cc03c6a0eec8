"""State persistence for the scheduler: one `Store` interface, two backends.

`open_store(data_dir, zk_url)` picks ZooKeeper when a `zk://` URL is given
(several schedulers share state and elect a leader) and the embedded file
store under the data dir otherwise (one machine, nothing to install).
"""
from __future__ import annotations

from pathlib import Path

from framework.errors import ConflictError, StoreError
from framework.store.base import ABSENT, Store

__all__ = ["ABSENT", "ConflictError", "Store", "StoreError", "open_store"]


def open_store(data_dir: str | Path | None = None, zk_url: str | None = None) -> Store:
    """The ZooKeeper store when `zk_url` is set, else the embedded one under `data_dir`."""
    if zk_url:
        from framework.store.zk import ZooKeeperStore

        return ZooKeeperStore.from_url(zk_url)
    if data_dir is None:
        raise StoreError("either a data dir or a zk:// URL is needed")
    import os

    from framework.store.embedded import EmbeddedStore

    # DOCKYARD_STORE_FSYNC=0 trades power-loss durability for write latency; a process
    # crash loses nothing either way (rename is atomic), and task states lost to a power
    # cut come back through reconciliation with the master.
    return EmbeddedStore(Path(data_dir) / "state", fsync=os.environ.get("DOCKYARD_STORE_FSYNC", "1") != "0")
