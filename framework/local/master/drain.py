"""Agent maintenance through the operator API: DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT.

As Mesos 1.9+ (docs/maintenance.md "Automatic Node Draining", src/master/http.cpp
`_drainAgent`, `_deactivateAgent`, `_reactivateAgent`, src/master/master.cpp
`checkAndTransitionDrainingAgent`):

- A deactivated agent is offered to nobody (its outstanding offers are rescinded)
  until REACTIVATE_AGENT; its tasks keep running.
- Draining deactivates the agent and kills every task on it, each with its own kill
  grace period bounded by `max_grace_period`. Their TASK_KILLING and TASK_KILLED
  updates carry REASON_AGENT_DRAINING; with `mark_gone` a TASK_KILLED becomes
  TASK_GONE_BY_OPERATOR (the rewriting a Mesos agent does, done here by the master).
  Once no task is left on the agent (each terminal update acknowledged), the drain
  state is DRAINED, and with `mark_gone` the agent is then shut down and removed.
- An agent that is disconnected or unreachable may be drained: the kills go out when
  it comes back.

The drain state and deactivation are kept by agent id, so they outlive a broken
connection, and in the registry (framework/local/master/registry.py), as Mesos keeps them in
its own, so they outlive a master restart or failover. Mixed into `Master`.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from framework.local.master.model import Agent, Framework, HttpError
from framework.local.master.model import id_obj as _id

if TYPE_CHECKING:
    from framework.local.master.core import Master

log = logging.getLogger("dockyard.master")

FORBIDDEN = "403 Forbidden."  # libprocess's `Forbidden()` body
DRAIN_REASON = "REASON_AGENT_DRAINING"


def duration_nanos(duration: Any) -> int | None:
    """A google.protobuf.Duration (`{"seconds": 10, "nanos": 5}`) in nanoseconds."""
    if not isinstance(duration, dict):
        return None
    return int(duration.get("seconds", 0)) * 1_000_000_000 + int(duration.get("nanos", 0))


class Draining:
    """The maintenance calls of `Master`, and the hooks its agent handling calls."""

    def _known_agent(self: "Master", agent_id: str) -> bool:
        """Registered, awaited after a failover, or unreachable: an agent Mesos can act on."""
        return agent_id in self.agents or agent_id in self.recovering or agent_id in self.unreachable_agents

    def deactivate_agent(self: "Master", agent_id: str, principal: str | None) -> None:
        if not self.acls.authorized("deactivate_agents", principal, None):
            raise HttpError(403, FORBIDDEN)
        if not self._known_agent(agent_id):
            raise HttpError(400, "Unknown agent")
        self.deactivated.add(agent_id)
        self._persist()
        agent = self.agents.get(agent_id)
        if agent is not None:
            self._withhold(agent)
        log.info("agent %s deactivated", agent_id)

    def reactivate_agent(self: "Master", agent_id: str, principal: str | None) -> None:
        if not self.acls.authorized("reactivate_agents", principal, None):
            raise HttpError(403, FORBIDDEN)
        if agent_id not in self.deactivated:
            raise HttpError(400, "Agent is not deactivated")
        if (self.drain_infos.get(agent_id) or {}).get("state") == "DRAINING":
            raise HttpError(400, "Agent is still in the DRAINING state")
        self.forget_maintenance(agent_id)
        self._persist()
        agent = self.agents.get(agent_id)
        if agent is not None and agent.connected:
            self.allocator.set_agent_active(agent_id, True)
            self.request_allocation([agent_id])
        log.info("agent %s reactivated", agent_id)

    def drain_agent(self: "Master", drain: dict[str, Any], principal: str | None) -> None:
        if not self.acls.authorized("drain_agents", principal, None):
            raise HttpError(403, FORBIDDEN)
        agent_id = drain["agent_id"]["value"]
        if not self._known_agent(agent_id):
            raise HttpError(400, "Unknown agent")
        config: dict[str, Any] = {"mark_gone": bool(drain.get("mark_gone", False))}
        grace = duration_nanos(drain.get("max_grace_period"))
        if grace is not None:
            config["max_grace_period"] = {"nanoseconds": grace}
        self.drain_infos[agent_id] = {"state": "DRAINING", "config": config}
        self.drain_started.setdefault(agent_id, self.now())
        self.deactivated.add(agent_id)
        self._persist()
        log.info("draining agent %s (%s)", agent_id, config)
        agent = self.agents.get(agent_id)
        if agent is not None:
            self._withhold(agent)
            if agent.connected:
                self._kill_for_drain(agent)
            self.check_drained(agent)

    def _withhold(self: "Master", agent: Agent) -> None:
        """No more offers of this agent; the outstanding ones are rescinded (`Master::deactivate`)."""
        self.allocator.set_agent_active(agent.id, False)
        for offer in [o for o in self.offers.values() if o.agent_id == agent.id]:
            self._drop_offer(offer, rescind=True)

    def _kill_for_drain(self: "Master", agent: Agent) -> None:
        """KILL_TASK for every task still running here, its grace bounded by `max_grace_period`."""
        bound = ((self.drain_infos.get(agent.id) or {}).get("config") or {}).get("max_grace_period")
        for fid, tid in sorted(agent.tasks):
            fw = self.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if task is None or task.terminal:
                continue
            payload: dict[str, Any] = {"framework_id": _id(fid), "task_id": _id(tid)}
            own = ((task.info.get("kill_policy") or {}).get("grace_period") or {}).get("nanoseconds")
            if bound is not None:
                limit = int(bound["nanoseconds"])
                payload["kill_policy"] = {"grace_period": {"nanoseconds": min(int(own), limit) if own is not None
                                                           else limit}}
            self._to_agent(agent, "KILL_TASK", payload)

    def drain_rewrite(self: "Master", agent: Agent, fw: Framework, status: dict[str, Any], latest: str) -> str:
        """An update from a draining agent, as a draining Mesos agent sends it (`Slave::statusUpdate`):
        REASON_AGENT_DRAINING on killing and killed tasks, TASK_GONE_BY_OPERATOR for TASK_KILLED
        when the agent is to be marked gone (TASK_LOST for a framework that is not PARTITION_AWARE).
        Returns the (maybe rewritten) latest state."""
        info = self.drain_infos.get(agent.id)
        if info is None:
            return latest
        gone = self._fw_state(fw, "TASK_GONE_BY_OPERATOR") if info["config"].get("mark_gone") else None
        if gone and status.get("state") == "TASK_KILLED":
            status["state"] = gone
        if status.get("state") in ("TASK_KILLING", "TASK_KILLED", gone):
            status["reason"] = DRAIN_REASON
        return gone if gone and latest == "TASK_KILLED" else latest

    def check_drained(self: "Master", agent: Agent) -> None:
        """DRAINING becomes DRAINED once no task is left on the agent; then `mark_gone` removes it."""
        info = self.drain_infos.get(agent.id)
        if info is None or info["state"] != "DRAINING" or agent.tasks or agent.id not in self.agents:
            return
        info["state"] = "DRAINED"
        self._persist()
        log.info("agent %s is drained", agent.id)
        if info["config"].get("mark_gone"):
            self._to_agent(agent, "SHUTDOWN", {"message": "Agent has been marked gone"})
            self._loop().call_soon(self._remove_gone, agent.id)

    def _remove_gone(self: "Master", agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            self.remove_agent(agent, "Agent marked gone", unreachable=False)  # which forgets its drain
        elif self.forget_maintenance(agent_id):
            self._persist()

    def admitted_while_draining(self: "Master", agent: Agent) -> None:
        """An agent (re-)registering that was deactivated or draining stays so; the kills of a
        drain go out now (Mesos sends DrainSlaveMessage on re-registration)."""
        if agent.id not in self.deactivated:
            return
        self._withhold(agent)
        if agent.id in self.drain_infos:
            self._kill_for_drain(agent)
            self.check_drained(agent)

    def forget_maintenance(self: "Master", agent_id: str) -> bool:
        """The agent is neither deactivated nor draining any more; whether it was."""
        was = agent_id in self.deactivated
        self.deactivated.discard(agent_id)
        self.drain_infos.pop(agent_id, None)
        self.drain_started.pop(agent_id, None)
        return was

    def maintenance_record(self: "Master") -> dict[str, dict[str, Any]]:
        """What the registry keeps: each deactivated agent, with its drain when it drains."""
        record: dict[str, dict[str, Any]] = {}
        for agent_id in sorted(self.deactivated):
            entry: dict[str, Any] = {}
            info = self.drain_infos.get(agent_id)
            if info is not None:  # a copy: the writer thread reads it while this loop goes on
                entry = {"drain_info": {**info, "config": dict(info["config"])},
                         "drain_started": self.drain_started.get(agent_id, self.now())}
            record[agent_id] = entry
        return record

    def restore_maintenance(self: "Master", record: dict[str, dict[str, Any]]) -> None:
        """A new leader takes back the registry's deactivations and drains (before any agent
        re-registers); each agent stays withheld, and its drain goes on, when it comes back
        (`admitted_while_draining`)."""
        for agent_id, entry in record.items():
            self.deactivated.add(agent_id)
            drain = entry.get("drain_info")
            if isinstance(drain, dict) and drain.get("state") in ("DRAINING", "DRAINED"):
                self.drain_infos[agent_id] = {"state": drain["state"], "config": dict(drain.get("config") or {})}
                self.drain_started[agent_id] = float(entry.get("drain_started") or self.now())
        if record:
            log.info("registry: %d agents deactivated, %d of them draining", len(record),
                     sum(1 for entry in record.values() if entry.get("drain_info")))

    def drain_view(self: "Master", agent_id: str) -> dict[str, Any]:
        """The fields GET_AGENTS and GET_STATE add for an agent (master.proto `Agent`)."""
        out: dict[str, Any] = {"deactivated": agent_id in self.deactivated}
        if agent_id in self.drain_infos:
            out["drain_info"] = self.drain_infos[agent_id]
            out["estimated_drain_start_time"] = {"nanoseconds": int(self.drain_started[agent_id] * 1e9)}
        return out
