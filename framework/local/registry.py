"""The master's registry: which agents were admitted, kept across master restarts.

A real Mesos master records admitted agents in its replicated log, so a new
leader knows which agents to wait for. That matters to frameworks: while such
an agent has not re-registered, reconciling a task on it gets *no* answer (the
framework retries) instead of TASK_LOST, which would make it relaunch a task
that is still running. The registry holds only agent ids and addresses; tasks
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
    def save(self, agents: dict[str, dict[str, Any]]) -> None: ...


class FileRegistry:
    """`<work_dir>/registry.json`, written atomically (temp file, then rename)."""

    def __init__(self, work_dir: str | Path) -> None:
        self.path = Path(work_dir) / "registry.json"

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable registry %s: %s", self.path, error)
            return {}
        return dict(data.get("agents") or {})

    def save(self, agents: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".registry-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"agents": agents}, handle)
        os.replace(tmp, self.path)


class ZooKeeperRegistry:
    """A `registry` znode beside the `json.info_` nodes, shared by all contenders."""

    def __init__(self, client: Any, path: str) -> None:
        self.client = client
        self.path = f"{path.rstrip('/')}/registry"

    def load(self) -> dict[str, dict[str, Any]]:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self.client.get(self.path)
        except NoNodeError:
            return {}
        try:
            return dict(json.loads(data or b"{}").get("agents") or {})
        except ValueError:
            return {}

    def save(self, agents: dict[str, dict[str, Any]]) -> None:
        data = json.dumps({"agents": agents}).encode()
        if self.client.exists(self.path):
            self.client.set(self.path, data)
        else:
            self.client.create(self.path, data, makepath=True)
