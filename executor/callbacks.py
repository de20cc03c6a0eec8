"""dockyard's executor: thin driver callbacks over a set of task runners.

One process serves one executor id: a synthesised command executor (one task,
then exit, as Mesos's command executor), a task group (as the default executor:
a failed or killed task takes its group down), or a **warm executor** that a
scheduler keeps feeding tasks of one framework, each task its own process in
its own sandbox directory `tasks/<task_id>/` under the executor's sandbox. The
warm path avoids a new Python process per task, which is what makes high task
rates reachable.

What a task runs: its `command` (command tasks, task groups); a task given to a
custom executor cannot carry one (Mesos allows exactly one of `executor` and
`command`), so it says it in `data`: base64 of JSON `{"command": CommandInfo,
"container": ContainerInfo}` (see `task_payload`).

Callbacks validate, record and hand work to a `TaskRunner` thread; `killTask`
only signals. Standard library and addict only.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from executor.launcher import LaunchSpec, task_environment
from executor.launchers import launcher_for
from executor.task_runner import TERMINAL, StatusChecker, TaskRunner, grace_seconds
from framework.isolation import has_image
from framework.mesos.executor import TOKEN_ENV
from framework.mesos.interface import Executor
from framework.mesos.messages import new_uuid
from framework.mesos.resources import Resources

log = logging.getLogger(__name__)

SANDBOX_LABEL = "dockyard.sandbox"  # label on every update: the task's sandbox, relative to the executor's
ACK_WAIT_SECONDS = 5.0  # how long a finishing executor waits for the agent to store its last updates


def _value(obj: Any) -> str:
    return obj["value"] if isinstance(obj, dict) or hasattr(obj, "get") else str(obj)


def task_payload(task: Any) -> tuple[dict, dict | None]:
    """(CommandInfo, ContainerInfo or None) of a task: from its fields, else from its `data`."""
    command = task.get("command") or None
    container = task.get("container") or None
    if command is None and task.get("data"):
        decoded = json.loads(base64.b64decode(task["data"]))
        command = decoded.get("command")
        container = container or decoded.get("container")
    if not command:
        raise ValueError("task has no command (nor a JSON {\"command\": ...} in its data)")
    return dict(command), (dict(container) if container else None)


CheckerFactory = Callable[[Any, TaskRunner], "list[StatusChecker]"]


def no_checkers(task: Any, runner: TaskRunner) -> list[StatusChecker]:
    """The default checker chain: none. Health checks (task.health_check) plug in here."""
    return []


def task_resources(resources: list) -> tuple[dict[str, float], list[int]]:
    """A task's scalars (cpus, mem, disk, gpus: what its limits come from) and its ports in the
    order it lists them: a health check's `port_index` counts in that order (the scheduler lists
    them as the app's port definitions go), which `Resources`, a set, does not keep."""
    ports = [port for resource in resources if resource.get("name") == "ports"
             for span in (resource.get("ranges") or {}).get("range") or []
             for port in range(int(span["begin"]), int(span["end"]) + 1)]
    return dict(Resources(resources).scalars()), ports


