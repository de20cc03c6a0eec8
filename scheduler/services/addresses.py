"""The address of a task's agent, as Marathon's `ipAddresses` and routers need it.

A task keeps its agent's hostname (`host`, as Mesos offers name it, and `$HOST`),
which need not resolve where the scheduler runs (a lab's node names resolve only
inside the lab). The agent's IP comes from the URL it offered with (no DNS). The scheduler learns that URL
only from offers, and a scheduler that has just restarted (or a new leader) may get none
for a while (nothing to launch: offers suppressed), so each agent's address is kept in
the store once learned: its tasks keep a routable address across restarts and failovers,
and a router keeps them in rotation. An agent that offered under a name is resolved,
the answer kept for `TTL` seconds, so a view of many tasks asks DNS at most once per agent.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from typing import Any, Callable

from framework.errors import StoreError

log = logging.getLogger(__name__)
AGENTS_KEY = "/services/agent-addresses"
TTL = 60.0


class AgentAddresses:
    def __init__(self, core: Any, store: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.core = core
        self.store = store
        self.clock = clock
        self.lock = threading.Lock()
        self.known: dict[str, str] = {}  # agent id -> its IP, as last learned (kept in the store)
        self.resolved: dict[str, tuple[float, str | None]] = {}

    def load(self) -> None:
        raw = self.store.get(AGENTS_KEY)[0] if self.store is not None else None
        try:
            known = json.loads(raw) if raw else {}
        except ValueError:
            known = {}
        with self.lock:
            self.known = {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}

    def of(self, record: Any) -> str:
        """The IP of the agent a task runs on; its hostname when no IP can be found."""
        agent_id = record.agent_id or ""
        agent = self.core.agent(agent_id) if agent_id else None
        url = (agent or {}).get("url") or ""
        host = url.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]") if url else ""
        address = self._ip(host)
        if address and agent_id:
            self._remember(agent_id, address)
            return address
        with self.lock:
            address = self.known.get(agent_id)
        return address or self._ip(record.hostname or "") or record.hostname or ""

    def _remember(self, agent_id: str, address: str) -> None:
        with self.lock:
            if self.known.get(agent_id) == address:
                return
            self.known[agent_id] = address
            document = json.dumps(self.known).encode()
        if self.store is not None:
            try:
                self.store.put(AGENTS_KEY, document)
            except StoreError as error:  # kept in memory; the next change stores it again
                log.warning("the address of agent %s is not stored: %s", agent_id, error)

    def _ip(self, name: str) -> str | None:
        if not name:
            return None
        try:
            return str(ipaddress.ip_address(name))
        except ValueError:
            pass
        now = self.clock()
        with self.lock:
            cached = self.resolved.get(name)
        if cached is not None and now - cached[0] < TTL:
            return cached[1]
        try:
            found: str | None = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except (OSError, IndexError):
            found = None
        with self.lock:
            self.resolved[name] = (now, found)
        return found
