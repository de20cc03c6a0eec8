"""The master's registry: which agents were admitted, kept across master restarts.

A real Mesos master records admitted agents in its replicated log, so a new
leader knows which agents to wait for. That matters to frameworks: while such
an agent has not re-registered, reconciling a task on it gets *no* answer (the
framework retries) instead of TASK_LOST, which would make it relaunch a task
that is still running. The registry holds only agent ids and addresses, the
agents marked unreachable with the time they were (so a new leader still answers
TASK_UNREACHABLE for their tasks), and, with `--authenticate-agents`, the principal
each agent id belongs to (so a new leader refuses that id from anyone else); tasks
and frameworks come back with the agents' re-registration, as in Mesos.
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
    def save(self, agents: dict[str, dict[str, Any]], unreachable: dict[str, float] | None = None,
             owners: dict[str, str] | None = None) -> None: ...


def _document(agents: dict[str, dict[str, Any]], unreachable: dict[str, float] | None,
              owners: dict[str, str] | None) -> dict[str, Any]:
    return {"agents": agents, "unreachable": dict(unreachable or {}), "owners": dict(owners or {})}


def _owners(document: dict[str, Any]) -> dict[str, str]:
    owners = document.get("owners")
    if not isinstance(owners, dict):
        return {}
    return {str(k): v for k, v in owners.items() if isinstance(v, str)}


class FileRegistry:
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

    def load(self) -> dict[str, dict[str, Any]]:
        return dict(self._read().get("agents") or {})

    def load_unreachable(self) -> dict[str, float]:
        return dict(self._read().get("unreachable") or {})

    def load_owners(self) -> dict[str, str]:
        return _owners(self._read())

    def save(self, agents: dict[str, dict[str, Any]], unreachable: dict[str, float] | None = None,
             owners: dict[str, str] | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".registry-")
        with os.fdopen(fd, "w") as handle:
            json.dump(_document(agents, unreachable, owners), handle)
        os.replace(tmp, self.path)


class ZooKeeperRegistry:
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

    def load(self) -> dict[str, dict[str, Any]]:
        return dict(self._read().get("agents") or {})

    def load_unreachable(self) -> dict[str, float]:
        return dict(self._read().get("unreachable") or {})

    def load_owners(self) -> dict[str, str]:
        return _owners(self._read())

    def save(self, agents: dict[str, dict[str, Any]], unreachable: dict[str, float] | None = None,
             owners: dict[str, str] | None = None) -> None:
        data = json.dumps(_document(agents, unreachable, owners)).encode()
        if self.client.exists(self.path):
            self.client.set(self.path, data)
        else:
            self.client.create(self.path, data, makepath=True)
