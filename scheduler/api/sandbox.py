"""Where a task's sandbox is on its agent, so `dockyard job logs` can read it remotely.

The scheduler learns the agent from the offer and the executor from the task's
status; the directory itself is the agent's business, so we ask the agent's
`/state` (as the Mesos CLI does) and remember the answer in the run.
A warm executor serves many tasks: each task's files live in `tasks/<task id>`
under the executor's directory when the executor keeps them apart.
"""
from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)


def _executor_directory(state: dict, framework_id: str | None, executor_id: str) -> str | None:
    for key in ("frameworks", "completed_frameworks"):
        for framework in state.get(key) or []:
            if framework_id and framework.get("id") != framework_id:
                continue
            for ekey in ("executors", "completed_executors"):
                for executor in framework.get(ekey) or []:
                    if executor.get("id") == executor_id and executor.get("directory"):
                        return executor["directory"]
    return None


def _has_stdout(client: httpx.Client, agent_url: str, path: str) -> bool:
    try:
        response = client.get(f"{agent_url}/files/browse", params={"path": path})
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return any(str(entry.get("path", "")).endswith("/stdout") for entry in response.json())


def find_sandbox(agent_url: str, framework_id: str | None, executor_id: str, task_id: str,
                 timeout: float = 3.0) -> str | None:
    with httpx.Client(timeout=timeout) as client:
        try:
            state = client.get(f"{agent_url}/state").json()
        except (httpx.HTTPError, ValueError) as error:
            log.debug("cannot read %s/state: %s", agent_url, error)
            return None
        directory = _executor_directory(state, framework_id, executor_id)
        if directory is None:
            return None
        for candidate in (f"{directory}/tasks/{task_id}", directory):
            if _has_stdout(client, agent_url, candidate):
                return candidate
        return directory


def resolve_sandboxes(ctx: Any, run: Any) -> None:
    """Fill `sandbox` for the run's tasks that have started somewhere and lack it."""
    for task in run.tasks:
        if task.sandbox or not task.agent_id or task.status in ("PENDING", "TASK_STAGING"):
            continue
        record = ctx.core.get(task.id)
        agent = ctx.core.agent(task.agent_id) or {}
        url = task.agent_url or agent.get("url")
        executor_id = (record.executor_id if record else None) or task.id
        if not url:
            continue
        task.agent_url = url
        task.sandbox = find_sandbox(url, ctx.core.framework_id, executor_id, task.id)
