"""The master's half of task status: kills, reconciliation, and reliable status updates.

Status updates go to the framework one at a time per task, oldest first, and are
retried with back-off until acknowledged (Mesos's src/master/master.cpp,
`Master::forward` and `Master::acknowledge`); reconciliation answers come from
the master's own records and carry no uuid (`Master::reconcile`). Mixed into
`Master`, which owns the state these methods read and write.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.local.master.model import Framework, Task
from framework.local.master.model import id_obj as _id, id_value as _val
from framework.mesos.messages import TERMINAL_STATES

if TYPE_CHECKING:
    from framework.local.master.core import Master

MAX_UPDATE_RETRY = 600.0  # longest wait between resends of an unacknowledged update


class TaskUpdates:
    """Kill, reconcile, forward and acknowledge: the task-status methods of `Master`."""

    def kill(self: "Master", fw: Framework, kill: dict[str, Any]) -> None:
        task_id = _val(kill.get("task_id")) or ""
        task = fw.tasks.get(task_id)
        if task is not None and not task.terminal:
            payload: dict[str, Any] = {"framework_id": _id(fw.id), "task_id": _id(task_id)}
            if "kill_policy" in kill:
                payload["kill_policy"] = kill["kill_policy"]
            self._to_agent(self.agents.get(task.agent_id), "KILL_TASK", payload)
            return
        if task is not None:
            return  # terminal, waiting for its ACK: nothing to kill
        # Unknown task: answered as an explicit reconciliation of that task (`Master::kill`).
        self.reconcile(fw, [{"task_id": kill["task_id"], **(
            {"agent_id": kill["agent_id"]} if "agent_id" in kill else {})}])

    def reconcile(self: "Master", fw: Framework, tasks: list[dict[str, Any]]) -> None:
        """Explicit and implicit reconciliation (`Master::_reconcileTasks`); answers carry no uuid."""
        if not tasks:
            for task in list(fw.tasks.values()) + list(fw.unreachable_tasks.values()):
                self._reconcile_known(fw, task)
            return
        for entry in tasks:
            task_id = _val(entry.get("task_id")) or ""
            agent_id = _val(entry.get("agent_id"))
            task = fw.tasks.get(task_id) or fw.unreachable_tasks.get(task_id)
            if task is not None:
                self._reconcile_known(fw, task)
            elif (agent_id in self.recovering) if agent_id is not None else bool(self.recovering):
                continue  # its agent may still come back with it: no answer yet (`Master::_reconcileTasks`)
            elif agent_id is not None and agent_id in self.agents:
                self._master_update(fw, task_id, "TASK_GONE", "REASON_RECONCILIATION",
                                    "Reconciliation: Task is unknown to the agent",
                                    agent_id=agent_id)
            elif agent_id is not None and agent_id in self.unreachable_agents:
                self._master_update(
                    fw, task_id, "TASK_UNREACHABLE", "REASON_RECONCILIATION",
                    "Reconciliation: Task is unreachable", agent_id=agent_id,
                    extra={"unreachable_time": {"nanoseconds": int(
                        self.unreachable_agents[agent_id] * 1e9)}})
            else:
                self._master_update(fw, task_id, "TASK_UNKNOWN", "REASON_RECONCILIATION",
                                    "Reconciliation: Task is unknown", agent_id=agent_id)

    def _reconcile_known(self: "Master", fw: Framework, task: Task) -> None:
        state = task.status_update_state or task.state
        extra: dict[str, Any] = {}
        if task.executor_id:
            extra["executor_id"] = _id(task.executor_id)
        latest = task.latest_status()
        if latest is not None and "healthy" in latest:
            extra["healthy"] = latest["healthy"]
        if task.unreachable_time is not None:
            extra["unreachable_time"] = {"nanoseconds": int(task.unreachable_time * 1e9)}
        self._master_update(fw, task.task_id, state, "REASON_RECONCILIATION",
                            "Reconciliation: Latest task state", agent_id=task.agent_id,
                            extra=extra)

    # ------------------------------------------------------------ status updates
    def _forward(self: "Master", task: Task, reset: bool = False) -> None:
        """Send the oldest unacknowledged update of `task`; retry until ACKed."""
        if not task.pending:
            return
        fw = self.frameworks.get(task.framework_id)
        status = task.pending[0]
        task.status_update_state = status["state"]
        task.status_update_uuid = status.get("uuid")
        if fw is not None:
            self._send(fw, {"type": "UPDATE", "update": {"status": status}})
        if task.retry is not None:
            task.retry.cancel()
        if reset or task.retry_delay <= 0:
            task.retry_delay = self.config.status_update_retry
        else:
            task.retry_delay = min(task.retry_delay * 2, MAX_UPDATE_RETRY)
        task.retry = self._loop().call_later(task.retry_delay, self._retry, task,
                                             status.get("uuid"))

    def _retry(self: "Master", task: Task, uuid: str | None) -> None:
        task.retry = None
        if task.pending and task.pending[0].get("uuid") == uuid:
            self._forward(task)

    def acknowledge(self: "Master", fw: Framework, ack: dict[str, Any]) -> None:
        agent_id = _val(ack.get("agent_id")) or ""
        task_id = _val(ack.get("task_id")) or ""
        uuid = str(ack.get("uuid"))
        agent = self.agents.get(agent_id)
        task = fw.tasks.get(task_id)
        if agent is None or task is None or not task.pending or \
                task.pending[0].get("uuid") != uuid:
            self.counters["invalid_status_update_acknowledgements"] += 1
            if agent is not None:
                self._to_agent(agent, "ACKNOWLEDGE", {"framework_id": _id(fw.id),
                                                       "task_id": _id(task_id), "uuid": uuid})
            return
        self.counters["valid_status_update_acknowledgements"] += 1
        status = task.pending.popleft()
        if task.retry is not None:
            task.retry.cancel()
            task.retry = None
        task.retry_delay = 0.0
        self._to_agent(agent, "ACKNOWLEDGE", {"framework_id": _id(fw.id),
                                               "task_id": _id(task_id), "uuid": uuid})
        if status["state"] in TERMINAL_STATES and not task.pending:
            self._remove_task(fw, task)
        else:
            self._forward(task)
