"""What a previous run of the agent left on disk, read back for recovery.

The agent checkpoints as the Mesos agent does (slave/paths.hpp): `meta/slaves/latest.json`
names the agent id; below `meta/slaves/<id>/frameworks/` each framework's info and each
executor run's `run.json` with its tasks' `task.json` and `task.updates`; `status.updates`
holds the status updates not yet acknowledged. This module only reads that tree into
records; deciding which executors live on and failing the rest is the agent's
(`Agent.recover`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from framework.local.agent import checkpoint, sandbox
from framework.local.agent.model import ExecutorRecord, TaskRecord
from framework.mesos.messages import TERMINAL_STATES


@dataclass
class RecoveredRun:
    """One executor run found on disk, with its tasks that had not ended."""

    framework_info: dict
    executor: ExecutorRecord
    start_time: object  # as proctree.start_time wrote it; None when unknown


@dataclass
class Checkpointed:
    agent_id: str
    runs: list[RecoveredRun] = field(default_factory=list)
    pending_updates: dict[str, dict] = field(default_factory=dict)  # uuid -> unacknowledged update
    update_lines: int = 0  # lines of status.updates read, for compaction


def read(work_dir: Path) -> Checkpointed | None:
    """The checkpointed state of the agent that last used `work_dir`; None when there is none."""
    latest = checkpoint.read_json(work_dir / "meta" / "slaves" / "latest.json")
    if not latest or not latest.get("agent_id"):
        return None
    found = Checkpointed(latest["agent_id"])
    root = sandbox.meta_dir(work_dir, found.agent_id) / "frameworks"
    for run_file in sorted(root.glob("*/executors/*/runs/*/run.json")):
        run = checkpoint.read_json(run_file)
        framework_info = checkpoint.read_json(run_file.parents[4] / "framework.info")
        if run and framework_info:
            executor = ExecutorRecord(run["info"], framework_info["id"]["value"], run["container_id"],
                                      Path(run["directory"]), bool(run.get("command_executor")),
                                      pid=int(run["pid"]))
            executor.tasks.update(_live_tasks(run_file.parent / "tasks", executor))
            found.runs.append(RecoveredRun(framework_info, executor, run.get("start_time")))
    for line in checkpoint.read_lines(sandbox.meta_dir(work_dir, found.agent_id) / "status.updates"):
        if "update" in line:
            found.pending_updates[line["update"]["status"]["uuid"]] = line["update"]
        else:
            found.pending_updates.pop(line.get("ack", ""), None)
        found.update_lines += 1
    return found


def _live_tasks(tasks_dir: Path, executor: ExecutorRecord) -> dict[str, TaskRecord]:
    """The run's tasks whose last checkpointed state is not terminal."""
    tasks = {}
    for task_file in sorted(tasks_dir.glob("*/task.json")):
        saved = checkpoint.read_json(task_file)
        if not saved:
            continue
        updates = checkpoint.read_lines(task_file.parent / "task.updates")
        state = updates[-1]["state"] if updates else saved.get("state", "TASK_STAGING")
        if state not in TERMINAL_STATES:
            task = TaskRecord(saved["info"], executor.framework_id, executor.id, state, delivered=True,
                              checkpointed=True)
            tasks[task.id] = task
    return tasks
