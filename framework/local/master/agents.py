"""The master's side of the internal agent protocol (docs/internal-protocol.md).

Registration and re-registration (adopting what an agent runs after a master
restart), status updates and executor exits from agents, liveness, and the
registry of admitted agents. Mixed into `Master`, which owns the state these
methods read and write (all on the master's event loop).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from framework.mesos.messages import TERMINAL_STATES
from framework.mesos.resources import Resources
from framework.local.master import validation
from framework.local.master.model import VERSION, Agent, Framework, HttpError, Stream
from framework.local.master.model import id_obj as _id, id_value as _val

if TYPE_CHECKING:
    from concurrent.futures import Future

    from framework.local.master.core import Master

log = logging.getLogger("dockyard.master")
# Unreachable agents kept in the registry (Mesos: --registry_max_agent_count bounds its list).
MAX_UNREACHABLE_AGENTS = 1000


def _task_role(task: dict[str, Any], fw: Framework) -> str:
    """The role a reported task's resources were allocated to."""
    for resource in task.get("resources") or []:
        role = (resource.get("allocation_info") or {}).get("role")
        if role:
            return str(role)
    return fw.roles[0] if fw.roles else "*"



def _reported(call: dict[str, Any]) -> set[tuple[str, str]]:
    """(framework id, task id) of every task a (re)registering agent accounts for: those it
    runs, and those that ended meanwhile, whose own unacknowledged updates it re-sends."""
    reported = {(_val(t.get("framework_id")) or "", _val(t.get("task_id")) or "")
                for t in call.get("tasks") or []}
    reported |= {(_val(u.get("framework_id")) or "", _val((u.get("status") or {}).get("task_id")) or "")
                 for u in call.get("updates") or []}
    return reported

