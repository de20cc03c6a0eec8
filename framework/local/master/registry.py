"""The master's registry: what a new leader must know that agents cannot tell it.

A real Mesos master records admitted agents in its replicated log, so a new
leader knows which agents to wait for. That matters to frameworks: while such
an agent has not re-registered, reconciling a task on it gets *no* answer (the
framework retries) instead of TASK_LOST, which would make it relaunch a task
that is still running. The registry holds only agent ids and addresses, the
agents marked unreachable with the time they were (so a new leader still answers
TASK_UNREACHABLE for their tasks), and, with `--authenticate-agents`, the principal
each agent id belongs to (so a new leader refuses that id from anyone else); tasks
and frameworks come back with the agents' re-registration, as in Mesos.

What operators decided is kept too, as Mesos's registry keeps it (src/master/registry.proto):
each deactivated agent with its drain info (`Slave.deactivated`, `Slave.drain_info`; here
also when the drain started, which GET_AGENTS shows) and each role's quota (`quota_configs`).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("dockyard.master.registry")


class Registry(Protocol):
    def load(self) -> dict[str, dict[str, Any]]: ...
    def load_unreachable(self) -> dict[str, float]: ...
    def load_owners(self) -> dict[str, str]: ...
    def load_maintenance(self) -> dict[str, dict[str, Any]]: ...
    def load_quotas(self) -> dict[str, dict[str, Any]]: ...
    def save(self, agents: dict[str, dict[str, Any]], unreachable: dict[str, float] | None = None,
             owners: dict[str, str] | None = None, *, maintenance: dict[str, dict[str, Any]] | None = None,
             quotas: dict[str, dict[str, Any]] | None = None) -> None: ...


def _mapping(document: dict[str, Any], key: str) -> dict[str, Any]:
    """`document[key]` when it is an object (a registry written by an older master lacks some)."""
    value = document.get(key)
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


class _Document:
    """The registry as one JSON document; subclasses say where it is kept."""

    def _read(self) -> dict[str, Any]:
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def load(self) -> dict[str, dict[str, Any]]:
        return _mapping(self._read(), "agents")

    def load_unreachable(self) -> dict[str, float]:
        return _mapping(self._read(), "unreachable")

    def load_owners(self) -> dict[str, str]:
        return {k: v for k, v in _mapping(self._read(), "owners").items() if isinstance(v, str)}

    def load_maintenance(self) -> dict[str, dict[str, Any]]:
        """Deactivated agents by id: `{}`, or `{"drain_info", "drain_started"}` for a drained one."""
        return {k: v for k, v in _mapping(self._read(), "maintenance").items() if isinstance(v, dict)}

    def load_quotas(self) -> dict[str, dict[str, Any]]:
        """Each role's QuotaConfig, as UPDATE_QUOTA set it."""
        return {k: v for k, v in _mapping(self._read(), "quotas").items() if isinstance(v, dict)}

    def save(self, agents: dict[str, dict[str, Any]], unreachable: dict[str, float] | None = None,
             owners: dict[str, str] | None = None, *, maintenance: dict[str, dict[str, Any]] | None = None,
             quotas: dict[str, dict[str, Any]] | None = None) -> None:
        self._write(json.dumps({"agents": agents, "unreachable": dict(unreachable or {}),
                                "owners": dict(owners or {}), "maintenance": dict(maintenance or {}),
                                "quotas": dict(quotas or {})}).encode())


class FileRegistry(_Document):
    """`<work_dir>/registry.json`, written atomically (temp file, then rename)."""

    def __init__(self, work_dir: str | Path) -> None:
        self.path = Path(work_dir) / "registry.json"

    def _read(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as error:
            log.warning("ignoring unreadable registry %s: %s", self.path, error)
            return {}

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".registry-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, self.path)


class ZooKeeperRegistry(_Document):
    """A `registry` znode beside the `json.info_` nodes, shared by all contenders."""

    def __init__(self, client: Any, path: str) -> None:
        self.client = client
        self.path = f"{path.rstrip('/')}/registry"

    def _read(self) -> dict[str, Any]:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self.client.get(self.path)
        except NoNodeError:
            return {}
        try:
            return dict(json.loads(data or b"{}"))
        except (ValueError, TypeError):
            return {}

    def _write(self, data: bytes) -> None:
        if self.client.exists(self.path):
            self.client.set(self.path, data)
        else:
            self.client.create(self.path, data, makepath=True)
