"""The scheduler core: the launch queue, offers, kills, reconciliation, owners' statuses.

Workloads (jobs, services) never see offers. They `submit` TaskRequests and
hear back through an owner callback. The core owns the only copy of each
task's `TaskRecord` (scheduler/tasks.py), persists every change before it is
acknowledged to Mesos, and speaks to the master through a pymesos-shaped driver.

Threading: driver callbacks only enqueue (scheduler/framework.py); one core
thread handles them in order, so offer handling and status handling never
race. Workload calls (`submit`, `kill`) take the core lock and may nudge the
driver (REVIVE). Owner callbacks run on the core thread *without* the lock
held, so an owner may call back into the core (a retry submits a new task).
"""
from __future__ import annotations

import logging
import queue
import shlex
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prometheus_client import Counter, Gauge, Histogram

from framework.errors import DockyardError, MesosError, StoreError
from framework.store import Store
from framework.mesos.messages import encode_data
from framework.mesos.secrets import value_secret
from scheduler.requests import TaskRequest
from scheduler.tasks import IllegalTransition, State, TaskRecord

log = logging.getLogger(__name__)

from scheduler.placement.pipeline import Plan, place as _place
from scheduler.placement.views import AgentView, Assignment, Placed

OwnerCallback = Callable[[TaskRecord, dict], None]
REPO = Path(__file__).resolve().parents[1]
TASKS_KEY = "/tasks"
FRAMEWORK_ID_KEY = "/framework/id"
# What a master answers a SUBSCRIBE of a framework it removed (mesos src/master/master.cpp); the one
# error on which Marathon's `MarathonScheduler.error` forgets its framework id.
FRAMEWORK_REMOVED = "Framework has been removed"

TASKS_LAUNCHED = Counter("dockyard_scheduler_tasks_launched", "Tasks sent to Mesos in an ACCEPT")
STATUS_UPDATES = Counter("dockyard_scheduler_status_updates", "Status updates received", ["state"])
OFFERS = Counter("dockyard_scheduler_offers", "Offers handled", ["outcome"])
PENDING = Gauge("dockyard_scheduler_tasks_pending", "Tasks waiting for an offer")
_FINE = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
QUEUE_LATENCY = Histogram("dockyard_scheduler_queue_seconds", "Submit to launch, seconds", buckets=_FINE)
CALL_SECONDS = Histogram("dockyard_scheduler_mesos_call_seconds", "One call to the master, seconds",
                         ["call"], buckets=_FINE)
CORE_WAIT = Histogram("dockyard_scheduler_status_queue_seconds",
                      "Status update waiting for the core thread, seconds", buckets=_FINE)
APPLY_SECONDS = Histogram("dockyard_scheduler_status_apply_seconds",
                          "Storing one status update and telling its owner, seconds", buckets=_FINE)
ACK_LATENCY = Histogram("dockyard_scheduler_status_ack_seconds",
                        "Status update received from the driver to ACK sent, seconds", buckets=_FINE)
OFFER_ROUND = Histogram("dockyard_scheduler_offer_round_seconds",
                        "Offers received to ACCEPT/DECLINE sent, seconds", buckets=_FINE)


def default_executor_command() -> str:
    """How an agent starts our warm executor: this interpreter and this checkout."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'dockyard.py'))} executor"


@dataclass
class CoreConfig:
    framework_name: str = "dockyard"
    # None: plain command tasks (the agent synthesises an executor per task).
    executor_command: str | None = None
    executor_id: str = "dockyard-warm"
    strategy: str = "binpack"
    idle_refuse_seconds: float = 3600.0   # nothing waits: REVIVE will clear the filter
    busy_refuse_seconds: float = 1.0      # work waits but did not fit this offer
    stuck_refuse_seconds: float = 30.0    # every rejection was unresolvable
    max_requests_per_round: int = 500     # bound placement work (and explanations) per offer round
    reconcile_delay: float = 3.0          # explicit reconciliation gets this long first
    reconcile_interval: float = 600.0     # periodic implicit reconciliation
    keep_terminal: int = 20000            # terminal records kept in memory and store
    ack_threads: int = 4                  # outbox threads: concurrent ACCEPT/DECLINE/ACK calls
    offer_hold_seconds: float = 5.0       # keep unneeded offers this long for work that comes next


def _value(obj: Any, default: str | None = None) -> str | None:
    if isinstance(obj, dict):
        return obj.get("value", default)
    return default


def agent_view(offers: list[dict]) -> AgentView:
    """What one agent offers (all its offers summed), in placement's terms."""
    first = offers[0]
    cpus = mem = disk = gpus = 0.0
    ranges: list[tuple[int, int]] = []
    role = "*"
    for offer in offers:
        for resource in offer.get("resources") or []:
            name = resource.get("name")
            if resource.get("role") and resource.get("role") != "*":
                role = resource["role"]
            if resource.get("type") == "SCALAR" or "scalar" in resource:
                value = float((resource.get("scalar") or {}).get("value", 0.0))
                if name == "cpus":
                    cpus += value
                elif name == "mem":
                    mem += value
                elif name == "disk":
                    disk += value
                elif name == "gpus":
                    gpus += value
            elif name == "ports":
                for item in (resource.get("ranges") or {}).get("range") or []:
                    ranges.append((int(item["begin"]), int(item["end"])))
    attributes: dict[str, str] = {}
    for attribute in first.get("attributes") or []:
        kind = attribute.get("type")
        if kind == "TEXT":
            attributes[attribute["name"]] = str((attribute.get("text") or {}).get("value", ""))
        elif kind == "SCALAR":
            attributes[attribute["name"]] = f"{(attribute.get('scalar') or {}).get('value', 0):g}"
        else:
            attributes[attribute["name"]] = str(attribute.get("text", {}).get("value", ""))
    return AgentView(agent_id=_value(first.get("agent_id")) or "", hostname=first.get("hostname", ""),
                     attributes=attributes, cpus=cpus, mem=mem, disk=disk, gpus=gpus,
                     port_ranges=sorted(ranges), role=role)


