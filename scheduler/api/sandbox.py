"""Where a task's sandbox is on its agent, so `dockyard job logs` can read it remotely.

The scheduler learns the agent from the offer and the executor from the task's
status; the executor's directory is the agent's business, so we ask the
agent's `/state` (as the Mesos CLI does) and keep one map per agent of
task id -> executor directory, refreshed at most twice a second when a task
is missing from it. dockyard's executor labels each status with the task's
sandbox relative to the executor's (`dockyard.sandbox`): a warm executor keeps
each task in `tasks/<task id>/`.

The agent is read as the scheduler: with its framework principal (the ACLs of a
generated cluster let `dockyard` view what it launched) and, with TLS on, over
HTTPS verified with the CA and presenting the scheduler's certificate.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from framework.security.peer import Peer

log = logging.getLogger(__name__)
REFRESH_SECONDS = 0.5


class SandboxFinder:
    def __init__(self, timeout: float = 3.0, peer: Peer | None = None) -> None:
        self.client = httpx.Client(timeout=timeout, **(peer or Peer()).httpx_options())
        self._lock = threading.Lock()
        self._maps: dict[str, tuple[float, dict[str, str]]] = {}
        self._refused: set[str] = set()

    def _refresh(self, agent_url: str, framework_id: str | None) -> dict[str, str]:
        try:
            response = self.client.get(f"{agent_url}/state")
            if response.status_code in (401, 403):
                if agent_url in self._refused:
                    return {}
                self._refused.add(agent_url)  # said once per agent: lookups repeat twice a second
                log.warning("the agent at %s refuses to show us its state (%s %s): task output cannot be "
                            "located; check the scheduler's principal and the agent's ACLs",
                            agent_url, response.status_code, response.text.strip()[:200])
                return {}
            state = response.json()
        except (httpx.HTTPError, ValueError) as error:
            log.debug("cannot read %s/state: %s", agent_url, error)
            return {}
        found: dict[str, str] = {}
        for key in ("frameworks", "completed_frameworks"):
            for framework in state.get(key) or []:
                if framework_id and framework.get("id") != framework_id:
                    continue
                for ekey in ("executors", "completed_executors"):
                    for executor in framework.get(ekey) or []:
                        directory = executor.get("directory")
                        if not directory:
                            continue
                        for tkey in ("tasks", "completed_tasks", "queued_tasks"):
                            for task in executor.get(tkey) or []:
                                found[task.get("id", "")] = directory
        return found

    def executor_directory(self, agent_url: str, framework_id: str | None, task_id: str) -> str | None:
        with self._lock:
            fetched, known = self._maps.get(agent_url, (0.0, {}))
            if task_id in known:
                return known[task_id]
            if time.monotonic() - fetched < REFRESH_SECONDS:
                return None
            known = self._refresh(agent_url, framework_id)
            self._maps[agent_url] = (time.monotonic(), known)
            return known.get(task_id)


def task_sandbox(directory: str, relative: str | None) -> str | None:
    """The task's sandbox: `relative` (the executor's `dockyard.sandbox` label) below the
    executor's directory (the agent's word), or None when the label would lead anywhere else.
    The label comes from the executor, which runs beside the task, so it is not trusted to
    name an absolute path or climb with `..` into another task's or framework's sandbox."""
    relative = (relative or ".").strip()
    if relative in (".", ""):
        return directory
    parts = relative.split("/")
    if relative.startswith("/") or "\0" in relative or any(part in ("..", "") for part in parts):
        log.warning("ignoring the sandbox label %r: not a path below the executor's directory", relative)
        return None
    return f"{directory}/{'/'.join(part for part in parts if part != '.')}"


def sandbox_finder(ctx: Any) -> SandboxFinder:
    """The scheduler's one finder (made on first use: a client and its TLS context cost ~10 ms)."""
    finder = ctx.extras.get("sandbox_finder")
    if finder is None:
        finder = ctx.extras["sandbox_finder"] = SandboxFinder(peer=ctx.config.security.peer)
    return finder


def resolve_sandboxes(ctx: Any, run: Any) -> None:
    """Fill `sandbox` for the run's tasks that have started somewhere and lack it."""
    finder = sandbox_finder(ctx)
    for task in run.tasks:
        if task.sandbox or not task.agent_id or task.status in ("PENDING", "TASK_STAGING"):
            continue
        record = ctx.core.get(task.id)
        url = task.agent_url or (ctx.core.agent(task.agent_id) or {}).get("url")
        if not url:
            continue
        task.agent_url = url
        directory = finder.executor_directory(url, ctx.core.framework_id, task.id)
        if directory is None:
            continue
        task.sandbox = task_sandbox(directory, record.sandbox if record is not None else None)
