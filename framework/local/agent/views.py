"""What the embedded agent shows: `/state`, `/monitor/statistics` and the numbers of `/metrics`.

Read-only renderings of an `Agent`'s records, in the shapes of Mesos's
src/slave/http.cpp (`Http::state`, `Http::statistics`) and src/slave/metrics.cpp.
"""
from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import TYPE_CHECKING

from framework.local.agent.link import VERSION
from framework.local.agent.model import ExecutorRecord, FrameworkRecord, TaskRecord
from framework.local.agent.processes import container_statistics
from framework.mesos.resources import Resources, attribute_value
from framework.proctree import descendants

if TYPE_CHECKING:
    from framework.local.agent.core import Agent


def state(agent: Agent) -> dict:
    """The legacy agent `/state` JSON."""
    return {
        "version": VERSION,
        "id": agent.agent_id or "",
        "pid": agent.address.pid,
        "hostname": agent.config.hostname,
        "start_time": agent.start_time,
        "master_hostname": (agent.link.master or "").split(":")[0],
        "resources": agent.config.resources.flat(),
        "attributes": {a["name"]: attribute_value(a) for a in agent.config.attributes},
        "flags": {"master": agent.config.master, "work_dir": str(agent.config.work_dir),
                  "port": str(agent.config.port), "hostname": agent.config.hostname,
                  "executor_registration_timeout": f"{agent.config.registration_timeout:g}secs",
                  "executor_shutdown_grace_period": f"{agent.config.shutdown_grace:g}secs"},
        "frameworks": [_framework_json(agent, f) for f in agent.frameworks.values()],
        "completed_frameworks": [_framework_json(agent, f) for f in agent.completed_frameworks],
    }

def _framework_json(agent: Agent, framework: FrameworkRecord) -> dict:
    info = framework.info
    return {
        "id": framework.id, "name": info.get("name", ""), "user": info.get("user", ""),
        "hostname": info.get("hostname", ""), "role": info.get("role", "*"),
        "checkpoint": framework.checkpoint,
        "executors": [_executor_json(agent, e) for e in framework.executors.values()],
        "completed_executors": [_executor_json(agent, e) for e in framework.completed],
    }

def _executor_json(agent: Agent, executor: ExecutorRecord) -> dict:
    def task_json(task: TaskRecord) -> dict:
        return {
            "id": task.id, "name": task.info.get("name", ""), "framework_id": task.framework_id,
            "executor_id": "" if executor.command_executor else executor.id,
            "slave_id": agent.agent_id or "", "state": task.state,
            "resources": Resources(task.info.get("resources", [])).flat(),
            "statuses": task.statuses, "labels": task.info.get("labels", {}).get("labels", []),
        }
    queued = {t for q in executor.queued for t in q["tasks"]}
    return {
        "id": executor.id, "name": executor.info.get("name", ""),
        "source": executor.info.get("source", ""), "container": executor.container_id,
        "directory": str(executor.directory),
        "resources": (Resources(executor.info.get("resources", []))
                      + sum((Resources(t.info.get("resources", [])) for t in executor.tasks.values()),
                            Resources())).flat(),
        "tasks": [task_json(t) for t in executor.tasks.values() if t.id not in queued],
        "queued_tasks": [task_json(t) for t in executor.tasks.values() if t.id in queued],
        "completed_tasks": [task_json(t) for t in executor.completed],
    }

def monitor_statistics(agent: Agent) -> list[dict]:
    """`/monitor/statistics`: usage per live executor (its whole process tree)."""
    out = []
    for framework in agent.frameworks.values():
        for executor in framework.executors.values():
            if executor.pid is None or executor.terminated:
                continue
            pids = [executor.pid, *descendants(executor.pid)]
            stats = container_statistics(executor.pid, pids)
            limits = Resources(executor.info.get("resources", [])) + sum(
                (Resources(t.info.get("resources", [])) for t in executor.tasks.values()), Resources())
            stats["cpus_limit"] = limits.scalar("cpus")
            stats["mem_limit_bytes"] = int(limits.scalar("mem") * 1024 * 1024)
            out.append({
                "executor_id": executor.id, "executor_name": executor.info.get("name", ""),
                "framework_id": framework.id, "source": executor.info.get("source", ""),
                "container_id": executor.container_id, "statistics": stats,
            })
    return out

def summary(agent: Agent) -> dict[str, float]:
    """Numbers for /metrics and /metrics/snapshot."""
    tasks: collections.Counter = collections.Counter()
    executors = 0
    for framework in agent.frameworks.values():
        for executor in framework.executors.values():
            executors += 1
            for task in executor.tasks.values():
                tasks[task.state] += 1
    return {
        "slave/registered": 1.0 if agent.link.registered.is_set() else 0.0,
        "slave/uptime_secs": time.time() - agent.start_time,
        "slave/frameworks_active": float(len(agent.frameworks)),
        "slave/executors_running": float(executors),
        "slave/tasks_staging": float(tasks["TASK_STAGING"]),
        "slave/tasks_starting": float(tasks["TASK_STARTING"]),
        "slave/tasks_running": float(tasks["TASK_RUNNING"]),
        "slave/tasks_killing": float(tasks["TASK_KILLING"]),
        "slave/status_updates_pending": float(len(agent.pending_updates)),
        **{f"slave/{name}": float(value) for name, value in agent.counters.items()},
    }


def sandbox_user(agent: Agent, path: Path) -> str | None:
    """Whose sandbox `path` is, for the `access_sandboxes` ACL: the executor's command user,
    else its framework's user; None when the path names no framework the agent knows."""
    try:
        parts = path.relative_to(agent.config.work_dir.resolve()).parts
    except ValueError:
        return None
    if len(parts) < 4 or parts[0] != "slaves" or parts[2] != "frameworks":
        return None
    framework_id = parts[3]
    executor_id = parts[5] if len(parts) >= 6 and parts[4] == "executors" else None
    frameworks = [f for f in (agent.frameworks.get(framework_id), *agent.completed_frameworks)
                  if f is not None and f.id == framework_id]
    for framework in frameworks:
        if executor_id is not None:
            executors = [framework.executors.get(executor_id)]
            executors += [e for e in framework.completed if e.id == executor_id]
            for executor in executors:
                if executor is not None and (executor.info.get("command") or {}).get("user"):
                    return str(executor.info["command"]["user"])
        if framework.info.get("user"):
            return str(framework.info["user"])
    return None
