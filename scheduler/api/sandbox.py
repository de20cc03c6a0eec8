"""Where a task's sandbox is on its agent, so `dockyard job logs` can read it remotely.

The scheduler learns the agent from the offer and the executor from the task's
status; the executor's directory is the agent's business, so we ask the
agent's `/state` (as the Mesos CLI does) and keep one map per agent of
task id -> executor directory, refreshed at most twice a second when a task
is missing from it. dockyard's executor labels each status with the task's
sandbox relative to the executor's (`dockyard.sandbox`): a warm executor keeps
each task in `tasks/<task id>/`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)
REFRESH_SECONDS = 0.5


class SandboxFinder:
    def __init__(self, timeout: float = 3.0) -> None:
        self.client = httpx.Client(timeout=timeout)
        self._lock = threading.Lock()
        self._maps: dict[str, tuple[float, dict[str, str]]] = {}

    def _refresh(self, agent_url: str, framework_id: str | None) -> dict[str, str]:
        try:
            state = self.client.get(f"{agent_url}/state").json()
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


def sandbox_finder(ctx: Any) -> SandboxFinder:
    """The scheduler's one finder (made on first use: a client and its TLS context cost ~10 ms)."""
    finder = ctx.extras.get("sandbox_finder")
    if finder is None:
        finder = ctx.extras["sandbox_finder"] = SandboxFinder()
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
        relative = (record.sandbox if record is not None else None) or "."
        task.sandbox = directory if relative in (".", "") else f"{directory}/{relative}"