class AgentSide:
    """Agent-facing behaviour of the master; see `Master` for the state.

    With `--authenticate-agents` every call carries the principal that
    authenticated it, and an agent id belongs to the principal that registered
    it: REREGISTER, UPDATE, BATCH, UNREGISTER and every other call naming that id
    from another principal is refused (403) and changes nothing. Otherwise anyone
    able to reach the master could re-register a real agent's id, or unregister it
    and have its tasks relaunched elsewhere while they keep running.
    """

    def _check_owner(self: "Master", agent_id: str, principal: str | None) -> None:
        """Refuse (403) a principal speaking for an agent id another principal registered."""
        if principal is None:
            return  # agents are not authenticated: there is no one to tell apart
        owner = self.agent_owners.get(agent_id)
        if owner is not None and owner != principal:
            log.warning("refusing principal '%s' speaking for agent %s, which '%s' registered",
                        principal, agent_id, owner)
            raise HttpError(403, f"Agent {agent_id} is registered by another principal")

    def _check_may_register(self: "Master", principal: str | None) -> None:
        """`register_agents` (Mesos's `Master::authorizeSlave`): who may add capacity to the cluster."""
        if not self.acls.authorized("register_agents", principal, None):
            log.warning("refusing to register an agent for principal '%s': not authorized", principal)
            raise HttpError(403, f"Not authorized to register agent with principal '{principal}'")

    def _bind_owner(self: "Master", agent_id: str, principal: str | None) -> None:
        """The first authenticated principal to name an agent id owns it (kept in the registry)."""
        if principal is not None and agent_id not in self.agent_owners:
            self.agent_owners[agent_id] = principal
            self._persist()

    def agent_register(self: "Master", call: dict[str, Any], principal: str | None = None) -> Stream:
        info = dict(call.get("agent_info") or {})
        if not info.get("hostname"):
            raise HttpError(400, "Missing 'agent_info.hostname'")
        self._check_may_register(principal)
        ip = str(call.get("ip") or info["hostname"])
        port = int(info.get("port", 5051))
        try:
            total = Resources(info.get("resources") or [])
        except (ValueError, KeyError, TypeError) as error:
            raise HttpError(400, f"Invalid agent resources: {error}") from error
        replaced = [a for a in self.agents.values() if a.ip == ip and a.port == port]
        for agent in replaced:  # a new agent at an address must not end another principal's
            self._check_owner(agent.id, principal)
        for agent in replaced:
            log.info("agent %s re-registered as new at %s:%s: removing the old one", agent.id, ip, port)
            self.remove_agent(agent, "Agent restarted without its state")
        agent_id = f"{self.id}-S{self._next_agent}"
        self._next_agent += 1
        info["id"] = _id(agent_id)
        info["port"] = port
        now = self.now()
        agent = Agent(agent_id, info, ip, port, str(info["hostname"]), total,
                      str(call.get("version") or VERSION), now, self.clock(), Stream())
        self.agents[agent_id] = agent
        self._bind_owner(agent_id, principal)
        self.allocator.add_agent(agent_id, total)
        self._admit(agent)
        self.notify("AGENT_ADDED", agent)
        agent.stream.send({"type": "REGISTERED", "registered": self._agent_welcome(agent)})  # type: ignore[union-attr]
        log.info("registered agent %s at %s:%s (%s)", agent_id, ip, port, total)
        self.request_allocation([agent_id])
        return agent.stream  # type: ignore[return-value]

    def _agent_welcome(self: "Master", agent: Agent) -> dict[str, Any]:
        return {"agent_id": _id(agent.id), "master_info": self.info,
                "ping_interval_seconds": float(self.config.agent_ping_interval)}

    def agent_reregister(self: "Master", call: dict[str, Any], principal: str | None = None) -> Stream:
        agent_id = _val(call.get("agent_id")) or _val((call.get("agent_info") or {}).get("id"))
        if not agent_id:
            raise HttpError(400, "Missing 'agent_id'")
        self._check_may_register(principal)
        self._check_owner(agent_id, principal)
        info = dict(call.get("agent_info") or {})
        info["id"] = _id(agent_id)
        try:
            total = Resources(info.get("resources") or [])
        except (ValueError, KeyError, TypeError) as error:
            raise HttpError(400, f"Invalid agent resources: {error}") from error
        existing = self.agents.get(agent_id)
        self._bind_owner(agent_id, principal)
        if existing is not None:
            return self._reconnect(existing, call)
        ip = str(call.get("ip") or info.get("hostname") or "")
        port = int(info.get("port", 5051))
        now = self.now()
        agent = Agent(agent_id, info, ip, port, str(info.get("hostname") or ip), total,
                      str(call.get("version") or VERSION), now, self.clock(), Stream(),
                      reregistered_time=now)
        # Marked unreachable (by this master, or by an earlier leader: the registry keeps it):
        # as Mesos, tasks of frameworks that are not PARTITION_AWARE were reported TASK_LOST
        # and get killed now (`Master::_reregisterSlave`).
        was_removed = self.unreachable_agents.pop(agent_id, None) is not None
        used, shutdown = self._adopt(agent, call)
        self.agents[agent_id] = agent
        self.allocator.add_agent(agent_id, total, used)
        self._admit(agent)
        self.notify("AGENT_ADDED", agent)
        agent.stream.send({"type": "REREGISTERED",  # type: ignore[union-attr]
                           "reregistered": self._agent_welcome(agent)})
        for fid in shutdown:
            self._to_agent(agent, "SHUTDOWN_FRAMEWORK", {"framework_id": _id(fid)})
        for update in call.get("updates") or []:
            self._agent_update(agent, update)
        if was_removed:  # see above
            self._drop_unreported(agent, call)
            for fid, tid in list(agent.tasks):
                fw = self.frameworks.get(fid)
                task = fw.tasks.get(tid) if fw else None
                if fw is not None and not fw.partition_aware and task is not None and not task.terminal:
                    self._to_agent(agent, "KILL_TASK", {"framework_id": _id(fid), "task_id": _id(tid)})
            self._announce_reregistered(agent, call)
        self.admitted_while_draining(agent)
        log.info("re-registered agent %s at %s:%s", agent_id, ip, port)
        self.request_allocation([agent_id])
        return agent.stream  # type: ignore[return-value]

    def _drop_unreported(self: "Master", agent: Agent, call: dict[str, Any]) -> None:
        """Unreachable tasks of a returning agent that it does not report never reached it
        (launched as the link broke) or ended meanwhile: TASK_DROPPED (TASK_LOST for other
        frameworks), as `_reconnect` does, instead of staying unreachable for ever."""
        reported = _reported(call)
        for fw in self.frameworks.values():
            for tid, task in list(fw.unreachable_tasks.items()):
                if task.agent_id != agent.id or (fw.id, tid) in reported:
                    continue
                status = self._master_update(fw, tid, "TASK_DROPPED", "REASON_RECONCILIATION",
                                             "Task is unknown to the agent", agent.id)
                task.state = self._fw_state(fw, "TASK_DROPPED")
                self.task_state_changed(task, status)
                task.released = True  # its resources went with the agent's removal
                self._remove_task(fw, task)

    def _announce_reregistered(self: "Master", agent: Agent, call: dict[str, Any]) -> None:
        """A PARTITION_AWARE framework was told its tasks here were unreachable; now that
        the agent is back, Mesos tells it each task's state again, with
        REASON_AGENT_REREGISTERED (master-made: no uuid, no retry)."""
        for entry in call.get("tasks") or []:
            fid = _val(entry.get("framework_id")) or ""
            tid = _val(entry.get("task_id")) or ""
            fw = self.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if fw is None or task is None or not fw.partition_aware:
                continue
            extra: dict[str, Any] = {}
            if task.executor_id and task.executor_id != task.task_id:
                extra["executor_id"] = _id(task.executor_id)
            status = self._master_update(fw, tid, task.state, "REASON_AGENT_REREGISTERED",
                                         "Agent reregistered", agent.id, extra=extra)
            task.status_update_state = task.state
            task.status_update_uuid = None
            self.task_state_changed(task, status)

    def _reconnect(self: "Master", agent: Agent, call: dict[str, Any]) -> Stream:
        """A registered agent lost its stream and came back: reconcile what it runs."""
        if agent.stream is not None:
            agent.stream.close()
        agent.stream = Stream()
        agent.last_seen = self.clock()
        agent.reregistered_time = self.now()
        self.allocator.set_agent_active(agent.id, True)
        agent.stream.send({"type": "REREGISTERED", "reregistered": self._agent_welcome(agent)})
        reported = _reported(call)
        for fid, tid in list(agent.tasks):
            fw = self.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if fw is None or task is None or (fid, tid) in reported or task.terminal:
                continue
            # Sent to the agent on a stream that broke (or never sent): it is gone.
            status = self._master_update(fw, tid, "TASK_DROPPED", "REASON_RECONCILIATION",
                                         "Task is unknown to the agent", agent.id)
            task.state = self._fw_state(fw, "TASK_DROPPED")
            self.task_state_changed(task, status)
            task.pending.clear()
            self._remove_task(fw, task)
        used, shutdown = self._adopt(agent, call)
        for (fid, role), resources in used.items():
            self.allocator.add_used(fid, agent.id, role, resources)
        for fid in shutdown:
            self._to_agent(agent, "SHUTDOWN_FRAMEWORK", {"framework_id": _id(fid)})
        for update in call.get("updates") or []:
            self._agent_update(agent, update)
        self.admitted_while_draining(agent)
        self.request_allocation([agent.id])
        return agent.stream

    def _adopt(self: "Master", agent: Agent, call: dict[str, Any]
               ) -> tuple[dict[tuple[str, str], Resources], set[str]]:
        """Take in the frameworks, executors and tasks an agent reports that we lack.

        Returns the resources they hold by (framework, role), and the frameworks
        the agent must shut down (removed ones).
        """
        now = self.now()
        for fw_info in call.get("frameworks") or []:
            fid = _val(fw_info.get("id"))
            if fid and fid not in self.frameworks and fid not in self.completed_frameworks:
                # Known only through the agent (e.g. after master failover): inactive
                # until the scheduler re-subscribes with this id.
                fw = Framework(fid, dict(fw_info), validation.framework_roles(fw_info),
                               validation.capabilities(fw_info), now, active=False,
                               recovered=True)
                self.frameworks[fid] = fw
                self.allocator.add_framework(fid, fw.roles, active=False,
                                             gpu_aware="GPU_RESOURCES" in fw.capabilities)
        for entry in list(call.get("executors") or []) + list(call.get("tasks") or []):
            fid = _val(entry.get("framework_id")) or ""
            if fid and fid not in self.frameworks and fid not in self.completed_frameworks:
                info = {"id": _id(fid), "user": "", "name": ""}  # not listed by the agent
                self.frameworks[fid] = Framework(fid, info, ("*",), set(), now, active=False,
                                                 recovered=True)
                self.allocator.add_framework(fid, ("*",), active=False)
        used: dict[tuple[str, str], Resources] = {}
        shutdown: set[str] = set()
        for entry in call.get("executors") or []:
            fid = _val(entry.get("framework_id")) or ""
            exec_info = entry.get("executor_info") or {}
            executor_id = _val(exec_info.get("executor_id")) or ""
            fw = self.frameworks.get(fid)
            if fw is None:
                shutdown.add(fid)
                continue
            if (fid, executor_id) in agent.executors:
                continue
            role = fw.roles[0] if fw.roles else "*"
            resources = Resources(exec_info.get("resources") or [])
            self._add_executor(fw, agent, exec_info, role, resources)
            used[(fid, role)] = used.get((fid, role), Resources()) + resources
        for entry in call.get("tasks") or []:
            fid = _val(entry.get("framework_id")) or ""
            task_id = _val(entry.get("task_id")) or ""
            fw = self.frameworks.get(fid)
            if fw is None:
                shutdown.add(fid)
                continue
            if task_id in fw.tasks:
                continue
            resources = Resources(entry.get("resources") or [])
            role = _task_role(entry, fw)
            task = fw.unreachable_tasks.pop(task_id, None)
            state = str(entry.get("state") or "TASK_RUNNING")
            if task is not None:
                task.state = state
                task.unreachable_time = None
                task.released = False
                fw.tasks[task.task_id] = task
                agent.tasks.add((fid, task.task_id))
            else:
                task = self._add_task(fw, agent, entry, role, resources,
                                      _val(entry.get("executor_id")) or
                                      (None if "command" in entry else task_id),
                                      state=state)
            if task.terminal:
                task.released = True
            else:
                used[(fid, role)] = used.get((fid, role), Resources()) + resources
            # As Mesos's Framework::addTask: operators hear of every task the master takes in,
            # here the ones a (re-)registering agent reports that this master did not know.
            self.notify("TASK_ADDED", task)
        return used, shutdown

    def agent_stream_closed(self: "Master", stream: Stream) -> None:
        """The agent's connection dropped: no offers for it until it re-registers."""
        stream.closed = True
        for agent in self.agents.values():
            if agent.stream is stream:
                agent.stream = None
                self.allocator.set_agent_active(agent.id, False)
                for offer in [o for o in self.offers.values() if o.agent_id == agent.id]:
                    self._drop_offer(offer, rescind=True)
                return

    def agent_batch(self: "Master", batch: dict[str, Any], principal: str | None = None) -> list[dict[str, Any]]:
        """Several calls of one agent in one POST, applied in order: what a busy agent has
        queued goes in one round trip instead of one each. A call refused (400) does not
        stop the ones after it; the refusals come back by index. An unknown agent is 404
        for the whole batch (the agent re-registers, carrying its pending updates)."""
        calls = batch.get("calls")
        if not isinstance(calls, list):
            raise HttpError(400, "BATCH needs 'calls', a list of agent calls")
        agent_id = batch.get("agent_id")
        if _val(agent_id) not in self.agents:
            raise HttpError(404, "Agent is not registered")
        self._check_owner(_val(agent_id) or "", principal)
        refused = []
        for index, call in enumerate(calls):
            try:
                if not isinstance(call, dict) or call.get("type") in ("BATCH", "REGISTER", "REREGISTER"):
                    raise HttpError(400, "a BATCH holds UPDATE, EXECUTOR_EXITED, MESSAGE, PING or UNREGISTER calls")
                self.agent_call({**call, "agent_id": agent_id}, principal)
            except HttpError as error:
                refused.append({"index": index, "status": error.status, "message": error.message})
        return refused

    def agent_call(self: "Master", call: dict[str, Any], principal: str | None = None) -> None:
        """PING, UPDATE, EXECUTOR_EXITED, MESSAGE, UNREGISTER from a registered agent."""
        agent = self.agents.get(_val(call.get("agent_id")) or "")
        if agent is None:
            raise HttpError(404, "Agent is not registered")
        self._check_owner(agent.id, principal)
        agent.last_seen = self.clock()
        kind = call.get("type")
        if kind == "PING":
            return
        if kind == "UPDATE":
            self._agent_update(agent, call)
        elif kind == "EXECUTOR_EXITED":
            self._executor_exited(agent, call)
        elif kind == "MESSAGE":
            fw = self.frameworks.get(_val(call.get("framework_id")) or "")
            if fw is not None:
                self.counters["messages/executor_to_framework"] += 1
                self._send(fw, {"type": "MESSAGE", "message": {
                    "agent_id": _id(agent.id), "executor_id": call.get("executor_id"),
                    "data": call.get("data", "")}})
        elif kind == "UNREGISTER":
            self.remove_agent(agent, "Agent shut down", unreachable=False)
        else:
            raise HttpError(400, f"Unknown agent call type {kind!r}")

    def _agent_update(self: "Master", agent: Agent, call: dict[str, Any]) -> None:
        status = dict(call.get("status") or {})
        uuid = status.get("uuid")
        task_id = _val(status.get("task_id"))
        if not uuid or not task_id or "state" not in status:
            raise HttpError(400, "UPDATE needs status.task_id, status.state and status.uuid")
        fid = _val(call.get("framework_id")) or ""
        fw = self.frameworks.get(fid)
        if fw is None:
            if fid in self.completed_frameworks:
                self._to_agent(agent, "ACKNOWLEDGE", {"framework_id": _id(fid),
                                                       "task_id": _id(task_id), "uuid": uuid})
                self._to_agent(agent, "SHUTDOWN_FRAMEWORK", {"framework_id": _id(fid)})
            return
        task = fw.tasks.get(task_id)
        if task is None:
            task = fw.unreachable_tasks.pop(task_id, None)
            if task is not None:
                fw.tasks[task_id] = task
                agent.tasks.add((fid, task_id))
            else:
                role = fw.roles[0] if fw.roles else "*"
                executor_id = _val(status.get("executor_id"))
                task = self._add_task(fw, agent, {"task_id": _id(task_id), "name": task_id},
                                      role, Resources(), executor_id)
                task.released = True
        if uuid in task.seen_uuids:
            return
        task.seen_uuids.add(uuid)
        status["agent_id"] = _id(agent.id)
        self.counters["messages/status_update"] += 1
        latest = self.drain_rewrite(agent, fw, status, str(call.get("latest_state") or status["state"]))
        changed = task.state != latest
        task.state = latest
        task.statuses.append({k: v for k, v in status.items() if k not in ("data",)})
        if latest in TERMINAL_STATES:
            self._release(task)
        task.pending.append(status)
        if len(task.pending) == 1:
            self._forward(task, reset=True)
        if changed:
            self.task_state_changed(task, status)

    def _executor_exited(self: "Master", agent: Agent, call: dict[str, Any]) -> None:
        fid = _val(call.get("framework_id")) or ""
        executor_id = _val(call.get("executor_id")) or ""
        executor = agent.executors.pop((fid, executor_id), None)
        fw = self.frameworks.get(fid)
        if executor is not None:
            if fw is not None:
                fw.executors.pop((agent.id, executor_id), None)
            self.allocator.recover(fid, agent.id, executor.role, executor.resources)
            self.request_allocation([agent.id])
            if fw is not None:
                failure: dict[str, Any] = {"agent_id": _id(agent.id),
                                           "executor_id": _id(executor_id)}
                if "status" in call:
                    failure["status"] = int(call["status"])
                self._send(fw, {"type": "FAILURE", "failure": failure})

    def remove_agent(self: "Master", agent: Agent, message: str, unreachable: bool = True) -> None:
        """Agent gone (ping timeout, replaced, shut down): its tasks are lost (`Master::markUnreachable`, `Master::removeSlave`)."""
        log.info("removing agent %s: %s", agent.id, message)
        self.agents.pop(agent.id, None)
        for offer in [o for o in self.offers.values() if o.agent_id == agent.id]:
            self._drop_offer(offer, rescind=True)
        now = self.now()
        for fid, tid in list(agent.tasks):
            fw = self.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if fw is None or task is None:
                continue
            task.pending.clear()
            if task.retry is not None:
                task.retry.cancel()
                task.retry = None
            if task.terminal:
                self._remove_task(fw, task)
                continue
            state = "TASK_UNREACHABLE" if unreachable else "TASK_GONE"
            extra = {"unreachable_time": {"nanoseconds": int(now * 1e9)}} if unreachable else {}
            if task.executor_id and task.executor_id != task.task_id:
                extra["executor_id"] = _id(task.executor_id)
            status = self._master_update(fw, tid, state, "REASON_AGENT_REMOVED",
                                         f"Agent {agent.hostname} removed: {message}", agent.id,
                                         extra=extra)
            task.state = self._fw_state(fw, state)
            self.task_state_changed(task, status)
            task.status_update_state = task.state
            task.status_update_uuid = None
            fw.tasks.pop(tid, None)
            if unreachable and fw.partition_aware:
                task.unreachable_time = now
                fw.unreachable_tasks[tid] = task
            else:
                fw.completed_tasks.append(task)
        for (fid, executor_id) in list(agent.executors):
            fw = self.frameworks.get(fid)
            if fw is not None:
                fw.executors.pop((agent.id, executor_id), None)
        agent.executors.clear()
        agent.tasks.clear()
        self.allocator.remove_agent(agent.id)
        self.registered.pop(agent.id, None)
        if unreachable:
            self.unreachable_agents[agent.id] = now
        else:  # shut down for good: the id is done with
            self.agent_owners.pop(agent.id, None)
            self.forget_maintenance(agent.id)
        self._persist()
        self.notify("AGENT_REMOVED", agent)
        for fw in self.frameworks.values():
            self._send(fw, {"type": "FAILURE", "failure": {"agent_id": _id(agent.id)}})
        if agent.stream is not None:
            agent.stream.close()
            agent.stream = None
        self.request_allocation()

    def check_agents(self: "Master") -> None:
        """Remove agents that have not been heard of for the ping timeout."""
        deadline = self.clock() - self.config.agent_ping_timeout
        for agent in list(self.agents.values()):
            if agent.last_seen < deadline:
                self.remove_agent(agent, "health check timed out")

    def recover_registry(self: "Master") -> None:
        """On becoming leader: wait for the registry's agents to re-register, and remember
        which agents an earlier leader marked unreachable (as Mesos's registry does), so that
        reconciling a task on one answers TASK_UNREACHABLE rather than TASK_UNKNOWN; take back
        the operators' drains, deactivations and quotas."""
        if self.registry is None:
            return
        try:
            known = self.registry.load()
            unreachable = self.registry.load_unreachable()
            owners = self.registry.load_owners()
            maintenance = self.registry.load_maintenance()
            quotas = self.registry.load_quotas()
        except Exception:
            log.exception("cannot read the registry: starting without it")
            known, unreachable, owners, maintenance, quotas = {}, {}, {}, {}, {}
        for agent_id, principal in owners.items():
            if isinstance(principal, str):
                self.agent_owners.setdefault(agent_id, principal)
        for agent_id, when in unreachable.items():
            if agent_id not in self.agents and agent_id not in known:
                self.unreachable_agents.setdefault(agent_id, float(when))
        for agent_id, info in known.items():
            if agent_id not in self.agents:
                self.recovering[agent_id] = info
                self.registered[agent_id] = info
        self.restore_maintenance(maintenance)
        self.restore_quotas(quotas)
        if self.recovering:
            log.info("waiting up to %ss for %d agents to re-register",
                     self.config.agent_reregister_timeout, len(self.recovering))
            self._recovery_timer = self._loop().call_later(
                self.config.agent_reregister_timeout, self._recovery_expired)

    def _recovery_expired(self: "Master") -> None:
        now = self.now()
        for agent_id in list(self.recovering):
            log.info("agent %s did not re-register in time: unreachable", agent_id)
            self.recovering.pop(agent_id)
            self.registered.pop(agent_id, None)
            self.unreachable_agents[agent_id] = now
        self._persist()

    def _admit(self: "Master", agent: Agent) -> None:
        """Record an agent in the registry; an address reused by a new agent ends the old."""
        self.recovering.pop(agent.id, None)
        owner = self.agent_owners.get(agent.id)
        for agent_id, info in list(self.recovering.items()):
            if info.get("ip") == agent.ip and info.get("port") == agent.port and \
                    self.agent_owners.get(agent_id, owner) == owner:
                self.recovering.pop(agent_id)
                self.registered.pop(agent_id, None)
                self.unreachable_agents[agent_id] = self.now()
        self.registered[agent.id] = {"hostname": agent.hostname, "ip": agent.ip,
                                     "port": agent.port}
        self._persist()

    def _persist(self: "Master") -> Future[None] | None:
        """Write the registry off the event loop, in order (one writer thread); the write's
        future, which an operator call awaits before it answers (Mesos answers once its
        registrar has applied the change)."""
        if self.registry is None or not self.leading:
            return None
        if self._registry_writer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._registry_writer = ThreadPoolExecutor(1, thread_name_prefix="registry")
        snapshot = {k: dict(v) for k, v in self.registered.items()}
        while len(self.unreachable_agents) > MAX_UNREACHABLE_AGENTS:  # oldest first, as Mesos's GC
            oldest = min(self.unreachable_agents, key=self.unreachable_agents.__getitem__)
            del self.unreachable_agents[oldest]
            if oldest not in self.agents and oldest not in self.recovering:
                self.agent_owners.pop(oldest, None)
                self.forget_maintenance(oldest)
        unreachable = dict(self.unreachable_agents)
        owners = dict(self.agent_owners)
        registry = self.registry
        future = self._registry_writer.submit(registry.save, snapshot, unreachable, owners,
                                              maintenance=self.maintenance_record(),
                                              quotas={role: dict(config) for role, config in self.quotas.items()})
        future.add_done_callback(
            lambda f: f.exception() and log.error("registry write failed: %s", f.exception()))
        self.registry_write = future
        return future
