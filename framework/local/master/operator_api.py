"""What the master shows operators: the v1 operator API, legacy `/state`, metrics.

Rendering only: functions read the `Master` and return JSON-ready dicts. The v1
responses always carry their top-level arrays, even when empty (src/master/http.cpp, `Master::Http::api`); legacy
endpoints use flat resources and flat string ids. Views of frameworks, tasks and
executors take the caller's `Views` (the `view_*` ACLs): what it may not see is
left out, as Mesos filters (src/master/http.cpp), never refused.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from framework.mesos.messages import TERMINAL_STATES
from framework.mesos.resources import Resources, attribute_value
from framework.mesos.secrets import redacted
from framework.local.master.core import VERSION, Master
from framework.local.master.model import Agent, Framework, Stream, Task
from framework.local.master.security import ALL_VISIBLE, Views

TASK_STATES = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
               "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
               "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN")
BUILD = {"git_sha": "0000000000000000000000000000000000000000", "git_branch": "refs/heads/master",
         "git_tag": VERSION, "build_date": "2020-11-24 00:00:00", "build_time": 1606176000.0,
         "build_user": "dockyard"}


def _id(value: str) -> dict[str, str]:
    return {"value": value}


def _ns(seconds: float | None) -> dict[str, int] | None:
    return None if seconds is None else {"nanoseconds": int(seconds * 1e9)}


# --------------------------------------------------------------------------- v1 API
def task_json(task: Task) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": task.name, "task_id": _id(task.task_id), "framework_id": _id(task.framework_id),
        "agent_id": _id(task.agent_id), "state": task.state,
        "resources": task.resources.to_json(), "statuses": list(task.statuses),
    }
    if task.executor_id and task.executor_id != task.task_id or (
            task.executor_id and "executor" in task.info):
        out["executor_id"] = _id(task.executor_id)
    if task.status_update_state:
        out["status_update_state"] = task.status_update_state
    if task.status_update_uuid:
        out["status_update_uuid"] = task.status_update_uuid
    for key in ("labels", "discovery", "container", "health_check", "kill_policy", "check"):
        if key in task.info:
            out[key] = redacted(task.info[key])  # a SECRET volume's bytes never show
    return out


def framework_json(master: Master, fw: Framework) -> dict[str, Any]:
    offered = _offered(master, fw)
    return {
        "framework_info": fw.info, "active": fw.active and fw.connected,
        "connected": fw.connected, "recovered": fw.recovered,
        "registered_time": _ns(fw.registered_time),
        **({"reregistered_time": _ns(fw.reregistered_time)} if fw.reregistered_time else {}),
        **({"unregistered_time": _ns(fw.unregistered_time)} if fw.unregistered_time else {}),
        "offers": [offer_json(master, o) for o in (master.offers[i] for i in sorted(fw.offers)
                                                   if i in master.offers)],
        "inverse_offers": [],
        "allocated_resources": (_used(fw) + offered).to_json(),
        "offered_resources": offered.to_json(),
    }


def offer_json(master: Master, offer: Any) -> dict[str, Any]:
    agent = master.agents.get(offer.agent_id)
    return {"id": _id(offer.id), "framework_id": _id(offer.framework_id),
            "agent_id": _id(offer.agent_id), "hostname": agent.hostname if agent else "",
            "resources": offer.resources.to_json(), "allocation_info": {"role": offer.role}}


def agent_json(master: Master, agent: Agent) -> dict[str, Any]:
    used = master.used_by_agent(agent)
    offered = master.offered_on_agent(agent.id)
    return {
        "agent_info": agent.info, "active": agent.connected and agent.id not in master.deactivated,
        **master.drain_view(agent.id),  # deactivated, drain_info, estimated_drain_start_time
        "version": agent.version, "pid": agent.pid,
        "registered_time": _ns(agent.registered_time),
        **({"reregistered_time": _ns(agent.reregistered_time)} if agent.reregistered_time else {}),
        "total_resources": agent.total.to_json(),
        "allocated_resources": (used + offered).to_json(),
        "offered_resources": offered.to_json(),
        "capabilities": [{"type": t} for t in ("MULTI_ROLE", "HIERARCHICAL_ROLE",
                                               "RESERVATION_REFINEMENT", "AGENT_DRAINING")],
    }


def _used(fw: Framework) -> Resources:
    used = Resources()
    for task in fw.tasks.values():
        if not task.released:
            used = used + task.resources
    for executor in fw.executors.values():
        used = used + executor.resources
    return used


def _offered(master: Master, fw: Framework) -> Resources:
    offered = Resources()
    for offer_id in fw.offers:
        offer = master.offers.get(offer_id)
        if offer is not None:
            offered = offered + offer.resources
    return offered


def get_tasks(master: Master, views: Views = ALL_VISIBLE) -> dict[str, Any]:
    tasks, unreachable, completed = [], [], []
    for fw in list(master.frameworks.values()) + list(master.completed_frameworks.values()):
        if not views.framework(fw.info):
            continue
        tasks.extend(task_json(t) for t in fw.tasks.values() if views.task(t.info, fw.info))
        unreachable.extend(task_json(t) for t in fw.unreachable_tasks.values() if views.task(t.info, fw.info))
        completed.extend(task_json(t) for t in fw.completed_tasks if views.task(t.info, fw.info))
    return {"pending_tasks": [], "tasks": tasks, "unreachable_tasks": unreachable,
            "completed_tasks": completed, "orphan_tasks": []}


def get_frameworks(master: Master, views: Views = ALL_VISIBLE) -> dict[str, Any]:
    return {"frameworks": [framework_json(master, f) for f in master.frameworks.values()
                           if views.framework(f.info)],
            "completed_frameworks": [framework_json(master, f)
                                     for f in master.completed_frameworks.values()
                                     if views.framework(f.info)],
            "recovered_frameworks": []}


def get_agents(master: Master) -> dict[str, Any]:
    return {"agents": [agent_json(master, a) for a in master.agents.values()],
            "recovered_agents": []}


def get_executors(master: Master, views: Views = ALL_VISIBLE) -> dict[str, Any]:
    executors = []
    for agent in master.agents.values():
        for executor in agent.executors.values():
            fw = master.frameworks.get(executor.framework_id)
            if fw is not None and not views.executor(executor.info, fw.info):
                continue
            executors.append({"executor_info": executor.info, "agent_id": _id(agent.id)})
    return {"executors": executors, "orphan_executors": []}


def get_state(master: Master, views: Views = ALL_VISIBLE) -> dict[str, Any]:
    return {"get_tasks": get_tasks(master, views), "get_executors": get_executors(master, views),
            "get_frameworks": get_frameworks(master, views), "get_agents": get_agents(master)}


def get_version() -> dict[str, Any]:
    return {"version_info": {"version": VERSION, **BUILD}}


def version() -> dict[str, Any]:
    return {"version": VERSION, **BUILD}


def operator_call(master: Master, kind: str, views: Views = ALL_VISIBLE) -> dict[str, Any] | None:
    """The answer to a v1 operator call, or None when the type is not served."""
    if kind == "GET_HEALTH":
        return {"type": kind, "get_health": {"healthy": True}}
    if kind == "GET_VERSION":
        return {"type": kind, "get_version": get_version()}
    if kind == "GET_STATE":
        return {"type": kind, "get_state": get_state(master, views)}
    if kind == "GET_AGENTS":
        return {"type": kind, "get_agents": get_agents(master)}
    if kind == "GET_FRAMEWORKS":
        return {"type": kind, "get_frameworks": get_frameworks(master, views)}
    if kind == "GET_TASKS":
        return {"type": kind, "get_tasks": get_tasks(master, views)}
    if kind == "GET_EXECUTORS":
        return {"type": kind, "get_executors": get_executors(master, views)}
    if kind == "GET_MASTER":
        return {"type": kind, "get_master": {
            "master_info": master.info, "start_time": master.start_time,
            **({"elected_time": master.elected_time} if master.elected_time else {})}}
    if kind == "GET_ROLES":
        return {"type": kind, "get_roles": {"roles": roles(master)}}
    if kind == "GET_FLAGS":
        return {"type": kind, "get_flags": {"flags": [
            {"name": k, "value": str(v)} for k, v in sorted(flags(master).items())]}}
    return None


class Subscribers:
    """Operator API SUBSCRIBE: open event streams and what the master tells them.

    The master calls `observe` (it is one of `master.observers`) as things
    change; each change becomes one v1 master Event on every open stream whose
    subscriber may see it, in the order the master made the changes (as Mesos's
    `Master::Subscribers::send` asks each subscriber's approvers).
    """

    def __init__(self, master: Master) -> None:
        self.master = master
        self.streams: dict[Stream, Views] = {}
        master.observers.append(self.observe)

    def subscribe(self, views: Views = ALL_VISIBLE) -> Stream:
        """A new stream that starts with SUBSCRIBED{get_state, heartbeat_interval_seconds}."""
        stream = Stream()
        stream.send({"type": "SUBSCRIBED", "subscribed": {
            "get_state": get_state(self.master, views),
            "heartbeat_interval_seconds": float(self.master.config.heartbeat_interval)}})
        self.streams[stream] = views
        return stream

    def closed(self, stream: Stream) -> None:
        stream.closed = True
        self.streams.pop(stream, None)

    def observe(self, kind: str, subject: Any) -> None:
        if not self.streams:
            return  # rendering get_state-sized objects for nobody would be waste
        event = self.render(kind, subject)
        if event is None:
            return
        for stream, views in list(self.streams.items()):
            if self.visible(kind, subject, views):
                stream.send(event)

    def visible(self, kind: str, subject: Any, views: Views) -> bool:
        """May a subscriber with `views` hear of this change? Agents: always."""
        if views.everything:
            return True
        if kind in ("TASK_ADDED", "TASK_UPDATED"):
            task = subject if kind == "TASK_ADDED" else subject[0]
            fw = self.master.frameworks.get(task.framework_id) or \
                self.master.completed_frameworks.get(task.framework_id)
            return fw is not None and views.task(task.info, fw.info)
        if kind in ("FRAMEWORK_ADDED", "FRAMEWORK_UPDATED", "FRAMEWORK_REMOVED"):
            return views.framework(subject.info)
        return True

    def render(self, kind: str, subject: Any) -> dict[str, Any] | None:
        master = self.master
        payload: dict[str, Any]
        if kind == "TASK_ADDED":
            payload = {"task": task_json(subject)}
        elif kind == "TASK_UPDATED":
            task, status = subject
            payload = {"framework_id": _id(task.framework_id), "status": status,
                       "state": task.state}
        elif kind in ("FRAMEWORK_ADDED", "FRAMEWORK_UPDATED"):
            payload = {"framework": framework_json(master, subject)}
        elif kind == "FRAMEWORK_REMOVED":
            payload = {"framework_info": subject.info}
        elif kind == "AGENT_ADDED":
            payload = {"agent": agent_json(master, subject)}
        elif kind == "AGENT_REMOVED":
            payload = {"agent_id": _id(subject.id)}
        else:
            return None
        return {"type": kind, kind.lower(): payload}


def roles(master: Master) -> list[dict[str, Any]]:
    names = {"*"}
    for fw in master.frameworks.values():
        names.update(fw.roles)
    out = []
    for name in sorted(names):
        members = [f for f in master.frameworks.values() if name in f.roles]
        used = Resources()
        for fw in members:
            used = used + _used(fw).unreserved()
        out.append({"name": name, "weight": 1.0, "frameworks": [_id(f.id) for f in members],
                    "resources": used.to_json()})
    return out


def flags(master: Master) -> dict[str, Any]:
    cfg = master.config
    out: dict[str, Any] = {"ip": cfg.ip, "port": cfg.port, "work_dir": cfg.work_dir,
                           "hostname": master.hostname,
                           "allocation_interval": f"{cfg.allocation_interval}secs",
                           "agent_ping_timeout": f"{cfg.agent_ping_timeout}secs"}
    if cfg.offer_timeout:
        out["offer_timeout"] = f"{cfg.offer_timeout}secs"
    if cfg.zk:
        out["zk"] = cfg.zk
    return out


# --------------------------------------------------------------------------- legacy
def legacy_task(task: Task) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": task.task_id, "name": task.name, "framework_id": task.framework_id,
        "executor_id": task.executor_id if task.executor_id and "executor" in task.info else "",
        "slave_id": task.agent_id, "state": task.state, "resources": task.resources.flat(),
        "role": task.role,
        "statuses": [legacy_status(s) for s in task.statuses],
    }
    for key in ("labels", "discovery", "container", "health_check"):
        if key in task.info:
            value = redacted(task.info[key])
            out[key] = value.get("labels", []) if key == "labels" else value
    return out


def legacy_status(status: dict[str, Any]) -> dict[str, Any]:
    """A TaskStatus in `/state` and `/tasks` (src/common/http.cpp `model(const TaskStatus&)`): its
    ContainerStatus too, which names the container `task exec` launches a session under."""
    out: dict[str, Any] = {"state": status.get("state"), "timestamp": status.get("timestamp")}
    if isinstance(status.get("labels"), dict):
        out["labels"] = status["labels"].get("labels", [])
    if isinstance(status.get("container_status"), dict):
        out["container_status"] = status["container_status"]
    if "healthy" in status:
        out["healthy"] = status["healthy"]
    return out


def legacy_framework(master: Master, fw: Framework, views: Views = ALL_VISIBLE) -> dict[str, Any]:
    info = fw.info
    offered = _offered(master, fw)
    out: dict[str, Any] = {
        "id": fw.id, "name": info.get("name", ""), "pid": "", "user": info.get("user", ""),
        "used_resources": _used(fw).flat(), "offered_resources": offered.flat(),
        "resources": (_used(fw) + offered).flat(),
        "capabilities": sorted(fw.capabilities), "hostname": info.get("hostname", ""),
        "webui_url": info.get("webui_url", ""), "active": fw.active and fw.connected,
        "connected": fw.connected, "recovered": fw.recovered,
        "failover_timeout": float(info.get("failover_timeout") or 0.0),
        "checkpoint": bool(info.get("checkpoint", False)),
        "registered_time": fw.registered_time,
        "unregistered_time": fw.unregistered_time or 0.0,
        "tasks": [legacy_task(t) for t in fw.tasks.values() if views.task(t.info, info)],
        "unreachable_tasks": [legacy_task(t) for t in fw.unreachable_tasks.values()
                              if views.task(t.info, info)],
        "completed_tasks": [legacy_task(t) for t in fw.completed_tasks if views.task(t.info, info)],
        "offers": [{"id": o.id, "framework_id": o.framework_id, "slave_id": o.agent_id,
                    "resources": o.resources.flat()}
                   for o in (master.offers[i] for i in fw.offers if i in master.offers)],
        "executors": [{"executor_id": e.executor_id, "slave_id": e.agent_id,
                       "resources": e.resources.flat(), "name": e.info.get("name", "")}
                      for e in fw.executors.values() if views.executor(e.info, info)],
    }
    if isinstance(info.get("principal"), str):  # as Mesos: only when the framework has one
        out["principal"] = info["principal"]
    if fw.multi_role:
        out["roles"] = list(fw.roles)
    else:
        out["role"] = fw.roles[0] if fw.roles else "*"
    if fw.reregistered_time:
        out["reregistered_time"] = fw.reregistered_time
    return out


def legacy_agent(master: Master, agent: Agent) -> dict[str, Any]:
    used = master.used_by_agent(agent)
    reserved: dict[str, Any] = {}
    for role, res in agent.total.by_role().items():
        if role != "*":
            reserved[role] = res.flat()
    return {
        "id": agent.id, "hostname": agent.hostname, "port": agent.port,
        "attributes": {a["name"]: attribute_value(a) for a in agent.info.get("attributes") or []},
        "pid": agent.pid, "registered_time": agent.registered_time,
        **({"reregistered_time": agent.reregistered_time} if agent.reregistered_time else {}),
        "resources": agent.total.flat(), "used_resources": used.flat(),
        "offered_resources": master.offered_on_agent(agent.id).flat(),
        "reserved_resources": reserved, "unreserved_resources": agent.total.for_role("*").flat(),
        "active": agent.connected and agent.id not in master.deactivated,
        **_legacy_drain(master, agent.id), "version": agent.version,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
    }


def _legacy_drain(master: Master, agent_id: str) -> dict[str, Any]:
    """`/state`'s drain fields of an agent (master/readonly_handler.cpp `SlaveWriter`)."""
    view = master.drain_view(agent_id)
    started = view.pop("estimated_drain_start_time", None)
    if started is not None:
        view["estimated_drain_start_time_seconds"] = started["nanoseconds"] / 1e9
    return view


def legacy_frameworks(master: Master, views: Views = ALL_VISIBLE) -> dict[str, Any]:
    """`/frameworks`: the frameworks the caller may see, active and completed."""
    return {"frameworks": [legacy_framework(master, f, views) for f in master.frameworks.values()
                           if views.framework(f.info)],
            "completed_frameworks": [legacy_framework(master, f, views)
                                     for f in master.completed_frameworks.values()
                                     if views.framework(f.info)],
            "unregistered_frameworks": []}


def legacy_agents(master: Master) -> list[dict[str, Any]]:
    return [legacy_agent(master, a) for a in master.agents.values()]


TASK_LIMIT = 100  # /tasks answers at most this many unless `limit` says otherwise (master/constants.hpp)


def _query_int(value: str | None, default: int) -> int:
    """`numify<int>` of a query parameter: the default when absent or not an integer."""
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _first_timestamp(task: Task) -> float | None:
    return task.statuses[0].get("timestamp") if task.statuses else None


def legacy_tasks(master: Master, views: Views = ALL_VISIBLE, query: Mapping[str, str] | None = None
                 ) -> list[dict[str, Any]]:
    """`/tasks` (master/readonly_handler.cpp `tasks`): the running, unreachable and completed tasks of
    active and completed frameworks the caller may see, sorted by their first status's time
    (`order=asc|desc`, descending by default; tasks without a status last, or first when
    ascending), then `offset` and `limit` (100 by default). `framework_id` and `task_id`
    select, as Mesos's IDAcceptor does."""
    query = query or {}
    limit = _query_int(query.get("limit"), TASK_LIMIT)
    offset = _query_int(query.get("offset"), 0)
    framework_id, task_id = query.get("framework_id"), query.get("task_id")
    selected: list[Task] = []
    for fw in list(master.frameworks.values()) + list(master.completed_frameworks.values()):
        if framework_id is not None and fw.id != framework_id or not views.framework(fw.info):
            continue
        for task in [*fw.tasks.values(), *fw.unreachable_tasks.values(), *fw.completed_tasks]:
            if (task_id is None or task.task_id == task_id) and views.task(task.info, fw.info):
                selected.append(task)
    ascending = query.get("order") == "asc"
    stamped = sorted((t for t in selected if t.statuses), key=lambda t: float(_first_timestamp(t) or 0.0),
                     reverse=not ascending)
    unstamped = [t for t in selected if not t.statuses]
    ordered = unstamped + stamped if ascending else stamped + unstamped
    if offset < 0:  # a size_t in Mesos: a negative offset is past every task
        return []
    end = len(ordered) if limit < 0 else offset + limit  # a negative limit is a huge size_t
    return [legacy_task(t) for t in ordered[offset:end]]


def legacy_state(master: Master, views: Views = ALL_VISIBLE) -> dict[str, Any]:
    leader = master.leader_info
    out: dict[str, Any] = {
        "version": VERSION, **{k: v for k, v in BUILD.items() if k != "git_tag"},
        "git_tag": VERSION,
        "start_time": master.start_time, "id": master.id, "pid": master.info["pid"],
        "hostname": master.hostname,
        "capabilities": [c["type"] for c in master.info["capabilities"]],
        "activated_slaves": sum(1 for a in master.agents.values()
                                if a.connected and a.id not in master.deactivated),
        "deactivated_slaves": sum(1 for a in master.agents.values()
                                  if not a.connected or a.id in master.deactivated),
        "unreachable_slaves": len(master.unreachable_agents),
        "flags": {k: str(v) for k, v in flags(master).items()},
        "slaves": legacy_agents(master),
        "recovered_slaves": [],
        **legacy_frameworks(master, views),
        "orphan_tasks": [],
    }
    if master.elected_time is not None and master.leading:
        out["elected_time"] = master.elected_time
    if leader is not None:
        out["leader"] = f"master@{leader['address']['ip']}:{leader['address']['port']}"
        out["leader_info"] = leader
    return out


# --------------------------------------------------------------------------- metrics
def snapshot(master: Master) -> dict[str, float]:
    """`/metrics/snapshot`: Mesos's flat metric names (a useful subset)."""
    out: dict[str, float] = {
        "master/elected": 1.0 if master.leading else 0.0,
        "master/uptime_secs": time.time() - master.start_time,
        "master/frameworks_active": sum(1 for f in master.frameworks.values() if f.connected),
        "master/frameworks_connected": sum(1 for f in master.frameworks.values() if f.connected),
        "master/frameworks_disconnected": sum(1 for f in master.frameworks.values()
                                              if not f.connected),
        "master/frameworks_inactive": sum(1 for f in master.frameworks.values() if not f.active),
        "master/slaves_active": sum(1 for a in master.agents.values()
                                    if a.connected and a.id not in master.deactivated),
        "master/slaves_connected": sum(1 for a in master.agents.values() if a.connected),
        "master/slaves_disconnected": sum(1 for a in master.agents.values() if not a.connected),
        "master/slaves_inactive": float(sum(1 for a in master.agents.values()
                                            if not a.connected or a.id in master.deactivated)),
        "master/slaves_unreachable": float(len(master.unreachable_agents)),
        "master/outstanding_offers": float(len(master.offers)),
        "master/valid_status_update_acknowledgements":
            float(master.counters["valid_status_update_acknowledgements"]),
        "master/invalid_status_update_acknowledgements":
            float(master.counters["invalid_status_update_acknowledgements"]),
        "allocator/allocation_runs": float(master.allocation_runs),
    }
    total = Resources()
    used = Resources()
    for agent in master.agents.values():
        total = total + agent.total
        used = used + master.used_by_agent(agent)
    for name in ("cpus", "mem", "disk", "gpus"):
        t, u = total.scalar(name), used.scalar(name)
        out[f"master/{name}_total"] = t
        out[f"master/{name}_used"] = u
        out[f"master/{name}_percent"] = (u / t) if t else 0.0
    states = task_state_counts(master)
    for state in TASK_STATES:
        out[f"master/tasks_{state[5:].lower()}"] = float(states.get(state, 0))
    for key, value in master.counters.items():
        if key.startswith("messages/") or key.startswith("calls/") or key.startswith("events/"):
            out[f"master/{key}"] = float(value)
    for fw in master.frameworks.values():
        prefix = f"master/frameworks/{quote(str(fw.info.get('name', '')), safe='')}/{fw.id}"
        out[f"{prefix}/subscribed"] = 1.0 if fw.connected else 0.0
        out[f"{prefix}/calls"] = float(sum(fw.calls.values()))
        for kind, count in fw.calls.items():
            out[f"{prefix}/calls/{kind.lower()}"] = float(count)
        out[f"{prefix}/events"] = float(sum(fw.events.values()))
        for kind, count in fw.events.items():
            out[f"{prefix}/events/{kind.lower()}"] = float(count)
        for kind in ("sent", "accepted", "declined", "rescinded"):
            out[f"{prefix}/offers/{kind}"] = float(fw.offer_counts[kind])
        for task in fw.tasks.values():
            bucket = "terminal" if task.state in TERMINAL_STATES else "active"
            key = f"{prefix}/tasks/{bucket}/{task.state.lower()}"
            out[key] = out.get(key, 0.0) + 1.0
        for role in fw.roles:
            out[f"{prefix}/roles/{role}/suppressed"] = (
                1.0 if role in master.allocator.suppressed_roles(fw.id) else 0.0)
    return out


def task_state_counts(master: Master) -> dict[str, int]:
    counts: dict[str, int] = {}

    def add(tasks: Iterable[Task]) -> None:
        for task in tasks:
            counts[task.state] = counts.get(task.state, 0) + 1

    for fw in list(master.frameworks.values()) + list(master.completed_frameworks.values()):
        add(fw.tasks.values())
        add(fw.unreachable_tasks.values())
        add(fw.completed_tasks)
    return counts


class MasterCollector:
    """Prometheus view of the master, computed at scrape time from its live state."""

    def __init__(self, master: Master) -> None:
        self.master = master

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        master = self.master
        snap = snapshot(master)
        gauges = [
            ("dockyard_master_elected", "1 when this master leads", snap["master/elected"]),
            ("dockyard_master_frameworks", "Subscribed frameworks",
             snap["master/frameworks_connected"]),
            ("dockyard_master_frameworks_disconnected", "Frameworks within failover timeout",
             snap["master/frameworks_disconnected"]),
            ("dockyard_master_agents", "Connected agents", snap["master/slaves_connected"]),
            ("dockyard_master_agents_unreachable", "Agents removed as unreachable",
             snap["master/slaves_unreachable"]),
            ("dockyard_master_offers_outstanding", "Offers not yet answered",
             snap["master/outstanding_offers"]),
        ]
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        for resource in ("cpus", "mem", "disk", "gpus"):
            family = GaugeMetricFamily(f"dockyard_master_{resource}", f"{resource} on agents",
                                       labels=["kind"])
            family.add_metric(["total"], snap[f"master/{resource}_total"])
            family.add_metric(["used"], snap[f"master/{resource}_used"])
            yield family
        tasks = GaugeMetricFamily("dockyard_master_tasks", "Tasks known to the master by state",
                                  labels=["state"])
        counts = task_state_counts(master)
        for state in TASK_STATES:
            tasks.add_metric([state], float(counts.get(state, 0)))
        yield tasks
        calls = CounterMetricFamily("dockyard_master_scheduler_calls",
                                    "Scheduler API calls by type", labels=["type"])
        events = CounterMetricFamily("dockyard_master_scheduler_events",
                                     "Scheduler events sent by type", labels=["type"])
        for key, value in sorted(master.counters.items()):
            if key.startswith("calls/"):
                calls.add_metric([key[6:]], float(value))
            elif key.startswith("events/"):
                events.add_metric([key[7:]], float(value))
        yield calls
        yield events
        offers = CounterMetricFamily("dockyard_master_offers", "Offers by outcome",
                                     labels=["outcome"])
        totals: dict[str, int] = {}
        for fw in list(master.frameworks.values()) + list(master.completed_frameworks.values()):
            for kind, count in fw.offer_counts.items():
                totals[kind] = totals.get(kind, 0) + count
        for kind in ("sent", "accepted", "declined", "rescinded"):
            offers.add_metric([kind], float(totals.get(kind, 0)))
        yield offers
        yield CounterMetricFamily("dockyard_master_allocation_runs", "Allocation cycles run",
                                  value=float(master.allocation_runs))