def agent_url(offer: dict) -> str | None:
    """The agent's HTTP base URL from an offer (for `/files/read` later)."""
    url = offer.get("url") or {}
    address = url.get("address") or {}
    host = address.get("ip") or address.get("hostname") or offer.get("hostname")
    port = address.get("port")
    if not host or not port:
        return None
    return f"{url.get('scheme', 'http')}://{host}:{port}"


def _scalar(name: str, value: float, role: str) -> dict:
    return {"name": name, "type": "SCALAR", "scalar": {"value": round(float(value), 3)}, "role": role}


def task_info(request: TaskRequest, agent_id: str, ports: list[int], executor: dict | None,
              hostname: str | None = None, secrets: list[tuple[Any, bytes, int]] | None = None) -> dict:
    """The Mesos TaskInfo for a request placed on an agent with these ports.

    `secrets` (use, value, version) become Mesos SECRET environment variables and SECRET
    volumes, of type VALUE: the launch is the only message that carries them."""
    resources = [_scalar("cpus", request.cpus, request.role), _scalar("mem", request.mem, request.role)]
    if request.disk:
        resources.append(_scalar("disk", request.disk, request.role))
    if request.gpus:
        resources.append(_scalar("gpus", request.gpus, request.role))
    if ports:
        resources.append({"name": "ports", "type": "RANGES", "role": request.role,
                          "ranges": {"range": [{"begin": p, "end": p} for p in ports]}})
    command = dict(request.command)
    variables = list((command.get("environment") or {}).get("variables") or [])
    variables += [{"name": k, "value": v} for k, v in request.env.items()]
    variables += [{"name": f"PORT{i}", "value": str(p)} for i, p in enumerate(ports)]
    if ports:
        variables.append({"name": "PORT", "value": str(ports[0])})
        variables.append({"name": "PORTS", "value": ",".join(map(str, ports))})
    # -- services (issue 4, services engineer): Marathon's $HOST and named ports ($PORT_HTTP).
    if hostname:
        variables.append({"name": "HOST", "value": hostname})
    port_names = (request.labels.get("dockyard.portNames") or "").split(",")
    for port_name, port in zip(port_names, ports):
        if port_name:
            variables.append({"name": f"PORT_{port_name.upper().replace('-', '_')}", "value": str(port)})
    container = request.container
    for use, value, _ in secrets or ():
        if use.env is not None:
            variables.append({"name": use.env, "type": "SECRET", "secret": value_secret(value)})
        else:
            container = dict(container or {"type": "MESOS"})
            container["volumes"] = [*(container.get("volumes") or []), {
                "container_path": use.path, "mode": "RO",
                "source": {"type": "SECRET", "secret": value_secret(value)}}]
    if variables:
        command["environment"] = {"variables": variables}
    info: dict[str, Any] = {
        "name": request.name,
        "task_id": {"value": request.task_id},
        "agent_id": {"value": agent_id},
        "resources": resources,
        "kill_policy": {"grace_period": {"nanoseconds": int(request.kill_grace_seconds * 1e9)}},
    }
    if request.labels:
        info["labels"] = {"labels": [{"key": k, "value": v} for k, v in request.labels.items()]}
    if container:
        info["container"] = container
    if request.health_check:
        info["health_check"] = request.health_check
    if executor is not None:
        # Mesos allows a command or an executor, not both: the warm executor reads the
        # task's CommandInfo from `data` (JSON, base64 as every bytes field).
        import json

        info["executor"] = executor
        info["data"] = encode_data(json.dumps({"command": command}).encode())
    else:
        info["command"] = command
    return info