class DockyardExecutor(Executor):
    """Runs the tasks an agent gives it; ends when the work is done (see `single_task`)."""

    def __init__(self, *, environ: dict[str, str] | None = None, single_task: bool = False,
                 idle_timeout: float = 300.0, launcher: Callable[[LaunchSpec], Any] = launcher_for,
                 checkers: CheckerFactory = no_checkers) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        # Tasks start from this environment: the agent's token for this executor is never in it
        # (the driver erases it from the process; this copy may have been taken before).
        self.environ.pop(TOKEN_ENV, None)
        self.sandbox = Path(self.environ.get("MESOS_DIRECTORY") or os.getcwd())
        self.executor_id = self.environ.get("MESOS_EXECUTOR_ID", "")
        self.work_dir = Path(self.environ.get("DOCKYARD_WORK_DIR", "/var/lib/dockyard"))
        self.single_task = single_task  # a command executor: exit after its one task
        self.idle_timeout = idle_timeout
        self.launcher = launcher
        self.checkers = checkers  # builds a task's status checker chain (health checks, later)
        self.lock = threading.Lock()
        self.runners: dict[str, TaskRunner] = {}
        self.groups: dict[str, list[str]] = {}  # task id -> the ids of its task group
        self.send_killing = False
        self.framework_user: str | None = None  # FrameworkInfo.user: tasks without CommandInfo.user run as it
        self.driver: Any = None
        self.done = threading.Event()  # the executor has nothing left to do
        self.last_busy = time.monotonic()

    # -- driver callbacks ---------------------------------------------------------------
    def registered(self, driver: Any, executorInfo: Any, frameworkInfo: Any, slaveInfo: Any) -> None:
        self.driver = driver
        capabilities = (frameworkInfo or {}).get("capabilities") or []
        self.send_killing = any(c.get("type") == "TASK_KILLING_STATE" for c in capabilities)
        self.framework_user = str((frameworkInfo or {}).get("user") or "") or None
        log.info("registered executor %s on agent %s", self.executor_id, (slaveInfo or {}).get("hostname"))

    def launchTask(self, driver: Any, task: Any) -> None:
        self.driver = driver
        self._launch(task, group=None)

    def launchTaskGroup(self, driver: Any, task_infos: list[Any]) -> None:
        self.driver = driver
        ids = [_value(task["task_id"]) for task in task_infos]
        for task in task_infos:
            self._launch(task, group=ids)

    def killTask(self, driver: Any, taskId: Any) -> None:
        task_id = _value(taskId)
        policy = getattr(driver, "kill_policies", {}).pop(task_id, None)
        with self.lock:
            runner = self.runners.get(task_id)
        if runner is None:
            log.warning("kill for unknown task %s", task_id)
            return
        runner.kill(grace_seconds(policy, runner.kill_grace) if policy else None)

    def frameworkMessage(self, driver: Any, message: Any) -> None:
        log.info("framework message ignored (%d bytes)", len(message or ""))

    def shutdown(self, driver: Any) -> None:
        """Kill every task within the shutdown grace period, then let the driver stop."""
        grace = float(getattr(driver, "grace_shutdown_period", 5.0) or 5.0)
        budget = max(grace * 0.8 - 0.5, 0.1)  # leave time to send the terminal updates
        with self.lock:
            runners = list(self.runners.values())
        for runner in runners:
            runner.kill(min(runner.kill_grace, budget))
        deadline = time.monotonic() + grace
        for runner in runners:
            runner.join(max(deadline - time.monotonic(), 0.0))
        self.done.set()

    def error(self, driver: Any, message: str) -> None:
        log.error("executor error: %s", message)
        self.done.set()

    def disconnected(self, driver: Any) -> None:
        log.warning("disconnected from the agent")

    # -- tasks -------------------------------------------------------------------------------
    def task_sandbox(self, task_id: str) -> Path:
        """The command executor's task shares the executor sandbox; others get their own."""
        if task_id == self.executor_id:
            return self.sandbox
        return self.sandbox / "tasks" / task_id

    def _launch(self, task: Any, group: list[str] | None) -> None:
        task_id = _value(task["task_id"])
        with self.lock:
            if task_id in self.runners and self.runners[task_id].state not in TERMINAL:
                log.warning("task %s is already running here", task_id)
                return
        sandbox = self.task_sandbox(task_id)
        try:
            command, container = task_payload(task)
        except ValueError as error:
            self._status(task_id, "TASK_FAILED", f"Invalid task: {error}", "REASON_TASK_INVALID", None)
            return
        scalars, ports = task_resources(task.get("resources") or [])
        env = task_environment(self.environ)
        env.update({"MESOS_SANDBOX": str(sandbox), "MESOS_TASK_ID": task_id})
        if task_id != self.executor_id:
            env["MESOS_DIRECTORY"] = str(sandbox)
        from executor.containers.records import new_container_id

        spec = LaunchSpec(task_id=task_id, command=command, env=env, sandbox=sandbox, resources=scalars,
                          ports=ports, container=container, work_dir=self.work_dir,
                          user=command.get("user") or self.framework_user,
                          container_id=new_container_id(self.work_dir, task_id))
        try:
            launcher = self.launcher(spec)
        except Exception as error:  # no launcher for this container: fail the task, keep serving
            self._status(task_id, "TASK_FAILED", f"Failed to launch task: {error}",
                         "REASON_CONTAINER_LAUNCH_FAILED", None)
            return
        runner = TaskRunner(task_id, spec, launcher, self._notify,
                            kill_grace=grace_seconds(task.get("kill_policy")), send_killing=self.send_killing,
                            # the command executor reports it always, as Mesos's does
                            send_starting=(self.single_task or bool(spec.command.get("uris"))
                                           or has_image(spec.container)))
        runner.checkers = list(self.checkers(task, runner))
        # The task's Mesos HealthCheck joins the runner's status-checker chain: it reports
        # health changes and kills after too many failures.
        try:
            from executor.health import check_checkers, checkers_for

            runner.checkers.extend(checkers_for(task.get("health_check"), runner))
            runner.checkers.extend(check_checkers(task.get("check"), runner))
        except ValueError as error:
            self._status(task_id, "TASK_FAILED", f"Invalid health check: {error}", "REASON_TASK_INVALID", None)
            return
        with self.lock:
            self.runners[task_id] = runner
            if group:
                for member in group:
                    self.groups[member] = group
            self.last_busy = time.monotonic()
        runner.start()

    def _notify(self, runner: TaskRunner, state: str, message: str | None, reason: str | None,
                healthy: bool | None, check_status: dict | None = None) -> None:
        self._status(runner.task_id, state, message, reason, healthy, check_status)
        if state in TERMINAL:
            self._task_ended(runner, state)

    def _status(self, task_id: str, state: str, message: str | None, reason: str | None,
                healthy: bool | None, check_status: dict | None = None) -> None:
        relative = os.path.relpath(self.task_sandbox(task_id), self.sandbox)
        status: dict[str, Any] = {
            "task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
            "executor_id": {"value": self.executor_id}, "uuid": new_uuid(), "timestamp": time.time(),
            "labels": {"labels": [{"key": SANDBOX_LABEL, "value": relative}]},
        }
        if message:
            status["message"] = message
        if reason:
            status["reason"] = reason
        if healthy is not None:
            status["healthy"] = healthy
        if check_status is not None:
            status["check_status"] = check_status
        container = self._container_id(task_id)
        if container is not None:
            status["container_status"] = {"container_id": container}
        try:
            self.driver.sendStatusUpdate(status)
        except Exception:
            log.exception("status update %s for %s refused", state, task_id)

    def _container_id(self, task_id: str) -> dict | None:
        """The task's ContainerID, nested in this executor's own (as Mesos's default executor names
        its tasks' containers): what a debug session is launched under (docs/exec.md)."""
        runner = self.runners.get(task_id)
        parent = getattr(self.driver, "container_id", None)
        if runner is None or not runner.spec.container_id or not parent or not parent.get("value"):
            return None
        return {"value": runner.spec.container_id, "parent": {"value": str(parent["value"])}}

    def _task_ended(self, runner: TaskRunner, state: str) -> None:
        with self.lock:
            group = self.groups.pop(runner.task_id, None)
            others = [self.runners[t] for t in group or [] if t in self.runners and t != runner.task_id]
            self.last_busy = time.monotonic()
            live = [r for r in self.runners.values() if r.state not in TERMINAL]
        if state != "TASK_FINISHED":
            for other in others:  # the default executor's rule: one failure ends the group
                other.kill()
        if self.single_task and not live:
            self.done.set()

    def idle(self) -> bool:
        """No live task for `idle_timeout` seconds (warm executors end themselves then)."""
        with self.lock:
            # Forget finished runners so a long-lived executor does not grow.
            self.runners = {k: v for k, v in self.runners.items() if v.state not in TERMINAL}
            if self.runners:
                return False
            return self.idle_timeout > 0 and time.monotonic() - self.last_busy > self.idle_timeout
