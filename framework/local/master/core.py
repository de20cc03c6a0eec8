"""The embedded master's state and behaviour: frameworks, agents, offers, tasks.

One asyncio event loop owns a `Master`; every method runs on that loop, so no
locks. HTTP handlers (`routes.py`) parse a request, call one method here,
and render what it returns. The agent-facing half (docs/internal-protocol.md)
is in `agents.py`, the records in `model.py`, the allocator in
`allocator.py`. Behaviour follows the real Mesos master (src/master/master.cpp and
src/master/http.cpp; comments name the function followed).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections import Counter, OrderedDict
from concurrent.futures import Future
from typing import Any, Callable, Iterable

from framework.mesos.resources import Resources
from framework.local.master import validation
from framework.local.master.allocator import Allocator
from framework.local.master.security import (MasterSecurity, framework_roles, launch_refused,
                                             registration_refused, task_user)
from framework.local.master.model import (VERSION, Agent, Executor, Framework, HttpError,
                                         Offer, Stream, Task)
from framework.local.master.model import id_obj as _id, id_value as _val
from framework.local.master.agents import AgentSide
from framework.local.master.drain import Draining
from framework.local.master.quota import QuotaSide
from framework.local.master.config import MasterConfig, advertised_ip, ip_as_int
from framework.local.master.updates import TaskUpdates
from framework.local.master.registry import Registry

log = logging.getLogger("dockyard.master")

MAX_COMPLETED_FRAMEWORKS = 50
DEFAULT_REFUSE_SECONDS = 5.0


class Master(AgentSide, TaskUpdates, Draining, QuotaSide):
    """The embedded master's whole state; the HTTP layer calls into it."""

    def __init__(self, config: MasterConfig, *, clock: Callable[[], float] = time.monotonic,
                 security: MasterSecurity | None = None) -> None:
        self.config = config
        self.clock = clock
        self.security = security or MasterSecurity()
        self.acls = self.security.acls  # --acls; without it everything is allowed, as in Mesos
        # One TLS setting for the cluster, as libprocess has: agents serve what the master does.
        self.agent_scheme = "https" if self.security.tls is not None else "http"
        self.id = str(uuidlib.uuid4())
        ip = advertised_ip(config.ip)
        self.hostname = config.hostname or ip
        self.info = {
            "id": self.id, "ip": ip_as_int(ip), "port": config.port,
            "pid": f"master@{ip}:{config.port}", "hostname": self.hostname,
            "version": VERSION,
            "address": {"hostname": self.hostname, "ip": ip, "port": config.port},
            "capabilities": [{"type": "AGENT_UPDATE"}, {"type": "AGENT_DRAINING"},
                             {"type": "QUOTA_V2"}],
        }
        self.allocator = Allocator()
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: OrderedDict[str, Framework] = OrderedDict()
        self.agents: dict[str, Agent] = {}
        self.unreachable_agents: dict[str, float] = {}
        self.offers: dict[str, Offer] = {}
        self.start_time = time.time()
        self.elected_time: float | None = None
        # Leadership: standalone masters lead; with ZooKeeper the contender sets these.
        self.leading = config.zk is None
        self.leader_info: dict[str, Any] | None = self.info if self.leading else None
        if self.leading:
            self.elected_time = self.start_time
        self._next_framework = 0
        self._next_offer = 0
        self._next_agent = 0
        self._allocation_handle: asyncio.TimerHandle | None = None
        self._allocation_all = False
        self._allocation_agents: set[str] = set()
        self.counters: Counter[str] = Counter()
        self.allocation_runs = 0
        # Registry: admitted agents survive a master restart/failover (ids only).
        self.registry: Registry | None = None
        self.registered: dict[str, dict[str, Any]] = {}
        # Agent id -> the principal that registered it (--authenticate-agents): only that
        # principal may speak for the agent. Kept in the registry with the agents, for
        # registered, awaited and unreachable agents alike.
        self.agent_owners: dict[str, str] = {}
        self.recovering: dict[str, dict[str, Any]] = {}
        self._registry_writer: Any = None
        # The latest registry write (one writer thread: once it is done, so is every earlier one).
        self.registry_write: Future[None] | None = None
        self._recovery_timer: asyncio.TimerHandle | None = None
        # Operator maintenance (drain.py) and quota (quota.py), by agent id and role.
        self.deactivated: set[str] = set()
        self.drain_infos: dict[str, dict[str, Any]] = {}
        self.drain_started: dict[str, float] = {}
        self.quotas: dict[str, dict[str, Any]] = {}
        # Operator API SUBSCRIBE: callables told of changes, `(event_type, subject)`.
        self.observers: list[Callable[[str, Any], None]] = []

    # ------------------------------------------------------------------ helpers
    def notify(self, kind: str, subject: Any) -> None:
        """Tell operator subscribers (and any other observer) what just changed."""
        for observer in list(self.observers):
            try:
                observer(kind, subject)
            except Exception:  # a broken observer must not break the master
                log.exception("operator event observer failed on %s", kind)

    def task_state_changed(self, task: Task, status: dict[str, Any]) -> None:
        """TASK_UPDATED for operators (only when the master's idea of the state moves)."""
        self.notify("TASK_UPDATED", (task, status))
    def now(self) -> float:
        return time.time()

    def _loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def _send(self, fw: Framework, event: dict[str, Any]) -> None:
        if fw.stream is not None and not fw.stream.closed:
            fw.stream.send(event)
            fw.events[event["type"]] += 1
            self.counters[f"events/{event['type']}"] += 1

    def _to_agent(self, agent: Agent | None, kind: str, payload: dict[str, Any]) -> None:
        if agent is not None and agent.stream is not None:
            agent.stream.send({"type": kind, kind.lower(): payload})

    def _fw_state(self, fw: Framework | None, state: str) -> str:
        """Partition-aware-only states become TASK_LOST for other frameworks."""
        if fw is not None and not fw.partition_aware and state in (
                "TASK_DROPPED", "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
                "TASK_UNKNOWN"):
            return "TASK_LOST"
        return state

    def _master_update(self, fw: Framework, task_id: str, state: str, reason: str | None,
                       message: str, agent_id: str | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a master-generated update (no uuid: never retried, never ACKed)."""
        status: dict[str, Any] = {"task_id": _id(task_id), "state": self._fw_state(fw, state),
                                  "source": "SOURCE_MASTER", "message": message,
                                  "timestamp": self.now()}
        if reason:
            status["reason"] = reason
        if agent_id:
            status["agent_id"] = _id(agent_id)
        if extra:
            status.update(extra)
        self._send(fw, {"type": "UPDATE", "update": {"status": status}})
        return status

    # ------------------------------------------------------------ allocation
    def request_allocation(self, agent_ids: Iterable[str] | None = None) -> None:
        """Allocate soon (batched): freed resources must not wait a whole interval."""
        if agent_ids is None:
            self._allocation_all = True
        else:
            self._allocation_agents.update(agent_ids)
        if self._allocation_handle is None:
            try:
                loop = self._loop()
            except RuntimeError:
                return
            self._allocation_handle = loop.call_later(self.config.allocation_batch,
                                                      self._run_batched_allocation)

    def _run_batched_allocation(self) -> None:
        self._allocation_handle = None
        agents = None if self._allocation_all else list(self._allocation_agents)
        self._allocation_all = False
        self._allocation_agents.clear()
        self.allocate(agents)

    def allocate(self, agent_ids: list[str] | None = None) -> int:
        """One allocation cycle; turns allocations into offers. Returns offers made."""
        if not self.leading:
            return 0
        self.allocation_runs += 1
        allocations = self.allocator.allocate(self.clock(), agent_ids)
        by_framework: dict[str, list[dict[str, Any]]] = {}
        for allocation in allocations:
            fw = self.frameworks.get(allocation.framework_id)
            agent = self.agents.get(allocation.agent_id)
            if fw is None or agent is None or not fw.connected:
                self.allocator.recover(allocation.framework_id, allocation.agent_id,
                                       allocation.role, allocation.resources)
                continue
            offer_id = f"{self.id}-O{self._next_offer}"
            self._next_offer += 1
            offer = Offer(offer_id, fw.id, agent.id, allocation.role, allocation.resources)
            self.offers[offer_id] = offer
            if self.config.offer_timeout is not None and self.config.offer_timeout > 0:
                offer.timer = self._loop().call_later(self.config.offer_timeout,
                                                      self._offer_timed_out, offer_id)
            fw.offers.add(offer_id)
            fw.offer_counts["sent"] += 1
            by_framework.setdefault(fw.id, []).append(self._render_offer(fw, agent, offer))
        for framework_id, offers in by_framework.items():
            self._send(self.frameworks[framework_id],
                       {"type": "OFFERS", "offers": {"offers": offers}})
        return len(allocations)

    def _render_offer(self, fw: Framework, agent: Agent, offer: Offer) -> dict[str, Any]:
        role = offer.role if fw.multi_role else None
        rendered: dict[str, Any] = {
            "id": _id(offer.id), "framework_id": _id(fw.id), "agent_id": _id(agent.id),
            "hostname": agent.hostname,
            "url": {"scheme": self.agent_scheme,
                    "address": {"hostname": agent.hostname, "ip": agent.ip, "port": agent.port},
                    "path": "/slave(1)"},
            "resources": offer.resources.to_json(
                allocation_role=role, refined="RESERVATION_REFINEMENT" in fw.capabilities),
            "attributes": agent.info.get("attributes") or [],
            "executor_ids": [_id(e.executor_id) for (fid, _), e in agent.executors.items()
                             if fid == fw.id],
        }
        if role is not None:
            rendered["allocation_info"] = {"role": role}
        return rendered

    def _offer_timed_out(self, offer_id: str) -> None:
        """--offer-timeout: an offer held too long goes back to the pool (rescinded).

        The framework that sat on it is filtered from those resources for as long
        again, as if it had declined them: otherwise DRF, which now sees it holding
        less, would offer them straight back to it, and a framework that never
        answers would keep an agent from every other framework for ever. Those
        resources go first to the frameworks that were not offered them; a REVIVE
        clears the filter, as any other.
        """
        offer = self.offers.get(offer_id)
        if offer is not None:
            offer.timer = None
            log.info("rescinding offer %s of framework %s: outstanding longer than %ss", offer_id,
                     offer.framework_id, self.config.offer_timeout)
            self._drop_offer(offer, rescind=True, refuse_seconds=self.config.offer_timeout)
            self.request_allocation([offer.agent_id])

    def _drop_offer(self, offer: Offer, *, rescind: bool, refuse_seconds: float | None = None
                    ) -> None:
        self.offers.pop(offer.id, None)
        if offer.timer is not None:
            offer.timer.cancel()
            offer.timer = None
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer.id)
            if rescind:
                fw.offer_counts["rescinded"] += 1
                self._send(fw, {"type": "RESCIND", "rescind": {"offer_id": _id(offer.id)}})
        self.allocator.recover(offer.framework_id, offer.agent_id, offer.role, offer.resources,
                               refuse_seconds=refuse_seconds, now=self.clock())

    # ------------------------------------------------------------- scheduler API
    def subscribe(self, call: dict[str, Any]) -> Stream:
        """SUBSCRIBE (`Master::Http::scheduler`, `Master::subscribe`): a stream that starts with SUBSCRIBED or carries one ERROR."""
        subscribe = call["subscribe"]
        info = dict(subscribe["framework_info"])
        suppressed = list(subscribe.get("suppressed_roles") or [])
        stream = Stream()
        self.counters["calls/SUBSCRIBE"] += 1
        # The order of Mesos's `Master::subscribe` and `_subscribe`: FrameworkInfo, a removed
        # framework, the suppressed roles, authorization, then what may not change.
        error = validation.validate_framework_info(info)
        framework_id = _val(info.get("id"))
        if error is None and framework_id in self.completed_frameworks:
            error = "Framework has been removed"
        if error is None:
            error = validation.suppressed_roles_error(validation.framework_roles(info), suppressed)
        if error is None:
            error = self._authorize_registration(info)
        fw = self.frameworks.get(framework_id) if framework_id else None
        if error is None and fw is not None:
            # Whoever holds a framework id must not take the framework over (and, by
            # disconnecting, have its tasks killed): master.cpp `_subscribe`, validateUpdate.
            error = validation.framework_update_error(fw.info, info, preserve_immutable=True)
        if error is not None:
            log.info("refusing subscription of framework '%s': %s", info.get("name", ""), error)
            stream.send({"type": "ERROR", "error": {"message": error}})
            stream.close()
            return stream
        now = self.now()
        if fw is None:
            if framework_id is None:
                framework_id = f"{self.id}-{self._next_framework:04d}"
                self._next_framework += 1
            info["id"] = _id(framework_id)
            info.setdefault("failover_timeout", 0.0)
            info.setdefault("checkpoint", False)
            fw = Framework(framework_id, info, validation.framework_roles(info),
                           validation.capabilities(info), now)
            self.frameworks[framework_id] = fw
            added = True
        else:
            added = False
            if fw.stream is not None and not fw.stream.closed:
                fw.stream.send({"type": "ERROR", "error": {"message": "Framework failed over"}})
                fw.stream.close()
            for offer_id in list(fw.offers):
                offer = self.offers.get(offer_id)
                if offer is not None:
                    self._drop_offer(offer, rescind=False)
            if fw.failover_timer is not None:
                fw.failover_timer.cancel()
                fw.failover_timer = None
            # user and checkpoint cannot change on re-subscription
            for key in ("user", "checkpoint"):
                if key in fw.info:
                    info[key] = fw.info[key]
            info["id"] = _id(fw.id)
            info.setdefault("failover_timeout", 0.0)
            fw.info = info
            fw.roles = validation.framework_roles(info)
            fw.capabilities = validation.capabilities(info)
            fw.reregistered_time = now
            fw.recovered = False
        fw.stream = stream
        fw.active = True
        fw.unregistered_time = None
        fw.calls["SUBSCRIBE"] += 1
        self.allocator.add_framework(fw.id, fw.roles, active=True, suppressed=suppressed,
                                     gpu_aware="GPU_RESOURCES" in fw.capabilities)
        self._send(fw, {"type": "SUBSCRIBED", "subscribed": {
            "framework_id": _id(fw.id),
            "heartbeat_interval_seconds": float(self.config.heartbeat_interval),
            "master_info": self.info}})
        self._send(fw, {"type": "HEARTBEAT"})
        self.notify("FRAMEWORK_ADDED" if added else "FRAMEWORK_UPDATED", fw)
        for task in list(fw.tasks.values()):
            if task.pending:
                self._forward(task, reset=True)
        for agent_id in {t.agent_id for t in fw.tasks.values()}:
            self._to_agent(self.agents.get(agent_id), "UPDATE_FRAMEWORK",
                           {"framework_info": fw.info})
        self.request_allocation()
        return stream

    def _authorize_registration(self, info: dict[str, Any]) -> str | None:
        """`register_frameworks` for the framework's principal and every role it asks for."""
        principal = info.get("principal") if isinstance(info.get("principal"), str) else None
        roles = framework_roles(info)
        if self.acls.authorized("register_frameworks", principal, roles):
            return None
        return registration_refused(_val(info.get("id")) or "", roles)

    def stream_closed(self, stream: Stream) -> None:
        """A scheduler's connection ended: deactivate, start the failover timer (`Master::exited`)."""
        stream.closed = True
        for fw in self.frameworks.values():
            if fw.stream is stream:
                self._disconnect(fw)
                return

    def _disconnect(self, fw: Framework) -> None:
        fw.stream = None
        fw.active = False
        fw.unregistered_time = self.now()
        self.allocator.set_framework_active(fw.id, False)
        for offer_id in list(fw.offers):
            offer = self.offers.get(offer_id)
            if offer is not None:
                self._drop_offer(offer, rescind=False)
        timeout = float(fw.info.get("failover_timeout") or 0.0)
        if timeout <= 0:
            self.remove_framework(fw)
        else:
            self.notify("FRAMEWORK_UPDATED", fw)  # deactivated, as Mesos reports it
            fw.failover_timer = self._loop().call_later(timeout, self._failover_expired, fw.id)
        self.request_allocation()

    def _failover_expired(self, framework_id: str) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is not None and not fw.connected:
            log.info("framework %s did not fail over in time: removing it", framework_id)
            self.remove_framework(fw)

    def lookup(self, framework_id: str, stream_id: str | None, principal: str | None = None) -> Framework:
        """The checks Mesos's master makes of every scheduler call but SUBSCRIBE (src/master/http.cpp `scheduler`).

        `principal` (the authenticated caller, None when frameworks are not
        authenticated) must be the framework's own, as master/http.cpp `scheduler`
        checks it right after finding the framework.
        """
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise HttpError(400, "Framework cannot be found")
        if principal is not None and principal != fw.info.get("principal"):
            raise HttpError(400, f"Authenticated principal '{principal}' does not match principal "
                                 f"'{fw.info.get('principal') or ''}' set in `FrameworkInfo`")
        if not fw.connected:
            raise HttpError(403, "Framework is not subscribed")
        if stream_id is None:
            raise HttpError(400, "All non-subscribe calls should include the "
                                 "'Mesos-Stream-Id' header")
        if stream_id != fw.stream.id:  # type: ignore[union-attr]
            raise HttpError(400, f"The stream ID '{stream_id}' included in this request "
                                 f"didn't match the stream ID currently associated with "
                                 f"framework ID {framework_id}")
        return fw

    def call(self, fw: Framework, call: dict[str, Any]) -> tuple[int, Any]:
        """Run a validated scheduler call for a subscribed framework: (status, body)."""
        kind = call["type"]
        fw.calls[kind] += 1
        self.counters[f"calls/{kind}"] += 1
        if kind == "TEARDOWN":
            self.remove_framework(fw)
        elif kind == "ACCEPT":
            self.accept(fw, call["accept"])
        elif kind == "DECLINE":
            self.decline(fw, call["decline"])
        elif kind == "REVIVE":
            roles = (call.get("revive") or {}).get("roles") or []
            self.allocator.revive(fw.id, roles)
            self.request_allocation()
        elif kind == "SUPPRESS":
            roles = (call.get("suppress") or {}).get("roles") or []
            self.allocator.suppress(fw.id, roles)
        elif kind == "KILL":
            self.kill(fw, call["kill"])
        elif kind == "SHUTDOWN":
            shutdown = call["shutdown"]
            agent = self.agents.get(_val(shutdown["agent_id"]) or "")
            self._to_agent(agent, "SHUTDOWN_EXECUTOR", {
                "framework_id": _id(fw.id), "executor_id": shutdown["executor_id"]})
        elif kind == "ACKNOWLEDGE":
            self.acknowledge(fw, call["acknowledge"])
        elif kind == "RECONCILE":
            self.reconcile(fw, call["reconcile"].get("tasks") or [])
        elif kind == "MESSAGE":
            message = call["message"]
            agent = self.agents.get(_val(message["agent_id"]) or "")
            self.counters["messages/framework_to_executor"] += 1
            self._to_agent(agent, "MESSAGE", {"framework_id": _id(fw.id),
                                              "executor_id": message["executor_id"],
                                              "data": message["data"]})
        elif kind == "UPDATE_FRAMEWORK":
            return self.update_framework(fw, call["update_framework"])
        elif kind == "UNKNOWN":
            return 501, "Received 'UNKNOWN' call"
        # REQUEST, inverse offers, operation calls: accepted, nothing to do here.
        return 202, None

    def update_framework(self, fw: Framework, update: dict[str, Any]) -> tuple[int, Any]:
        info = dict(update["framework_info"])
        suppressed = list(update.get("suppressed_roles") or [])
        error = validation.validate_framework_info(info) or \
            validation.suppressed_roles_error(validation.framework_roles(info), suppressed)
        if error:
            return 400, error
        error = validation.framework_update_error(fw.info, info)
        if error:
            return 400, error
        refused = self._authorize_registration(info)
        if refused:
            return 403, refused
        info.setdefault("failover_timeout", 0.0)
        fw.info = info
        fw.roles = validation.framework_roles(info)
        fw.capabilities = validation.capabilities(info)
        self.allocator.add_framework(fw.id, fw.roles, active=True, suppressed=suppressed,
                                     gpu_aware="GPU_RESOURCES" in fw.capabilities)
        for offer_id in list(fw.offers):
            offer = self.offers[offer_id]
            if offer.role not in fw.roles:
                self._drop_offer(offer, rescind=True)
        self.notify("FRAMEWORK_UPDATED", fw)
        self.request_allocation()
        return 200, None

    # ------------------------------------------------------------ ACCEPT / DECLINE
    def _refuse_seconds(self, filters: Any) -> float:
        try:
            value = float((filters or {}).get("refuse_seconds", DEFAULT_REFUSE_SECONDS))
        except (TypeError, ValueError, AttributeError):
            return DEFAULT_REFUSE_SECONDS
        if value < 0:
            return DEFAULT_REFUSE_SECONDS
        # As Mesos: a filter lasts at least one allocation interval (0 means none).
        return max(value, self.config.allocation_interval) if value > 0 else 0.0

    def decline(self, fw: Framework, decline: dict[str, Any]) -> None:
        refuse = self._refuse_seconds(decline.get("filters"))
        for offer_id in (_val(o) for o in decline.get("offer_ids") or []):
            offer = self.offers.get(offer_id or "")
            if offer is not None and offer.framework_id == fw.id:
                fw.offer_counts["declined"] += 1
                self._drop_offer(offer, rescind=False, refuse_seconds=refuse)

    def _validate_offers(self, fw: Framework, offer_ids: list[str]) -> str | None:
        if not offer_ids:
            return "No offers specified"
        if len(set(offer_ids)) != len(offer_ids):
            dup = next(o for o in offer_ids if offer_ids.count(o) > 1)
            return f"Duplicate offer {dup} in offer list"
        for offer_id in offer_ids:
            if offer_id not in self.offers:
                return f"Offer {offer_id} is no longer valid"
        offers = [self.offers[o] for o in offer_ids]
        for offer in offers:
            if offer.framework_id != fw.id:
                return (f"Offer {offer.id} has invalid framework {offer.framework_id} "
                        f"while framework {fw.id} is expected")
        roles = {o.role for o in offers}
        if len(roles) > 1:
            return "Aggregated offers must be allocated to the same role"
        agents = {o.agent_id for o in offers}
        if len(agents) > 1:
            return "Aggregated offers must belong to one single agent"
        if offers[0].agent_id not in self.agents:
            return f"Agent {offers[0].agent_id} is not available"
        return None

    def accept(self, fw: Framework, accept: dict[str, Any]) -> None:
        """ACCEPT (`Master::accept`, `Master::_accept`): validate offers, run operations in order."""
        offer_ids = [_val(o) or "" for o in accept.get("offer_ids") or []]
        operations = accept.get("operations") or []
        error = self._validate_offers(fw, offer_ids)
        if error is not None:
            # Every still-valid offer named is discarded, without RESCIND (`Master::accept`).
            for offer_id in dict.fromkeys(offer_ids):
                offer = self.offers.get(offer_id)
                if offer is not None:
                    self._drop_offer(offer, rescind=False)
            state = "TASK_DROPPED" if fw.partition_aware else "TASK_LOST"
            for operation in operations:
                for task in _operation_tasks(operation):
                    self._master_update(fw, _val(task.get("task_id")) or "", state,
                                        "REASON_INVALID_OFFERS",
                                        f"Task launched with invalid offers: {error}",
                                        agent_id=_val(task.get("agent_id")))
            self.request_allocation()
            return
        offers = [self.offers.pop(o) for o in offer_ids]
        for offer in offers:
            fw.offers.discard(offer.id)
            fw.offer_counts["accepted"] += 1
        agent = self.agents[offers[0].agent_id]
        role = offers[0].role
        available = Resources()
        for offer in offers:
            available = available + offer.resources
        launched: set[str] = set()
        for operation in operations:
            kind = operation.get("type")
            if kind == "LAUNCH":
                available = self._launch(fw, agent, role, operation, available, launched)
            elif kind == "LAUNCH_GROUP":
                available = self._launch_group(fw, agent, role, operation, available, launched)
            else:
                log.info("ignoring unsupported offer operation %s", kind)
        refuse = self._refuse_seconds(accept.get("filters"))
        if not available.empty:
            self.allocator.recover(fw.id, agent.id, role, available, refuse_seconds=refuse,
                                   now=self.clock())
            if not refuse:  # unfiltered: offered again at once, like resources freed by a task
                self.request_allocation([agent.id])

    def _launch(self, fw: Framework, agent: Agent, role: str, operation: dict[str, Any],
                available: Resources, launched: set[str]) -> Resources:
        for task in (operation.get("launch") or {}).get("task_infos") or []:
            task = dict(task)
            task_id = _val(task.get("task_id")) or ""
            executor = task.get("executor")
            if isinstance(executor, dict) and "framework_id" not in executor:
                task["executor"] = executor = {**executor, "framework_id": _id(fw.id)}
            executor_id = _val(executor.get("executor_id")) if isinstance(executor, dict) else None
            refused = self._authorize_launch(fw, [task])
            if refused is not None:
                self._master_update(fw, task_id, "TASK_ERROR", "REASON_TASK_UNAUTHORIZED", refused,
                                    agent_id=_val(task.get("agent_id")))
                continue
            if operation.get("id"):
                error: str | None = "The `id` field is not supported for LAUNCH operations"
                consumed = Resources()
            else:
                error, consumed = validation.validate_task(
                    task, agent_id=agent.id, known_task=task_id in fw.tasks or task_id in launched,
                    has_executor=executor_id is not None and (fw.id, executor_id) in agent.executors,
                    offered=available, framework_id=fw.id,
                    unreachable_task=task_id in fw.unreachable_tasks)
            if error is not None:
                self._master_update(fw, task_id, "TASK_ERROR", "REASON_TASK_INVALID", error,
                                    agent_id=_val(task.get("agent_id")))
                continue
            available = available - consumed
            launched.add(task_id)
            task_resources = Resources(task.get("resources") or [])
            if executor_id is not None and (fw.id, executor_id) not in agent.executors:
                self._add_executor(fw, agent, executor, role,
                                   Resources(executor.get("resources") or []))
            added = self._add_task(fw, agent, task, role, task_resources,
                                   executor_id if executor_id is not None else None)
            self.notify("TASK_ADDED", added)
            self._to_agent(agent, "RUN_TASK", {"framework_info": fw.info, "task": task})
        return available

    def _refuse_group(self, fw: Framework, tasks: list[dict[str, Any]], reason: str, message: str) -> None:
        """A task group is launched whole or not at all: every task gets the same TASK_ERROR."""
        for task in tasks:
            self._master_update(fw, _val(task.get("task_id")) or "", "TASK_ERROR", reason, message,
                                agent_id=_val(task.get("agent_id")))

    def _launch_group(self, fw: Framework, agent: Agent, role: str, operation: dict[str, Any],
                      available: Resources, launched: set[str]) -> Resources:
        group = operation.get("launch_group") or {}
        executor = dict(group.get("executor") or {})
        tasks = [dict(t) for t in (group.get("task_group") or {}).get("tasks") or []]
        executor_id = _val(executor.get("executor_id")) or ""
        existing = agent.executors.get((fw.id, executor_id))
        refused = self._authorize_launch(fw, [{**task, "executor": executor} for task in tasks])
        if refused is not None:
            self._refuse_group(fw, tasks, "REASON_TASK_GROUP_UNAUTHORIZED", refused)
            return available
        if operation.get("id"):
            error: str | None = "The `id` field is not supported for LAUNCH_GROUP operations"
            consumed = Resources()
        else:
            error, consumed = validation.validate_task_group(
                executor, tasks, agent_id=agent.id, known_tasks=set(fw.tasks) | launched,
                existing_executor=existing.info if existing else None, offered=available,
                framework_id=fw.id, unreachable_tasks=fw.unreachable_tasks.keys())
        if error is not None:
            self._refuse_group(fw, tasks, "REASON_TASK_GROUP_INVALID", error)
            return available
        available = available - consumed
        if existing is None:
            self._add_executor(fw, agent, executor, role, Resources(executor.get("resources") or []))
        for task in tasks:
            task["executor"] = executor  # the group executor is copied into each task
            launched.add(_val(task["task_id"]) or "")
            self.notify("TASK_ADDED", self._add_task(
                fw, agent, task, role, Resources(task.get("resources") or []), executor_id))
        self._to_agent(agent, "RUN_TASK_GROUP", {"framework_info": fw.info, "executor": executor,
                                                 "task_group": {"tasks": tasks}})
        return available

    def _authorize_launch(self, fw: Framework, tasks: list[dict[str, Any]]) -> str | None:
        """`run_tasks` for the framework's principal and each task's user: why the first
        refused task may not run, or None (the master refuses before validating, as Mesos)."""
        principal = fw.info.get("principal") if isinstance(fw.info.get("principal"), str) else None
        for task in tasks:
            user = task_user(task, fw.info)
            if not self.acls.authorized("run_tasks", principal, user):
                return launch_refused(_val(task.get("task_id")) or "", fw.id, user)
        return None

    def _add_executor(self, fw: Framework, agent: Agent, info: dict[str, Any], role: str,
                      resources: Resources) -> Executor:
        executor_id = _val(info.get("executor_id")) or ""
        executor = Executor(executor_id, fw.id, agent.id, info, role, resources)
        agent.executors[(fw.id, executor_id)] = executor
        fw.executors[(agent.id, executor_id)] = executor
        return executor

    def _add_task(self, fw: Framework, agent: Agent, info: dict[str, Any], role: str,
                  resources: Resources, executor_id: str | None, state: str = "TASK_STAGING"
                  ) -> Task:
        task_id = _val(info.get("task_id")) or ""
        task = Task(task_id, fw.id, agent.id, executor_id, str(info.get("name", "")), role,
                    resources, info, state=state)
        fw.tasks[task_id] = task
        agent.tasks.add((fw.id, task_id))
        return task

    def _release(self, task: Task) -> None:
        """Give a task's resources back to the allocator (once), and re-offer promptly."""
        if task.released:
            return
        task.released = True
        self.allocator.recover(task.framework_id, task.agent_id, task.role, task.resources)
        self.request_allocation([task.agent_id])

    def _remove_task(self, fw: Framework, task: Task, completed: bool = True) -> None:
        self._release(task)
        if task.retry is not None:
            task.retry.cancel()
            task.retry = None
        fw.tasks.pop(task.task_id, None)
        fw.unreachable_tasks.pop(task.task_id, None)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.discard((fw.id, task.task_id))
        if completed:
            fw.completed_tasks.append(task)
        if agent is not None:
            self.check_drained(agent)

    def may_tear_down(self, fw: Framework, principal: str | None) -> bool:
        """`teardown_frameworks` for the caller and the target framework's principal
        (master/http.cpp `_teardown`)."""
        target = fw.info.get("principal") if isinstance(fw.info.get("principal"), str) else None
        return self.acls.authorized("teardown_frameworks", principal, target)

    # ------------------------------------------------------------ framework removal
    def remove_framework(self, fw: Framework) -> None:
        """TEARDOWN / failover timeout: kill everything it runs, remember it as completed."""
        log.info("removing framework %s", fw.id)
        if fw.failover_timer is not None:
            fw.failover_timer.cancel()
            fw.failover_timer = None
        for offer_id in list(fw.offers):
            offer = self.offers.get(offer_id)
            if offer is not None:
                self._drop_offer(offer, rescind=False)
        agent_ids = {t.agent_id for t in fw.tasks.values()} | {a for a, _ in fw.executors}
        for agent_id in agent_ids:
            self._to_agent(self.agents.get(agent_id), "SHUTDOWN_FRAMEWORK",
                           {"framework_id": _id(fw.id)})
        for task in list(fw.tasks.values()):
            if not task.terminal:
                task.state = "TASK_KILLED"
            task.pending.clear()
            self._remove_task(fw, task)
        for agent_id, executor_id in list(fw.executors):
            agent = self.agents.get(agent_id)
            if agent is not None:
                agent.executors.pop((fw.id, executor_id), None)
        fw.executors.clear()
        self.allocator.remove_framework(fw.id)
        if fw.stream is not None:
            fw.stream.close()
            fw.stream = None
        fw.active = False
        fw.unregistered_time = fw.unregistered_time or self.now()
        self.frameworks.pop(fw.id, None)
        self.completed_frameworks[fw.id] = fw
        self.notify("FRAMEWORK_REMOVED", fw)
        while len(self.completed_frameworks) > MAX_COMPLETED_FRAMEWORKS:
            self.completed_frameworks.popitem(last=False)
        self.request_allocation()

    # ------------------------------------------------------------ leadership
    def set_leader(self, leader_info: dict[str, Any] | None) -> None:
        """Called by the ZooKeeper contender when the leading master changes."""
        self.leader_info = leader_info
        leading = leader_info is not None and leader_info.get("id") == self.id
        if leading and not self.leading:
            self.elected_time = time.time()
            log.info("elected leading master")
            self.leading = True
            self.recover_registry()
        self.leading = leading

    # ------------------------------------------------------------ introspection
    def all_tasks(self) -> Iterable[Task]:
        for fw in self.frameworks.values():
            yield from fw.tasks.values()

    def used_by_agent(self, agent: Agent) -> Resources:
        used = Resources()
        for fid, tid in agent.tasks:
            fw = self.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if task is not None and not task.released:
                used = used + task.resources
        for executor in agent.executors.values():
            used = used + executor.resources
        return used

    def offered_on_agent(self, agent_id: str) -> Resources:
        out = Resources()
        for offer in self.offers.values():
            if offer.agent_id == agent_id:
                out = out + offer.resources
        return out


def _operation_tasks(operation: dict[str, Any]) -> list[dict[str, Any]]:
    kind = operation.get("type")
    if kind == "LAUNCH":
        return list((operation.get("launch") or {}).get("task_infos") or [])
    if kind == "LAUNCH_GROUP":
        return list(((operation.get("launch_group") or {}).get("task_group") or {})
                    .get("tasks") or [])
    return []

