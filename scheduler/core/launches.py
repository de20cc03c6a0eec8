"""A round's placements made launches: secrets resolved, records stored as LAUNCHED, TaskInfos built.

Nothing unstored is launched: the framework id the tasks will run under and every
task's LAUNCHED record are written first; if the store refuses either, the round
launches nothing and its tasks wait in the queue for the next offer.

Not locked itself: called with the core's lock held.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from framework.errors import DockyardError
from scheduler.core.config import CoreConfig
from scheduler.core.identity import FrameworkId
from scheduler.core.launch_queue import LaunchQueue
from scheduler.core.metrics import TASKS_LAUNCHED
from scheduler.core.records import TaskBook
from scheduler.mesos_json import executor_info, task_info
from scheduler.placement.pipeline import Plan


@dataclass
class Launches:
    """What one round launches: TaskInfos by agent id, and the tasks that cannot launch."""

    by_agent: dict[str, list[dict]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # task id -> why (its secrets)


class Launcher:
    """Turns a plan into Launches, taking the launched and the refused off the queue."""

    def __init__(self, config: CoreConfig, records: TaskBook, queue: LaunchQueue, identity: FrameworkId,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.records = records
        self.queue = queue
        self.identity = identity
        self.clock = clock
        self.secrets: Any = None  # resolves TaskRequest.secrets at launch (scheduler/secrets/store.py)

    def launch(self, plan: Plan, offers_by_agent: dict[str, list[dict]]) -> Launches:
        """Launch what the plan placed; the plan's assignments end as what was launched."""
        resolved, refused = self._secrets_for(plan)
        launches = Launches(refused=refused)
        hostnames = {agent_id: offers[0].get("hostname") for agent_id, offers in offers_by_agent.items()}
        warm = self.config.executor_id if self.config.executor_command else None
        if not (self.identity.save() and self.records.launch(plan.assignments, hostnames, warm, self.clock())):
            plan.assignments, plan.unplaced = [], []
            return launches
        executor = self._executor()
        for assignment in plan.assignments:
            request = assignment.request
            self.queue.launched(request.task_id)
            launches.by_agent.setdefault(assignment.agent_id, []).append(
                task_info(request, assignment.agent_id, assignment.ports, executor,
                          hostname=assignment.hostname, secrets=resolved.get(request.task_id)))
        TASKS_LAUNCHED.inc(len(plan.assignments))
        return launches

    def _secrets_for(self, plan: Plan) -> tuple[dict[str, list], dict[str, str]]:
        """The secrets of this round's launches: (task id -> [(use, value, version)], task id
        -> why it cannot have them). Values live only until the ACCEPT is built; the record
        keeps the versions, so `app show` can say which one each task got. The tasks
        refused leave the plan and the queue."""
        resolved: dict[str, list] = {}
        refused: dict[str, str] = {}
        for assignment in plan.assignments:
            request = assignment.request
            if not request.secrets:
                continue
            if self.secrets is None:
                refused[request.task_id] = "this scheduler has no secret store"
                continue
            try:
                resolved[request.task_id] = self.secrets.resolve(request.secrets)
            except DockyardError as error:
                refused[request.task_id] = str(error)
                continue
            self.records[request.task_id].secrets = {use.source: version
                                                     for use, _, version in resolved[request.task_id]}
        if refused:
            plan.assignments = [a for a in plan.assignments if a.request.task_id not in refused]
            for task_id in refused:
                self.queue.remove(task_id)
        return resolved, refused

    def _executor(self) -> dict | None:
        if not self.config.executor_command:
            return None
        return executor_info(self.config.executor_command, self.config.executor_id,
                             self.config.framework_name, self.identity.value)