class Core:
    """Launch queue, offer handling, kill and reconciliation; the only writer of task records."""

    def __init__(self, store: Store, config: CoreConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config or CoreConfig()
        self.clock = clock
        self.driver: Any = None
        self.secrets: Any = None  # resolves TaskRequest.secrets at launch (scheduler/secrets/store.py)
        self.framework_id: str | None = None
        self._unsaved_framework_id: str | None = None  # given by the master, not stored yet
        self._lock = threading.RLock()
        self._records: dict[str, TaskRecord] = {}
        self._pending: OrderedDict[str, TaskRequest] = OrderedDict()
        self._submitted_at: dict[str, float] = {}
        self._terminal_order: deque[str] = deque()
        self._owners: list[tuple[str, OwnerCallback]] = []
        self._reports: dict[str, Any] = {}
        self._suppressed = False
        self._suppression_lock = threading.Lock()  # orders SUPPRESS/REVIVE decisions and calls
        self._last_offer_at = time.monotonic()
        self._agents: dict[str, dict] = {}  # agent_id -> {"hostname", "url"}
        self._capacity: dict[str, list[float]] = {}  # agent_id -> most ever offered
        # Offers kept for work that comes next (Aurora's offer manager): offer id -> (offer,
        # monotonic expiry). New work is placed on them at once, with no REVIVE round trip,
        # and the framework is not suppressed while it holds any.
        self._held: dict[str, tuple[dict, float]] = {}
        self._hold_timer: threading.Timer | None = None
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reconcile_timer: threading.Timer | None = None
        self.subscribed = threading.Event()
        self.failure: str | None = None  # why this scheduler can no longer act on Mesos (set once)
        self._acks: queue.Queue[tuple | None] = queue.Queue()  # the outbox of Mesos calls
        self._synced: queue.Queue[tuple | None] = queue.Queue()  # calls waiting for a store sync
        self._syncer: threading.Thread | None = None
        self._received: dict[int, float] = {}  # id(status) -> when the driver handed it over
        self._ackers: list[threading.Thread] = []
        # -- issue 6 (HA) reconciliation gate: after every (re)subscribe, nothing is launched or
        # killed until each known live task has been answered for (explicit reconciliation).
        self.reconciled = threading.Event()
        self._unreconciled: set[str] = set()
        self._deferred_kills: list[tuple[dict, dict | None]] = []
        self._explicit_backoff = 1.0

    # -- lifecycle -------------------------------------------------------------

    def load(self) -> int:
        """Read persisted records (after a restart); returns how many were live."""
        live = 0
        with self._lock:
            raw, _ = self.store.get(FRAMEWORK_ID_KEY)
            self.framework_id = raw.decode() if raw else None
            for task_id in self.store.children(TASKS_KEY):
                raw, version = self.store.get(f"{TASKS_KEY}/{task_id}")
                if raw is None:
                    continue
                record = TaskRecord.from_json(raw, version)
                self._records[task_id] = record
                if record.terminal:
                    self._terminal_order.append(task_id)
                else:
                    live += 1
        return live

    def attach(self, driver: Any) -> None:
        self.driver = driver

    def start(self) -> None:
        """Start the core thread that handles driver events in order, and the ackers."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler-core", daemon=True)
            self._thread.start()
            self._syncer = threading.Thread(target=self._sync_loop, name="scheduler-sync", daemon=True)
            self._syncer.start()
            for index in range(self.config.ack_threads):
                acker = threading.Thread(target=self._ack_loop, name=f"scheduler-ack-{index}", daemon=True)
                acker.start()
                self._ackers.append(acker)

    def stop(self) -> None:
        self._stopping.set()
        self._events.put(("stop", None))
        for _ in self._ackers:
            self._acks.put(None)
        self._synced.put(None)
        for timer in (self._reconcile_timer, self._hold_timer):
            if timer:
                timer.cancel()
        if self._thread:
            self._thread.join(5)

    def post(self, kind: str, payload: Any) -> None:
        """Hand a driver event to the core thread (the Mesos edge calls this)."""
        if kind == "status":
            self._received[id(payload)] = time.monotonic()
        self._events.put((kind, payload))

    def _loop(self) -> None:
        handlers = {
            "subscribed": self.handle_subscribed, "offers": self.handle_offers,
            "rescinded": self.handle_rescinded, "release_held": lambda payload: self._release_held(),
            "status": self.handle_status,
            "agent_lost": self.handle_agent_lost, "disconnected": self.handle_disconnected,
            "reconcile_implicit": lambda payload: self.reconcile_implicit(),
            "reconcile_explicit": lambda payload: self._reconcile_explicit(),  # issue 6 gate
            "executor_lost": lambda payload: None,
            "error": self.handle_error,
        }
        while not self._stopping.is_set():
            kind, payload = self._events.get()
            if kind == "stop":
                return
            try:
                handlers[kind](payload)
            except Exception:  # one bad event must not stop the scheduler
                log.exception("core failed handling %s", kind)

    # -- owners and queries ------------------------------------------------------

    def add_owner(self, prefix: str, callback: OwnerCallback) -> None:
        """Tasks whose owner starts with `prefix` report to `callback(record, status)`."""
        with self._lock:
            self._owners.append((prefix, callback))

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            return self._records.get(task_id)

    def tasks(self, owner_prefix: str = "") -> list[TaskRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.owner.startswith(owner_prefix)]

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def placement_report(self, owner: str) -> Any | None:
        """Why the owner's waiting tasks did not fit in the last offer round (or None)."""
        with self._lock:
            return self._reports.get(owner)

    def placement_reports(self) -> dict[str, Any]:
        """A snapshot of every waiting owner's last placement report (one lock for all)."""
        with self._lock:
            return dict(self._reports)

    def agent(self, agent_id: str) -> dict | None:
        with self._lock:
            return self._agents.get(agent_id)

    # -- workload calls ----------------------------------------------------------

    def submit(self, request: TaskRequest) -> TaskRecord:
        """Queue a task; it launches at the next offer that fits."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: list[TaskRequest]) -> list[TaskRecord]:
        """Queue tasks in one go (an array run): one lock, at most one REVIVE.

        A PENDING record is kept in memory only: until a task is in an ACCEPT,
        the owner's own persisted intent (the job run, the app) is the truth,
        and the owner submits again after a restart. From LAUNCHED on, every
        change is persisted before anything else happens.
        """
        records = []
        with self._lock:
            now = self.clock()
            for request in requests:
                record = self._records.get(request.task_id)
                if record is not None and record.state != State.PENDING:
                    raise ValueError(f"task {request.task_id} already exists ({record.state.value})")
                if record is None:
                    record = TaskRecord(task_id=request.task_id, owner=request.owner, name=request.name,
                                        created_at=now, history=[(State.PENDING.value, now)])
                    self._records[request.task_id] = record
                self._pending[request.task_id] = request
                self._submitted_at[request.task_id] = time.monotonic()
                records.append(record)
            PENDING.set(len(self._pending))
            holding = bool(self._held)
        if holding:  # place on the offers in hand now; the round REVIVEs if they are not enough
            self.post("offers", [])
        else:
            self._sync_suppression()
        return records

    def withdraw(self, task_id: str, message: str = "Withdrawn before launch") -> bool:
        """Drop a task that has not launched yet; its owner hears TASK_KILLED."""
        with self._lock:
            request = self._pending.pop(task_id, None)
            if request is None:
                return False
            self._submitted_at.pop(task_id, None)
            PENDING.set(len(self._pending))
            self._reports.pop(self._records[task_id].owner, None)
        try:
            self._apply({"task_id": {"value": task_id}, "state": State.KILLED.value,
                         "message": message, "source": "SOURCE_SCHEDULER"})
        except StoreError:
            with self._lock:  # still queued, as the caller is told by the error
                self._pending[task_id] = request
                PENDING.set(len(self._pending))
            raise
        return True

    def kill(self, task_id: str) -> bool:
        """Kill a task wherever it is: withdrawn if still queued, KILL sent to Mesos otherwise."""
        if self.withdraw(task_id, "Killed before launch"):
            return True
        with self._lock:
            record = self._records.get(task_id)
            if record is None or record.terminal:
                return False
            agent_id = record.agent_id
        self._kill_or_hold({"value": task_id}, {"value": agent_id} if agent_id else None)  # issue 6 gate
        return True

    # -- Mesos events (core thread) ----------------------------------------------------

    def handle_subscribed(self, payload: dict) -> None:
        """After every (re)subscribe: fresh offer state, then explicit reconciliation."""
        with self._lock:
            new_id = payload.get("framework_id")
            if new_id and new_id != self.framework_id:
                self.framework_id = self._unsaved_framework_id = new_id
                self._save_framework_id()
            self._suppressed = False
            self._held.clear()  # offers belong to a subscription: the old one's are void
            live = [r for r in self._records.values()
                    if not r.terminal and r.state != State.PENDING]
            self._unreconciled = {r.task_id for r in live}  # issue 6 gate: closed until answered
            self._explicit_backoff = 1.0
            if live:
                self.reconciled.clear()
        self.subscribed.set()
        if not live:
            self._open_gate()
        else:
            self._schedule_explicit_retry()
        if live:
            self._driver_call("reconcileTasks", [
                {"task_id": {"value": r.task_id},
                 **({"agent_id": {"value": r.agent_id}} if r.agent_id else {})} for r in live])
        self._schedule_implicit_reconcile(self.config.reconcile_delay)
        self._sync_suppression()

    def handle_error(self, message: str) -> None:
        """The master ended our subscription for good (an ERROR event, a refused SUBSCRIBE) and
        the driver has aborted: nothing we send reaches Mesos any more, so say so instead of
        serving as if nothing happened (`/health` 503, writes 503, one ERROR line).

        A removed framework's id is forgotten, as Marathon's `MarathonScheduler.error`
        does: the master will never take it again, so the next start registers a new
        framework (apps and jobs are kept and launch again; the old tasks were killed).
        """
        removed = message.strip() == FRAMEWORK_REMOVED
        with self._lock:
            if self.failure is not None:
                return
            framework_id = self.framework_id
            if removed:
                self.failure = (f"The master removed framework {framework_id} and killed its tasks; "
                                f"restart the scheduler to register a new framework")
            else:
                self.failure = f"Mesos error: {message}; fix the cause and restart the scheduler"
            self.subscribed.clear()
            self._held.clear()
            forgotten = removed and self._forget_framework_id()
        if removed:
            log.error("the master removed framework %s (an operator tore it down, or it was away longer than "
                      "its failover timeout): its tasks were killed and this scheduler can no longer launch or "
                      "kill anything. %s Restart the scheduler to register a new framework; its apps and jobs "
                      "are kept and launch again.", framework_id,
                      "Its framework id is forgotten." if forgotten else
                      f"Its framework id could not be forgotten: delete {FRAMEWORK_ID_KEY} from the state store "
                      f"before restarting.")
        else:
            log.error("the master ended this scheduler's subscription: %s. Nothing reaches Mesos any more: fix "
                      "the cause (credentials, principal, framework info) and restart the scheduler.", message)

    def _forget_framework_id(self) -> bool:
        """Remove the stored framework id (lock held); False when the store refused."""
        try:
            self.store.delete(FRAMEWORK_ID_KEY)
            self.store.sync()  # the embedded journal makes a delete durable at the next sync
        except StoreError as error:
            log.warning("cannot forget the framework id: %s", error)
            return False
        self.framework_id = self._unsaved_framework_id = None
        return True

    def handle_disconnected(self, payload: Any = None) -> None:
        self.subscribed.clear()
        with self._lock:
            self._held.clear()

    def handle_rescinded(self, offer_id: Any) -> None:
        with self._lock:
            self._held.pop(_value(offer_id) or "", None)

    # -- issue 6 (HA): the reconciliation gate ------------------------------------------

    def _reconcile_explicit(self) -> None:
        """Ask again for tasks nobody answered for (the master stays silent about tasks on
        agents that have not re-registered yet); back off up to 30 s."""
        with self._lock:
            waiting = [self._records[t] for t in self._unreconciled if t in self._records]
        if not waiting:
            return
        log.info("reconciling %d task(s) still unanswered", len(waiting))
        self._driver_call("reconcileTasks", [
            {"task_id": {"value": r.task_id}, **({"agent_id": {"value": r.agent_id}} if r.agent_id else {})}
            for r in waiting])
        self._explicit_backoff = min(self._explicit_backoff * 2, 30.0)
        self._schedule_explicit_retry()

    def _schedule_explicit_retry(self) -> None:
        timer = threading.Timer(self._explicit_backoff, self.post, args=("reconcile_explicit", None))
        timer.daemon = True
        timer.start()

    def _answered(self, task_id: str) -> bool:
        """Note a status for `task_id` (lock held); True when that opened the gate."""
        if task_id in self._unreconciled:
            self._unreconciled.discard(task_id)
            return not self._unreconciled
        return False

    def _open_gate(self) -> None:
        """Every known task is accounted for: act again, starting with the kills we held."""
        with self._lock:
            kills, self._deferred_kills = self._deferred_kills, []
            self.reconciled.set()
        log.info("reconciliation complete: launching and killing resume (%d held kill(s))", len(kills))
        if self.subscribed.is_set():
            self._driver_call("reconcileTasks", [])  # then implicit: learn what we do not know of
        for task_id, agent_id in kills:
            self._driver_call("killTask", task_id, agent_id)

    def _kill_or_hold(self, task_id: dict, agent_id: dict | None) -> None:
        with self._lock:
            if not self.reconciled.is_set():
                self._deferred_kills.append((task_id, agent_id))
                return
        self._driver_call("killTask", task_id, agent_id)

    def reconcile_implicit(self) -> None:
        self._driver_call("reconcileTasks", [])
        self._schedule_implicit_reconcile(self.config.reconcile_interval)

    def _schedule_implicit_reconcile(self, delay: float) -> None:
        if self._reconcile_timer:
            self._reconcile_timer.cancel()
        self._reconcile_timer = threading.Timer(delay, self.post, args=("reconcile_implicit", None))
        self._reconcile_timer.daemon = True
        self._reconcile_timer.start()

    def handle_offers(self, offers: list[dict]) -> None:
        """Place waiting tasks on these offers and the held ones; accept what fits, hold
        the rest when nothing waits, decline it otherwise. `[]`: a round on held offers."""
        if offers:
            self._last_offer_at = time.monotonic()
        with OFFER_ROUND.time():
            self._handle_offers(offers)

    def _handle_offers(self, offers: list[dict]) -> None:
        if not self.reconciled.is_set():  # issue 6 gate: no launch before reconciliation
            with self._lock:
                offers = offers + self._take_held()
            if offers:
                OFFERS.labels("declined_reconciling").inc(len(offers))
                self._driver_call("declineOffer", [o["id"] for o in offers],
                                  {"refuse_seconds": self.config.busy_refuse_seconds})
            return
        launches: list[tuple[list[dict], list[dict]]] = []
        declines: list[dict] = []
        refused: dict[str, str] = {}
        with self._lock:
            OFFERS.labels("received").inc(len(offers))
            offers = offers + self._take_held()
            # No offers at all: the held ones went to an earlier round; if work waits, ask anew.
            starved = not offers and bool(self._pending)
            by_agent: dict[str, list[dict]] = {}
            for offer in offers:
                by_agent.setdefault(_value(offer.get("agent_id")) or "", []).append(offer)
            for agent_id, agent_offers in by_agent.items():
                first = agent_offers[0]
                self._agents[agent_id] = {"hostname": first.get("hostname"), "url": agent_url(first),
                                          "attributes": agent_view(agent_offers).attributes}
            if not offers:
                refuse = 0.0
            elif not self._pending:
                refuse = 0.0
                self._hold(offers)
            else:
                views = [self._with_totals(agent_view(group)) for group in by_agent.values()]
                requests = self._round_requests(views)
                placed = [] if not any(r.constraints for r in requests) else [
                    Placed(owner=r.owner, agent_id=r.agent_id or "", hostname=r.hostname or "",
                           attributes=(self._agents.get(r.agent_id or "") or {}).get("attributes", {}))
                    for r in self._records.values() if not r.terminal and r.state != State.PENDING]
                plan = _place(requests, views, placed, self.config.strategy)
                resolved, refused = self._resolve_secrets(plan.assignments)
                if refused:
                    plan.assignments = [a for a in plan.assignments if a.request.task_id not in refused]
                    for task_id in refused:
                        self._pending.pop(task_id, None)
                        self._submitted_at.pop(task_id, None)
                chosen: dict[str, list[dict]] = {}
                if not self._store_launches(plan.assignments, by_agent):
                    plan = Plan(assignments=[], reports=plan.reports)
                for assignment in plan.assignments:
                    request = assignment.request
                    self._pending.pop(request.task_id, None)
                    started = self._submitted_at.pop(request.task_id, None)
                    if started is not None:
                        QUEUE_LATENCY.observe(time.monotonic() - started)
                    self._reports.pop(request.owner, None)
                    chosen.setdefault(assignment.agent_id, []).append(
                        task_info(request, assignment.agent_id, assignment.ports, self._executor_info(),
                              hostname=assignment.hostname, secrets=resolved.get(request.task_id)))
                for owner, report in plan.reports.items():
                    if getattr(report, "unplaced", 1):
                        self._reports[owner] = report
                # Everything placed: what the ACCEPTs leave comes straight back to be held.
                refuse = self._refuse_seconds(plan) if self._pending else 0.0
                for agent_id, agent_offers in by_agent.items():
                    ids = [o["id"] for o in agent_offers]
                    if agent_id in chosen:
                        launches.append((ids, chosen[agent_id]))
                        OFFERS.labels("accepted").inc(len(ids))
                    elif not self._pending:
                        self._hold(agent_offers)
                    else:
                        declines.extend(ids)
                        OFFERS.labels("declined").inc(len(ids))
                TASKS_LAUNCHED.inc(len(plan.assignments))
                log.debug("offer round: %d offers from %d agents, %d launched, %d still pending, refuse %.0fs",
                          len(offers), len(by_agent), len(plan.assignments), len(self._pending), refuse)
                PENDING.set(len(self._pending))
        for task_id, why in refused.items():
            try:
                self._apply({"task_id": {"value": task_id}, "state": State.ERROR.value, "source": "SOURCE_SCHEDULER",
                             "reason": "REASON_TASK_INVALID", "message": f"Failed to launch container: {why}"})
            except StoreError as error:
                log.warning("task %s not launched (%s), and that not stored: %s", task_id, why, error)
        self._sync_suppression(force_revive=starved)
        filters = {"refuse_seconds": refuse}
        for ids, infos in launches:
            self._after_sync(self._accept, ids, infos, filters)
        if declines:
            self._send(self._decline, declines, filters)

    # -- held offers (core thread, lock held unless said) ----------------------------------

    def _take_held(self) -> list[dict]:
        held = [offer for offer, _ in self._held.values()]
        self._held.clear()
        return held

    def _hold(self, offers: list[dict]) -> None:
        expires = time.monotonic() + self.config.offer_hold_seconds
        for offer in offers:
            self._held[_value(offer.get("id")) or ""] = (offer, expires)
        OFFERS.labels("held").inc(len(offers))
        if offers and self._hold_timer is None:
            self._hold_timer = threading.Timer(self.config.offer_hold_seconds, self.post, args=("release_held", None))
            self._hold_timer.daemon = True
            self._hold_timer.start()

    def _release_held(self) -> None:
        """DECLINE the offers held past their time (for an hour: REVIVE clears that), then
        SUPPRESS if nothing waits; look again later for those still in their time."""
        now = time.monotonic()
        with self._lock:
            self._hold_timer = None
            expired = [offer_id for offer_id, (_, expires) in self._held.items() if expires <= now]
            declines = [self._held.pop(offer_id)[0]["id"] for offer_id in expired]
            remaining = min((expires for _, expires in self._held.values()), default=None)
            if remaining is not None:
                self._hold_timer = threading.Timer(max(0.05, remaining - now), self.post,
                                                   args=("release_held", None))
                self._hold_timer.daemon = True
                self._hold_timer.start()
        if declines:
            OFFERS.labels("declined_idle").inc(len(declines))
            self._send(self._decline, declines, {"refuse_seconds": self.config.idle_refuse_seconds})
        self._sync_suppression()

    def _decline(self, ids: list[dict], filters: dict) -> None:
        """DECLINE; then, if work arrived meanwhile, REVIVE again.

        -- services (issue 4, services engineer): a task submitted while this DECLINE waited
        in the outbox had its REVIVE reach the master first; the long refusal would then
        hide every agent from it for `idle_refuse_seconds`.
        """
        self._driver_call("declineOffer", ids, filters)
        if filters.get("refuse_seconds", 0) > self.config.busy_refuse_seconds:
            with self._lock:
                late = bool(self._pending)
            if late:
                self._sync_suppression(force_revive=True)

    def _resolve_secrets(self, assignments: list[Assignment]) -> tuple[dict[str, list], dict[str, str]]:
        """The secrets of this round's launches (lock held): (task id -> [(use, value, version)],
        task id -> why it cannot have them). Values live only until the ACCEPT is built;
        the record keeps the versions, so `app show` can say which one each task got."""
        resolved: dict[str, list] = {}
        refused: dict[str, str] = {}
        for assignment in assignments:
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
            self._records[request.task_id].secrets = {use.source: version
                                                      for use, _, version in resolved[request.task_id]}
        return resolved, refused

    def _store_launches(self, assignments: list[Assignment], by_agent: dict[str, list[dict]]) -> bool:
        """Move the round's tasks to LAUNCHED and store them, after the framework id they
        will run under (lock held); if the store fails, put every one back as it was and
        say so: nothing unstored is launched."""
        if not self._save_framework_id():
            return False
        now = self.clock()
        saved: list[tuple[TaskRecord, TaskRecord]] = []
        try:
            for assignment in assignments:
                record = self._records[assignment.request.task_id]
                saved.append((record, record.copy()))
                record.move(State.LAUNCHED, now)
                record.agent_id = assignment.agent_id
                record.hostname = by_agent[assignment.agent_id][0].get("hostname")
                record.ports = list(assignment.ports)
                record.executor_id = (self.config.executor_id if self.config.executor_command
                                      else record.task_id)
                self._persist(record)
        except StoreError as error:
            for record, before in saved:
                record.restore(before)
            log.warning("launches not stored, so not sent (the tasks wait for the next offer): %s", error)
            return False
        return True

    def _save_framework_id(self) -> bool:
        """Store the master's framework id before anything launches under it (lock held): a
        restart that lost it would register anew, and the master would kill every task."""
        if self._unsaved_framework_id is None:
            return True
        try:
            self.store.put(FRAMEWORK_ID_KEY, self._unsaved_framework_id.encode())
        except StoreError as error:
            log.warning("framework id not stored, nothing launches until it is: %s", error)
            return False
        self._unsaved_framework_id = None
        return True

    def _accept(self, ids: list[dict], infos: list[dict], filters: dict) -> None:
        """ACCEPT; then, as after a DECLINE, REVIVE if work arrived while it waited.

        The master files the offers' unused resources under `refuse_seconds` (the idle
        hour when the round placed everything). A task submitted while this ACCEPT sat
        in the outbox (behind the store sync) had its REVIVE reach the master first;
        without a second REVIVE that agent stays hidden from the queue until a nudge.
        """
        operations = [{"type": "LAUNCH", "launch": {"task_infos": infos}}]
        if not self._driver_call("acceptOffers", ids, operations, filters):
            for info in infos:  # the master never got them: say so, owners decide
                self._apply({"task_id": info["task_id"], "state": State.DROPPED.value,
                             "message": "ACCEPT call failed", "source": "SOURCE_SCHEDULER"})
            return
        if filters.get("refuse_seconds", 0) > self.config.busy_refuse_seconds:
            with self._lock:
                late = bool(self._pending)
            if late:
                self._sync_suppression(force_revive=True)

    def _refuse_seconds(self, plan: Any) -> float:
        if not self._pending:
            return self.config.idle_refuse_seconds
        waiting = [plan.reports[r.owner] for r in getattr(plan, "unplaced", []) if r.owner in plan.reports]
        if waiting and not any(getattr(r, "resolvable", True) for r in waiting):
            return self.config.stuck_refuse_seconds
        return self.config.busy_refuse_seconds

    def _with_totals(self, view: AgentView) -> AgentView:
        """Offers carry free resources only; the most an agent ever offered stands in for its
        capacity, which lets placement tell "full now" from "never big enough"."""
        seen = self._capacity.setdefault(view.agent_id, [0.0, 0.0, 0.0, 0.0])
        seen[:] = [max(seen[0], view.cpus), max(seen[1], view.mem), max(seen[2], view.disk),
                   max(seen[3], view.gpus)]
        view.total_cpus, view.total_mem, view.total_disk, view.total_gpus = seen
        return view

    def _round_requests(self, views: list[AgentView], hopeless_limit: int = 20) -> list[TaskRequest]:
        """The waiting requests worth placing on these offers, in queue order (lock held).

        With thousands queued, handing all of them to placement every round costs more
        than it launches: stop once their summed cpus/mem exceed what is offered. Requests
        bigger than any offering agent cannot fit now, but a few still go through so their
        owners learn why (the placement report); they do not count against the budget,
        so they never block smaller requests queued behind them.
        """
        cpus = sum(v.cpus for v in views)
        mem = sum(v.mem for v in views)
        max_cpus = max((v.cpus for v in views), default=0.0)
        max_mem = max((v.mem for v in views), default=0.0)
        out: list[TaskRequest] = []
        hopeless = scanned = 0
        for request in self._pending.values():
            scanned += 1
            if len(out) >= self.config.max_requests_per_round or scanned > 4 * self.config.max_requests_per_round:
                break
            if request.cpus > max_cpus + 1e-9 or request.mem > max_mem + 1e-9:
                if hopeless < hopeless_limit:
                    out.append(request)
                    hopeless += 1
                continue
            if request.cpus > cpus + 1e-9 or request.mem > mem + 1e-9:
                continue  # no room left this round; a smaller one behind may still fit
            cpus -= request.cpus
            mem -= request.mem
            out.append(request)
        return out

    def _executor_info(self) -> dict | None:
        if not self.config.executor_command:
            return None
        # Root, whatever FrameworkInfo.user says: the executor makes containers and cgroups and
        # starts each task as that task's user (an agent that is not root ignores this).
        info = {"executor_id": {"value": self.config.executor_id}, "type": "CUSTOM",
                "name": f"{self.config.framework_name} warm executor",
                "command": {"value": self.config.executor_command, "shell": True, "user": "root"}}
        if self.framework_id:
            info["framework_id"] = {"value": self.framework_id}
        return info

    def handle_status(self, status: dict) -> None:
        """Store the update, tell the owner, then acknowledge (never the other way round).

        The ACK itself goes out on the ackers' threads: the master holds a task's next
        update until the previous one is acknowledged, so ACK latency is on every
        task's critical path and must not wait behind other statuses' store writes.
        """
        received = self._received.get(id(status))
        if received is not None:
            CORE_WAIT.observe(time.monotonic() - received)
        with APPLY_SECONDS.time():
            try:
                self._apply(status)
            except StoreError as error:  # not acknowledged: the master sends it again
                log.warning("%s of task %s not stored, so not acknowledged: %s", status.get("state"),
                            _value(status.get("task_id")), error)
                return
        if status.get("uuid"):
            self._after_sync(self._acknowledge, status)

    def _after_sync(self, call: Callable[..., Any], *args: Any) -> None:
        """Run `call` once everything persisted so far is durable (group commit).

        Records are written at once (atomically) but fsynced by the syncer thread, many
        per pass; an ACK or an ACCEPT waits for the pass that covers its records, so
        "stored before acknowledged" holds without an fsync on the core thread per status.
        """
        if self._syncer is None:
            self.store.sync()
            self._send(call, *args)
        else:
            self._synced.put((call, args))

    def _sync_loop(self) -> None:
        while True:
            batch = [self._synced.get()]
            while True:
                try:
                    batch.append(self._synced.get_nowait())
                except queue.Empty:
                    break
            if any(item is None for item in batch):
                return
            try:
                self.store.sync()
            except Exception:  # keep the calls: the writes themselves were atomic
                log.exception("store sync failed")
            for call, args in batch:
                self._send(call, *args)

    def _send(self, call: Callable[..., Any], *args: Any) -> None:
        """Run a Mesos call on the outbox threads (inline before `start`, as in unit tests).

        Each call is a synchronous HTTP round trip to the master; made on the core thread
        they would stall every status behind a busy master. Calls only leave after the
        state they announce is persisted, so their order among themselves does not matter.
        """
        if self._ackers:
            self._acks.put((call, args))
        else:
            call(*args)

    def _ack_loop(self) -> None:
        while True:
            item = self._acks.get()
            if item is None:
                return
            call, args = item
            try:
                call(*args)
            except Exception:  # one failed call must not stop the outbox
                log.exception("outbox call failed")

    def _acknowledge(self, status: dict) -> None:
        self._driver_call("acknowledgeStatusUpdate", status)
        received = self._received.pop(id(status), None)
        if received is not None:
            ACK_LATENCY.observe(time.monotonic() - received)

    def handle_agent_lost(self, agent_id: str) -> None:
        """Mesos sends TASK_LOST for the agent's tasks itself; forget how to reach it."""
        with self._lock:
            self._agents.pop(agent_id, None)
            for offer_id in [i for i, (o, _) in self._held.items() if _value(o.get("agent_id")) == agent_id]:
                del self._held[offer_id]

    def _apply(self, status: dict) -> TaskRecord | None:
        """Apply a status; any status of a task counts as its reconciliation answer (issue 6)."""
        task_id = _value(status.get("task_id")) or ""
        with self._lock:
            opened = self._answered(task_id)
            record = self._records.get(task_id)
            zombie = (record is not None and record.terminal
                      and status.get("state") not in {s.value for s in State if s.terminal})
        if zombie:
            # Alive after we gave it up (TASK_LOST, then its agent came back): its work has
            # been handed to a replacement already, so this one must go (issue 6).
            log.warning("task %s is %s after it ended as %s: killing it", task_id, status.get("state"),
                        record.state.value)
            self._kill_or_hold({"value": task_id}, status.get("agent_id"))
        try:
            return self._apply_status(status)
        finally:
            if opened:
                self._open_gate()

    def _apply_status(self, status: dict) -> TaskRecord | None:
        task_id = _value(status.get("task_id")) or ""
        state = status.get("state", "")
        STATUS_UPDATES.labels(state).inc()
        with self._lock:
            record = self._records.get(task_id)
            if record is None:
                orphan = state not in {s.value for s in State if s.terminal}
            else:
                saved = record.copy()
                try:
                    changed = record.apply_status(status, self.clock())
                except IllegalTransition as error:
                    log.warning("%s (ignored)", error)
                    return None
                except ValueError:
                    log.warning("task %s: unknown state %r ignored", task_id, state)
                    return None
                if not changed and record.healthy == saved.healthy:
                    return record
                try:
                    self._persist(record)
                except StoreError:
                    record.restore(saved)
                    raise
                if record.terminal:
                    self._terminal_order.append(task_id)
                    self._collect_garbage()
                callbacks = [cb for prefix, cb in self._owners if record.owner.startswith(prefix)]
        if record is None:
            if orphan:  # running but unknown to us (a lost store, a stale leader): kill it
                log.warning("killing unknown task %s (%s)", task_id, state)
                self._kill_or_hold({"value": task_id}, status.get("agent_id"))
            return None
        for callback in callbacks:
            try:
                callback(record, dict(status))
            except Exception:
                log.exception("owner callback for %s failed", task_id)
        return record

    def _collect_garbage(self) -> None:
        while len(self._terminal_order) > self.config.keep_terminal:
            old = self._terminal_order[0]
            record = self._records.get(old)
            if record is not None and record.terminal:
                try:
                    self.store.delete(f"{TASKS_KEY}/{old}")
                except StoreError:
                    return  # the oldest stays a while longer; the next terminal task retries
                del self._records[old]
            self._terminal_order.popleft()

    # -- helpers ---------------------------------------------------------------------

    def _persist(self, record: TaskRecord) -> None:
        """Write now; durable before any ACK or ACCEPT that depends on it (`_after_sync`)."""
        record.version = self.store.put_lazy(f"{TASKS_KEY}/{record.task_id}", record.to_json())

    def nudge(self, quiet_seconds: float = 15.0) -> None:
        """REVIVE when work waits and no offer came for `quiet_seconds` (a lost REVIVE, a
        long filter): cheap to call often; workloads' tickers call it."""
        if not self._pending or time.monotonic() - self._last_offer_at < quiet_seconds:
            return
        self._last_offer_at = time.monotonic()  # at most one nudge per quiet period
        self._sync_suppression(force_revive=True)

    def _sync_suppression(self, force_revive: bool = False) -> None:
        """SUPPRESS when nothing waits, REVIVE when something does (called without the core lock).

        The decision and its call happen under one lock, reading the queue at that moment:
        a SUPPRESS decided before a submission can then never reach the master after that
        submission's REVIVE (which would leave the framework suppressed with work queued).
        Submissions only revive when suppressed, so a stream of them does not flap.
        """
        if self.driver is None or not self.subscribed.is_set():
            return
        with self._suppression_lock:
            with self._lock:
                waiting = bool(self._pending)
                holding = bool(self._held)
            if waiting and (self._suppressed or force_revive):
                self._suppressed = False
                self._driver_call("reviveOffers")
            elif not waiting and not holding and not self._suppressed:
                self._suppressed = True
                self._driver_call("suppressOffers")

    def _driver_call(self, name: str, *args: Any) -> bool:
        if self.failure is not None:  # said once, loudly (handle_error); not again per call
            log.debug("%s dropped: %s", name, self.failure)
            return False
        if self.driver is None:
            log.warning("no driver: %s dropped", name)
            return False
        try:
            with CALL_SECONDS.labels(name).time():
                getattr(self.driver, name)(*args)
            return True
        except MesosError as error:
            log.warning("%s failed: %s", name, error)
            return False
        except TypeError:
            # pymesos's killTask takes only the task id
            if name == "killTask":
                try:
                    self.driver.killTask(args[0])
                    return True
                except MesosError as error:
                    log.warning("%s failed: %s", name, error)
            raise
