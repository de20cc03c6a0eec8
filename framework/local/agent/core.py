"""`dockyard agent`: the embedded Mesos agent.

It registers with the master (docs/internal-protocol.md), launches executors the
way a Mesos agent does (sandbox layout, `MESOS_*` environment, executor API),
relays their status updates to the master until acknowledged, and reports
executors that exit. One asyncio loop owns all of this state; HTTP handlers
(routes.py) only translate and call in here.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import shlex
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from framework.local.agent import checkpoint, recovery, sandbox
from framework.local.agent.link import VERSION, MasterLink
from framework.local.agent.model import (
    COMPLETED_KEPT, AgentConfig, ExecutorCallError, ExecutorRecord, FrameworkRecord, TaskRecord, container_status,
    event, raw_wait_status,
)
from framework.local.agent.processes import (
    ContainerReaper, containers_in, kill_processes_in, kill_sandbox_processes, task_sandbox,
)
from framework.local.agent.security import master_access, verify_executor_claims
from framework.local.agent.nested import NestedContainers
from framework.local.master.security import executor_user
from framework.mesos.messages import TERMINAL_STATES, new_uuid
from framework.mesos.secrets import checkpointed
from framework.proctree import kill_tree, same_process, start_time
from framework.security.authn import Principal

log = logging.getLogger(__name__)

UPDATES_COMPACT_LINES = 10000  # status.updates lines before acknowledged ones are dropped

class Agent:
    """The agent's state and everything that changes it; single-threaded (asyncio)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.address = sandbox.AgentAddress(config.ip, config.port)
        self.frameworks: dict[str, FrameworkRecord] = {}
        self.completed_frameworks: collections.deque = collections.deque(maxlen=COMPLETED_KEPT)
        self.pending_updates: dict[str, dict] = {}  # uuid -> UPDATE call not yet ACKed by the master
        self._updates_lines = 0  # lines in status.updates (see _checkpoint_ack)
        self.start_time = time.time()
        self.counters: collections.Counter = collections.Counter()
        self.link = MasterLink(config.master, registration=self._registration_call,
                               on_record=self._on_master_record, on_registered=self._on_registered,
                               access=master_access(config.security))
        self._exit_waiters: set[asyncio.Task] = set()
        self.reaper = ContainerReaper(config.work_dir)
        self._reaping = False  # on between the start-up clean-up and stop(), which clean all
        # Tasks reported terminal while their executor runs on, checked after the grace period.
        self._ended_tasks: list[tuple[FrameworkRecord, ExecutorRecord, str]] = []
        self._ended_check: asyncio.TimerHandle | None = None
        self.nested = NestedContainers(self)  # debug sessions and nested containers (api.py)

    @property
    def agent_id(self) -> str | None:
        return self.link.agent_id

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        await self.nested.recover()
        if self.config.cleanup:
            # Everything a crash left, except the containers of executors that live on.
            keep = [str(e.directory) for f in self.frameworks.values() for e in f.executors.values()
                    if not e.terminated]
            if keep:
                log.info("clean-up keeps the containers of %d recovered executor(s)", len(keep))
            await self.reaper.clean_up(*(a for d in keep for a in ("--keep", d)))
            self._reaping = True
        await self.link.start()

    async def stop(self) -> None:
        """Graceful shutdown: end every executor, then tell the master we are gone."""
        self._reaping = False  # the clean-up below takes every container at once
        await self.nested.close()
        for framework in list(self.frameworks.values()):
            for executor in list(framework.executors.values()):
                self._destroy(executor, "REASON_AGENT_REMOVED")
        if self._exit_waiters:
            await asyncio.wait(self._exit_waiters, timeout=5.0)
        if self.config.cleanup:  # nothing of ours runs any more: leave no cgroups/mounts behind
            await self.reaper.clean_up()
        await self.link.stop(unregister=True)

    def close_streams(self) -> None:
        """End every executor's event stream (the agent is going away)."""
        for framework in self.frameworks.values():
            for executor in framework.executors.values():
                if executor.stream is not None:
                    executor.stream.put_nowait(None)

    # -- registration ---------------------------------------------------------------------
    def agent_info(self) -> dict:
        info: dict[str, Any] = {
            "hostname": self.config.hostname, "port": self.config.port,
            "resources": self.config.resources.to_json(), "attributes": self.config.attributes,
        }
        if self.agent_id:
            info["id"] = {"value": self.agent_id}
        return info

    def _registration_call(self, agent_id: str | None) -> dict:
        base = {"agent_info": self.agent_info(), "ip": self.config.ip, "version": VERSION}
        if agent_id is None:
            return {"type": "REGISTER", **base}
        frameworks, executors, tasks = [], [], []
        for framework in self.frameworks.values():
            frameworks.append(framework.info)
            for executor in framework.executors.values():
                if executor.terminated:
                    continue
                if not executor.command_executor:
                    executors.append({"framework_id": {"value": framework.id}, "executor_info": executor.info})
                for task in executor.tasks.values():
                    tasks.append({
                        "task_id": task.info["task_id"], "framework_id": {"value": framework.id},
                        "executor_id": {"value": executor.id}, "name": task.info.get("name", ""),
                        "state": task.state, "resources": task.info.get("resources", []),
                        "labels": task.info.get("labels", {}),
                    })
        updates = [{"framework_id": call["framework_id"], "status": call["status"],
                    "latest_state": call["latest_state"]} for call in self.pending_updates.values()]
        return {"type": "REREGISTER", "agent_id": {"value": agent_id}, **base, "frameworks": frameworks,
                "executors": executors, "tasks": tasks, "updates": updates}

    async def _on_registered(self, kind: str, body: dict) -> None:
        agent_id = body["agent_id"]["value"]
        meta = sandbox.meta_dir(self.config.work_dir, agent_id)
        checkpoint.write_json(meta / "slave.info", {**self.agent_info(), "id": {"value": agent_id}})
        checkpoint.write_json(self.config.work_dir / "meta" / "slaves" / "latest.json", {"agent_id": agent_id})
        if kind == "REGISTERED":
            # A fresh registration: whatever we ran belongs to an identity the master dropped.
            self.pending_updates.clear()
            for framework in list(self.frameworks.values()):
                self.shutdown_framework(framework.id)
        self.counters["registrations"] += 1

    # -- records from the master ------------------------------------------------------------
    async def _on_master_record(self, record: dict) -> None:
        kind = record.get("type")
        body = record.get(str(kind).lower(), {}) or {}
        self.counters[f"master_records/{kind}"] += 1
        if kind == "RUN_TASK":
            self.run_task(body["framework_info"], body["task"])
        elif kind == "RUN_TASK_GROUP":
            self.run_task_group(body["framework_info"], body["executor"], body["task_group"])
        elif kind == "KILL_TASK":
            self.kill_task(body["framework_id"]["value"], body["task_id"]["value"], body.get("kill_policy"))
        elif kind == "SHUTDOWN_EXECUTOR":
            framework = self.frameworks.get(body["framework_id"]["value"])
            executor = framework.executors.get(body["executor_id"]["value"]) if framework else None
            if executor is not None:
                self.shutdown_executor(executor, "TASK_KILLED")
        elif kind == "SHUTDOWN_FRAMEWORK":
            self.shutdown_framework(body["framework_id"]["value"])
        elif kind == "ACKNOWLEDGE":
            if self.pending_updates.pop(body.get("uuid", ""), None) is not None:
                self._checkpoint_ack(body.get("uuid", ""))
        elif kind == "MESSAGE":
            framework = self.frameworks.get(body["framework_id"]["value"])
            executor = framework.executors.get(body["executor_id"]["value"]) if framework else None
            if executor is not None and executor.stream is not None:
                executor.stream.put_nowait(event("MESSAGE", data=body.get("data", "")))
        elif kind == "UPDATE_FRAMEWORK":
            info = body.get("framework_info", {})
            framework = self.frameworks.get(info.get("id", {}).get("value", ""))
            if framework is not None:
                framework.info = info
        elif kind == "SHUTDOWN":
            log.warning("master shut this agent down: %s", body.get("message", ""))
            for framework in list(self.frameworks.values()):
                self.shutdown_framework(framework.id)
            self.link.forget_id()
            self.link.reconnect()
        elif kind != "HEARTBEAT":
            log.warning("unknown record from the master: %s", kind)

    # -- launching ------------------------------------------------------------------------------
    def _framework(self, info: dict) -> FrameworkRecord:
        framework_id = info["id"]["value"]
        framework = self.frameworks.get(framework_id)
        if framework is None:
            framework = self.frameworks[framework_id] = FrameworkRecord(info)
            if framework.checkpoint and self.agent_id:
                meta = sandbox.meta_dir(self.config.work_dir, self.agent_id) / "frameworks" / framework_id
                checkpoint.write_json(meta / "framework.info", info)
        else:
            framework.info = info
        return framework

    def command_executor_info(self, framework_id: str, task: dict) -> dict:
        """The executor Mesos synthesises for a command task: executor_id = task id."""
        task_id = task["task_id"]["value"]
        command = task.get("command", {})
        shown = command.get("value", "") if command.get("shell", True) else shlex.join(
            command.get("arguments") or [command.get("value", "")])
        executor_command: dict[str, Any] = {"shell": False, "value": self.config.executor_command[0],
                                            "arguments": list(self.config.executor_command)}
        if command.get("user"):
            executor_command["user"] = command["user"]  # as Mesos's getExecutorInfo (slave.cpp)
        return {
            "executor_id": {"value": task_id},
            "framework_id": {"value": framework_id},
            "name": f"Command Executor (Task: {task_id}) (Command: sh -c '{shown[:64]}')",
            "source": task_id,
            "command": executor_command,
            "resources": [],
        }

    def _refused(self, framework: FrameworkRecord, tasks: list[dict]) -> bool:
        """Fail `tasks` (a task or a whole group) whose containers the agent's policy forbids,
        before any executor starts; the executor checks again where it mounts."""
        reasons = [why for task in tasks if (why := self.config.container_policy.refusal(task.get("container")))]
        if not reasons:
            return False
        for task in tasks:
            log.warning("refusing task %s: %s", task["task_id"]["value"], reasons[0])
            self._agent_update(framework.id, None, task["task_id"]["value"], "TASK_FAILED",
                               f"Failed to launch container: {reasons[0]}", "REASON_CONTAINER_LAUNCH_FAILED")
        return True

    def run_task(self, framework_info: dict, task: dict) -> None:
        framework = self._framework(framework_info)
        if self._refused(framework, [task]):
            return
        command_task = "executor" not in task
        info = self.command_executor_info(framework.id, task) if command_task else task["executor"]
        executor = self._executor_for(framework, info, command_task)
        record = TaskRecord(task, framework.id, executor.id)
        executor.tasks[record.id] = record
        self._checkpoint_task(framework, executor, record)
        self._deliver(executor, [record], event("LAUNCH", task=task))

    def run_task_group(self, framework_info: dict, executor_info: dict, group: dict) -> None:
        framework = self._framework(framework_info)
        if self._refused(framework, list(group.get("tasks", []))):
            return
        info = dict(executor_info)
        if not info.get("command"):
            # A DEFAULT executor: ours stands in for mesos-default-executor.
            info["command"] = {"shell": False, "value": self.config.executor_command[0],
                               "arguments": list(self.config.executor_command)}
        executor = self._executor_for(framework, info, command_task=False)
        records = []
        for task in group.get("tasks", []):
            record = TaskRecord(task, framework.id, executor.id)
            executor.tasks[record.id] = record
            self._checkpoint_task(framework, executor, record)
            records.append(record)
        self._deliver(executor, records, event("LAUNCH_GROUP", task_group=group))

    def _executor_for(self, framework: FrameworkRecord, info: dict, command_task: bool) -> ExecutorRecord:
        executor_id = info["executor_id"]["value"]
        executor = framework.executors.get(executor_id)
        if executor is not None and not executor.terminated and executor.terminating is None:
            return executor
        container_id = str(uuid.uuid4())
        assert self.agent_id is not None
        directory = sandbox.executor_dir(self.config.work_dir, self.agent_id, framework.id, executor_id,
                                         container_id)
        executor = ExecutorRecord(info, framework.id, container_id, directory, command_task)
        framework.executors[executor_id] = executor
        self.counters["executors_launched"] += 1
        if framework.checkpoint:
            meta = sandbox.executor_meta_dir(self.config.work_dir, self.agent_id, framework.id, executor_id)
            checkpoint.write_json(meta / "executor.info", info)
        self._spawn(framework, executor)
        return executor

    def _deliver(self, executor: ExecutorRecord, records: list[TaskRecord], launch: bytes) -> None:
        if executor.stream is not None:
            for record in records:
                record.delivered = True
            executor.stream.put_nowait(launch)
        else:
            executor.queued.append({"event": launch, "tasks": [r.id for r in records]})

    def _spawn(self, framework: FrameworkRecord, executor: ExecutorRecord) -> None:
        """Start the executor process (`_run_executor` waits for its exit); arm the registration timeout."""
        command = executor.info.get("command") or {}
        command_env = {v["name"]: str(v.get("value", ""))
                       for v in (command.get("environment") or {}).get("variables") or []
                       if v.get("type", "VALUE") == "VALUE" and "name" in v}
        grace_nanos = (executor.info.get("shutdown_grace_period") or {}).get("nanoseconds")
        grace = float(grace_nanos) / 1e9 if grace_nanos is not None else self.config.shutdown_grace
        env = sandbox.executor_environment(
            framework_id=framework.id, executor_id=executor.id, directory=executor.directory,
            agent_id=self.agent_id or "", address=self.address, checkpoint=framework.checkpoint,
            shutdown_grace=grace, work_dir=self.config.work_dir,
            recovery_timeout=self.config.recovery_timeout,
            subscription_backoff_max=self.config.subscription_backoff_max, command_env=command_env)
        if executor.command_executor:
            env["DOCKYARD_COMMAND_EXECUTOR"] = "1"
        # The executor's token (and TLS settings) and the agent's container policy and isolation:
        # last, so no CommandInfo variable replaces them.
        env.update(self.config.security.executor_environment(
            framework_id=framework.id, executor_id=executor.id, container_id=executor.container_id))
        env.update(self.config.container_policy.to_env())
        if "DOCKYARD_ISOLATION" in os.environ:
            env["DOCKYARD_ISOLATION"] = os.environ["DOCKYARD_ISOLATION"]
        task = asyncio.create_task(self._run_executor(framework, executor, command, env))
        self._exit_waiters.add(task)
        task.add_done_callback(self._exit_waiters.discard)
        loop = asyncio.get_running_loop()
        executor.timers.append(loop.call_later(self.config.registration_timeout,
                                               self._registration_timed_out, executor))

    async def _run_executor(self, framework: FrameworkRecord, executor: ExecutorRecord, command: dict,
                            env: dict[str, str]) -> None:
        user = executor_user(executor.info, framework.info)
        try:
            sandbox.create_sandbox(executor.directory, user)
        except KeyError:
            log.warning("executor %s: user %r does not exist on this agent", executor.id, user)
            self._executor_gone(framework, executor, None, "REASON_CONTAINER_LAUNCH_FAILED",
                                f"Failed to create the sandbox: user '{user}' does not exist on this agent")
            return
        sandbox.point_latest(executor.directory)
        try:
            with open(executor.directory / "stdout", "ab") as out, open(executor.directory / "stderr", "ab") as err:
                if command.get("shell", True):
                    process = await asyncio.create_subprocess_shell(
                        command.get("value", ""), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
                        env=env, cwd=executor.directory, start_new_session=True)
                else:
                    argv = list(command.get("arguments") or [command.get("value", "")])
                    process = await asyncio.create_subprocess_exec(
                        *argv, executable=command.get("value") or None, stdin=asyncio.subprocess.DEVNULL,
                        stdout=out, stderr=err, env=env, cwd=executor.directory, start_new_session=True)
        except OSError as error:
            log.warning("executor %s failed to start: %s", executor.id, error)
            self._executor_gone(framework, executor, None, "REASON_CONTAINER_LAUNCH_FAILED",
                                f"Failed to launch container: {error}")
            return
        executor.process = process
        executor.pid = process.pid
        if framework.checkpoint and self.agent_id:
            checkpoint.write_json(self._run_dir(framework, executor) / "run.json", {
                "pid": process.pid, "start_time": start_time(process.pid), "container_id": executor.container_id,
                "directory": str(executor.directory), "command_executor": executor.command_executor,
                "info": executor.info})
        if executor.terminating is not None:  # destroyed while it was starting
            kill_tree(process.pid)
        returncode = await process.wait()
        self._executor_gone(framework, executor, raw_wait_status(returncode), None, None)

    def _registration_timed_out(self, executor: ExecutorRecord) -> None:
        if executor.stream is None and not executor.terminated and executor.terminating is None:
            log.warning("executor %s did not subscribe within %.0fs: destroying it", executor.id,
                        self.config.registration_timeout)
            self._destroy(executor, "REASON_EXECUTOR_REGISTRATION_TIMEOUT")

    # -- killing --------------------------------------------------------------------------------
    def kill_task(self, framework_id: str, task_id: str, kill_policy: dict | None) -> None:
        framework = self.frameworks.get(framework_id)
        found = self._find_task(framework, task_id) if framework else None
        if found is None:
            state = "TASK_DROPPED" if framework is not None and framework.partition_aware else "TASK_LOST"
            self._agent_update(framework_id, None, task_id, state, "Cannot find task", None)
            return
        executor, task = found
        if not task.delivered:
            # Not yet at the executor: Mesos kills it right here.
            executor.queued = [q for q in executor.queued if task_id not in q["tasks"]]
            self._agent_update(framework_id, executor, task_id, "TASK_KILLED",
                               "Killed before delivery to the executor", "REASON_TASK_KILLED_DURING_LAUNCH")
            if not executor.tasks and not executor.queued:
                self.shutdown_executor(executor, "TASK_KILLED")
            return
        payload: dict[str, Any] = {"task_id": {"value": task_id}}
        if kill_policy:
            payload["kill_policy"] = kill_policy
        if executor.stream is not None:
            executor.stream.put_nowait(event("KILL", **payload))
        else:
            self.shutdown_executor(executor, "TASK_KILLED")

    def shutdown_executor(self, executor: ExecutorRecord, task_state: str = "TASK_KILLED") -> None:
        """SHUTDOWN to the executor; destroy it when its grace period is over."""
        if executor.terminated or executor.terminating is not None:
            return
        executor.terminating = "SHUTDOWN"
        if executor.stream is not None:
            executor.stream.put_nowait(event("SHUTDOWN"))
            nanos = (executor.info.get("shutdown_grace_period") or {}).get("nanoseconds")
            grace = float(nanos) / 1e9 if nanos is not None else self.config.shutdown_grace
            loop = asyncio.get_running_loop()
            executor.timers.append(loop.call_later(grace, self._destroy, executor, "SHUTDOWN"))
        else:
            self._destroy(executor, "SHUTDOWN")

    def shutdown_framework(self, framework_id: str) -> None:
        framework = self.frameworks.get(framework_id)
        if framework is None:
            return
        for executor in list(framework.executors.values()):
            executor.terminating = None  # let shutdown_executor run even if already asked
            self.shutdown_executor(executor)
            executor.terminating = "FRAMEWORK_REMOVED"
        self.pending_updates = {k: v for k, v in self.pending_updates.items()
                                if v["framework_id"]["value"] != framework_id}

    def _destroy(self, executor: ExecutorRecord, why: str) -> None:
        """Kill the executor and everything it started (our stand-in for a container)."""
        if executor.terminated:
            return
        executor.terminating = executor.terminating if why == "SHUTDOWN" and executor.terminating else why
        if executor.stream is not None:
            executor.stream.put_nowait(None)
        if executor.pid is not None and (executor.process is None or executor.process.returncode is None):
            kill_tree(executor.pid)
        kill_sandbox_processes(executor.directory)

    # -- the executor API -------------------------------------------------------------------------
    def lookup(self, framework_id: str, executor_id: str) -> tuple[FrameworkRecord, ExecutorRecord]:
        framework = self.frameworks.get(framework_id)
        if framework is None:
            raise ExecutorCallError(400, "Framework cannot be found")
        executor = framework.executors.get(executor_id)
        if executor is None or executor.terminated:
            raise ExecutorCallError(400, "Executor cannot be found")
        return framework, executor

    def check_principal(self, principal: Principal | None, framework_id: str, executor_id: str) -> None:
        """An executor token may act for its own framework, executor and current container only.

        Raises ExecutorCallError 400 when the framework or executor is unknown (as Mesos,
        before the claims are looked at) and 403 with Mesos's message when the claims do
        not match (slave/http.cpp `verifyExecutorClaims`). No principal: the executor
        realm is not authenticated, as with Mesos's `--authenticate_http_executors` off.
        """
        if principal is None:
            return
        _, executor = self.lookup(framework_id, executor_id)
        problem = verify_executor_claims(principal, framework_id, executor_id, executor.container_id)
        if problem is not None:
            self.counters["executor_calls_forbidden"] += 1
            raise ExecutorCallError(403, problem)

    def subscribe(self, framework_id: str, executor_id: str, subscribe: dict) -> asyncio.Queue:
        """Attach an executor's event stream; returns the queue the response drains."""
        framework, executor = self.lookup(framework_id, executor_id)
        if executor.terminating is not None:
            raise ExecutorCallError(400, "Executor is terminating")
        if executor.stream is not None:
            executor.stream.put_nowait(None)  # close the older connection
        queue: asyncio.Queue = asyncio.Queue()
        executor.stream = queue
        for timer in executor.timers:
            timer.cancel()
        executor.timers.clear()
        for update in subscribe.get("unacknowledged_updates") or []:
            status = update.get("status", {})
            if status.get("uuid") and status["uuid"] not in self.pending_updates:
                try:
                    self.update(framework_id, executor_id, status, acknowledge=False)
                except ExecutorCallError as error:
                    log.warning("dropping a replayed update of %s: %s", executor_id, error.message)
        listed = {t.get("task_id", {}).get("value") for t in subscribe.get("unacknowledged_tasks") or []}
        for task in list(executor.tasks.values()):
            if task.delivered and task.state == "TASK_STAGING" and task.id not in listed:
                state = "TASK_DROPPED" if framework.partition_aware else "TASK_LOST"
                self._agent_update(framework_id, executor, task.id, state,
                                   "Task launched during agent restart", "REASON_AGENT_RESTARTED")
        queue.put_nowait(event("SUBSCRIBED", executor_info=executor.info, framework_info=framework.info,
                               agent_info=self.agent_info(), container_id={"value": executor.container_id}))
        for launch in executor.queued:
            for task_id in launch["tasks"]:
                if task_id in executor.tasks:
                    executor.tasks[task_id].delivered = True
            queue.put_nowait(launch["event"])
        executor.queued.clear()
        self.counters["executor_subscriptions"] += 1
        return queue

    def unsubscribed(self, executor: ExecutorRecord, queue: asyncio.Queue) -> None:
        """The executor's connection closed."""
        if executor.stream is queue:
            executor.stream = None

    def require_subscribed(self, framework_id: str, executor_id: str) -> ExecutorRecord:
        _, executor = self.lookup(framework_id, executor_id)
        if executor.stream is None:
            raise ExecutorCallError(403, "Executor is not subscribed")
        return executor

    def update(self, framework_id: str, executor_id: str, status: dict, acknowledge: bool = True) -> None:
        """An executor's status update: store it, ACKNOWLEDGE it, forward it to the master."""
        framework, executor = self.lookup(framework_id, executor_id)
        task_id = status["task_id"]["value"]
        task = executor.tasks.get(task_id)
        status = dict(status)
        status["agent_id"] = {"value": self.agent_id}
        status["executor_id"] = {"value": executor_id}
        status.setdefault("timestamp", time.time())
        status["container_status"] = container_status(status.get("container_status"), executor.container_id)
        latest = status["state"]
        if task is not None:
            task.container = status["container_status"]["container_id"]
            task.state = latest
            task.statuses.append({"state": latest, "timestamp": status["timestamp"],
                                  "container_status": status["container_status"]})
            if latest in TERMINAL_STATES:
                executor.completed.append(executor.tasks.pop(task_id))
                self.nested.task_ended(executor, task_id)
                self._task_ended(framework, executor, task_id)
            self._checkpoint_task(framework, executor, task)
        self._forward(framework_id, status, latest, task_id)
        if acknowledge and executor.stream is not None:
            executor.stream.put_nowait(event("ACKNOWLEDGED", task_id=status["task_id"], uuid=status["uuid"]))
        self.counters[f"status_updates/{latest}"] += 1

    # -- tasks an executor reported ended ---------------------------------------------------------
    def _task_ended(self, framework: FrameworkRecord, executor: ExecutorRecord, task_id: str) -> None:
        """Make sure, after a grace period, that nothing of a task reported terminal still runs.

        Mesos frees a terminal task's resources at once; a task that in fact still ran
        (a buggy executor, a forged update) would go on unseen by anyone and unkillable
        by its framework. dockyard's executor destroys a task's container before it
        reports it ended, so the check normally finds nothing (one /proc and one
        containers/ scan per batch of ended tasks).
        """
        if executor.terminated or executor.terminating is not None or executor.pid is None:
            return  # the executor's own end takes everything of it
        self._ended_tasks.append((framework, executor, task_id))
        if self._ended_check is None:
            loop = asyncio.get_running_loop()
            self._ended_check = loop.call_later(self.config.terminal_task_grace, self._check_ended_tasks)

    def _check_ended_tasks(self) -> None:
        self._ended_check = None
        batch, self._ended_tasks = self._ended_tasks, []
        sandboxes: list[Path] = []
        for framework, executor, task_id in batch:
            if executor.terminated or executor.terminating is not None or task_id in executor.tasks:
                continue  # gone with its executor; or launched again meanwhile
            if executor.command_executor:
                # Its one task has ended: a command executor that still runs after the grace
                # period is ended, and with it whatever it left running.
                if not executor.tasks and not executor.queued:
                    log.warning("command executor %s still runs %.0fs after its task ended: shutting it down",
                                executor.id, self.config.terminal_task_grace)
                    self.shutdown_executor(executor, "TASK_KILLED")
                continue
            directory = task_sandbox(executor.directory, task_id)
            if directory is not None:
                sandboxes.append(directory)
        if not sandboxes:
            return
        killed = kill_processes_in(sandboxes)
        containers = containers_in(self.config.work_dir, sandboxes)
        if killed or containers:
            log.warning("tasks reported ended still ran %.0fs later: killed %d process(es), destroying %d "
                        "container(s) in %s", self.config.terminal_task_grace, killed, len(containers),
                        ", ".join(str(d) for d in sandboxes))
            self.counters["ended_tasks_destroyed"] += 1
        for directory in sorted({Path(c) for c in containers}):
            task = asyncio.create_task(self.reaper.reap(directory))
            self._exit_waiters.add(task)
            task.add_done_callback(self._exit_waiters.discard)

    def message(self, framework_id: str, executor_id: str, data: str) -> None:
        self.link.send(executor_id, {"type": "MESSAGE", "framework_id": {"value": framework_id},
                                     "executor_id": {"value": executor_id}, "data": data})

    # -- updates the agent makes itself -------------------------------------------------------------
    def _agent_update(self, framework_id: str, executor: ExecutorRecord | None, task_id: str, state: str,
                      message: str, reason: str | None) -> asyncio.Event:
        status: dict[str, Any] = {
            "task_id": {"value": task_id}, "state": state, "source": "SOURCE_AGENT", "message": message,
            "uuid": new_uuid(), "timestamp": time.time(), "agent_id": {"value": self.agent_id},
        }
        if reason:
            status["reason"] = reason
        if executor is not None:
            status["executor_id"] = {"value": executor.id}
            task = executor.tasks.get(task_id)
            if task is not None:
                task.state = state
                task.statuses.append({"state": state, "timestamp": status["timestamp"]})
                if state in TERMINAL_STATES:
                    executor.completed.append(executor.tasks.pop(task_id))
        self.counters[f"status_updates/{state}"] += 1
        return self._forward(framework_id, status, state, task_id)

    def _updates_file(self) -> Path | None:
        """Unacknowledged status updates, as Mesos's status update manager checkpoints them:
        resent after the agent restarts, so an update taken in is never lost."""
        if not self.agent_id:
            return None
        return sandbox.meta_dir(self.config.work_dir, self.agent_id) / "status.updates"

    def _forward(self, framework_id: str, status: dict, latest: str, task_id: str) -> asyncio.Event:
        call = {"type": "UPDATE", "framework_id": {"value": framework_id}, "status": status,
                "latest_state": latest}
        self.pending_updates[status["uuid"]] = call
        path = self._updates_file()
        if path is not None and self._checkpointing(call):
            checkpoint.append_line(path, {"update": call})  # before the executor hears ACKNOWLEDGED
            self._updates_lines += 1
        return self.link.send(task_id, call)

    def _checkpoint_ack(self, uuid: str) -> None:
        """Note an acknowledged update; start the file afresh when nothing is left to resend,
        and rewrite it with just the unacknowledged ones when acknowledged lines dominate."""
        path = self._updates_file()
        if path is None or not path.exists():
            return
        if not self.pending_updates:
            path.unlink(missing_ok=True)
            self._updates_lines = 0
        elif self._updates_lines > UPDATES_COMPACT_LINES and self._updates_lines > 4 * len(self.pending_updates):
            checkpoint.write_lines(path, [{"update": call} for call in self.pending_updates.values()
                                          if self._checkpointing(call)])
            self._updates_lines = len(self.pending_updates)
        else:
            checkpoint.append_line(path, {"ack": uuid})
            self._updates_lines += 1

    def _checkpointing(self, call: dict) -> bool:
        framework = self.frameworks.get((call.get("framework_id") or {}).get("value", ""))
        return framework is not None and framework.checkpoint

    def _executor_gone(self, framework: FrameworkRecord, executor: ExecutorRecord, wait_status: int | None,
                       reason: str | None, message: str | None) -> None:
        """The executor process ended (or never started): fail its live tasks, tell the master."""
        if executor.terminated:
            return
        executor.terminated = True
        self.nested.executor_gone(executor)
        for timer in executor.timers:
            timer.cancel()
        if executor.stream is not None:
            executor.stream.put_nowait(None)
            executor.stream = None
        if executor.pid is not None:
            kill_tree(executor.pid)  # whatever it left behind
        why = executor.terminating
        if wait_status != 0 or why is not None:
            kill_sandbox_processes(executor.directory)  # tasks orphaned by a crashed executor
        if self._reaping and executor.pid is not None and wait_status != 0:
            # Not a clean exit: its containers may live on. Destroy them before the task
            # updates go out, so that resources the master frees are free (Mesos's order).
            reaping = asyncio.create_task(self._report_after_reap(framework, executor, wait_status, reason,
                                                                  message))
            self._exit_waiters.add(reaping)
            reaping.add_done_callback(self._exit_waiters.discard)
            return
        self._report_gone(framework, executor, wait_status, reason, message)

    async def _report_after_reap(self, framework: FrameworkRecord, executor: ExecutorRecord,
                                 wait_status: int | None, reason: str | None, message: str | None) -> None:
        try:
            await self.reaper.reap(executor.directory)
        finally:
            self._report_gone(framework, executor, wait_status, reason, message)

    def _report_gone(self, framework: FrameworkRecord, executor: ExecutorRecord, wait_status: int | None,
                     reason: str | None, message: str | None) -> None:
        """Fail (or kill) the ended executor's live tasks, forget it, send EXECUTOR_EXITED."""
        why = executor.terminating
        if framework.checkpoint and self.agent_id:
            shutil.rmtree(self._run_dir(framework, executor), ignore_errors=True)
        if reason is None:
            reason = why if why and why.startswith("REASON_") else "REASON_EXECUTOR_TERMINATED"
        if message is None:
            message = {"REASON_EXECUTOR_REGISTRATION_TIMEOUT": "Executor did not register within "
                       f"{self.config.registration_timeout:g}secs"}.get(reason, "Executor terminated")
        sent = []
        if why != "FRAMEWORK_REMOVED":
            state = "TASK_KILLED" if why == "SHUTDOWN" else "TASK_FAILED"
            for task in list(executor.tasks.values()):
                sent.append(self._agent_update(framework.id, executor, task.id, state, message, reason))
        if framework.executors.get(executor.id) is executor:  # a successor may hold the id already
            del framework.executors[executor.id]
        framework.completed.append(executor)
        if not framework.executors and self.frameworks.get(framework.id) is framework:
            self.frameworks.pop(framework.id, None)
            self.completed_frameworks.append(framework)
        if wait_status is None:
            wait_status = 1 << 8
        call = {"type": "EXECUTOR_EXITED", "framework_id": {"value": framework.id},
                "executor_id": {"value": executor.id}, "status": wait_status}
        if why == "FRAMEWORK_REMOVED":
            return
        task = asyncio.create_task(self._after(sent, executor.id, call))
        self._exit_waiters.add(task)
        task.add_done_callback(self._exit_waiters.discard)

    async def _after(self, sent: list[asyncio.Event], key: str, call: dict) -> None:
        """EXECUTOR_EXITED goes out once the master has the task updates it follows."""
        if sent:
            await asyncio.wait([asyncio.create_task(e.wait()) for e in sent], timeout=10.0)
        self.link.send(key, call)

    def _find_task(self, framework: FrameworkRecord, task_id: str) -> tuple[ExecutorRecord, TaskRecord] | None:
        executor = framework.executors.get(task_id)  # command tasks: executor id = task id
        if executor is not None and task_id in executor.tasks:
            return executor, executor.tasks[task_id]
        for executor in framework.executors.values():
            if task_id in executor.tasks:
                return executor, executor.tasks[task_id]
        return None

    def _run_dir(self, framework: FrameworkRecord, executor: ExecutorRecord) -> Path:
        assert self.agent_id is not None
        return (sandbox.executor_meta_dir(self.config.work_dir, self.agent_id, framework.id, executor.id)
                / "runs" / executor.container_id)

    # -- recovery (checkpointing frameworks only, as Mesos) -----------------------------------------------
    def recover(self) -> int:
        """Take back what a previous run of this agent left: its id, and live checkpointed executors.

        Executors that are still alive (same pid and start time) are adopted and
        given `reregistration_timeout` to SUBSCRIBE again; tasks of executors
        that died meanwhile are failed. Returns how many executors live on.
        """
        found = recovery.read(self.config.work_dir)
        if found is None:
            return 0
        self.link.agent_id = found.agent_id
        live = 0
        dead: list[tuple[FrameworkRecord, ExecutorRecord]] = []
        for run in found.runs:
            framework = self.frameworks.setdefault(run.executor.framework_id, FrameworkRecord(run.framework_info))
            executor = run.executor
            framework.executors[executor.id] = executor
            if executor.pid is not None and same_process(executor.pid, run.start_time):
                live += 1
                self._watch_recovered(framework, executor)
            else:
                dead.append((framework, executor))
        for framework, executor in dead:
            self._executor_gone(framework, executor, None, "REASON_EXECUTOR_TERMINATED",
                                "Executor terminated while the agent was down")
        self._updates_lines += found.update_lines
        self.pending_updates = {**found.pending_updates, **self.pending_updates}
        log.info("recovered agent %s: %d live executor(s), %d gone, %d update(s) to resend",
                 found.agent_id, live, len(dead), len(found.pending_updates))
        return live

    def _watch_recovered(self, framework: FrameworkRecord, executor: ExecutorRecord) -> None:
        """Not our child any more: learn of its exit through a pidfd, not waitpid."""
        assert executor.pid is not None
        loop = asyncio.get_event_loop()
        try:
            fd = os.pidfd_open(executor.pid)
        except OSError:
            self._executor_gone(framework, executor, None, None, None)
            return

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._executor_gone(framework, executor, None, None, None)

        loop.add_reader(fd, exited)
        executor.timers.append(loop.call_later(self.config.reregistration_timeout,
                                               self._registration_timed_out, executor))

    def _checkpoint_task(self, framework: FrameworkRecord, executor: ExecutorRecord, task: TaskRecord) -> None:
        """A task's info and states on disk, for recovery; its secrets never (`checkpointed`)."""
        if not framework.checkpoint or not self.agent_id:
            return
        directory = self._run_dir(framework, executor) / "tasks" / task.id
        if task.checkpointed:
            checkpoint.append_line(directory / "task.updates", {"state": task.state})
        else:
            checkpoint.write_new(directory / "task.json", {"info": checkpointed(task.info), "state": task.state})
            task.checkpointed = True


def default_hostname() -> str:
    return os.uname().nodename
