"""The core: workloads' tasks in, Mesos calls out; each job done by one of its parts.

Workloads (jobs, services) never see offers. They `submit` TaskRequests and hear
back through an owner callback. The core coordinates:

- the launch queue (`launch_queue.py`): requests waiting for an offer;
- the task records (`records.py`): the only copy of each task's `TaskRecord`;
- the offer book (`offers.py`): offers held for work that comes next, and agents;
- launches (`launches.py`): a round's placements stored as LAUNCHED, then TaskInfos;
- suppression (`suppression.py`): SUPPRESS and REVIVE in step with the queue;
- the reconciliation gate (`reconciliation.py`): nothing acts before Mesos answered;
- the outbox (`outbox.py`): calls to the master, after the store sync they depend on;
- Mesos JSON (scheduler/mesos_json): agents read from offers, TaskInfos written.

Threading: driver callbacks only enqueue (scheduler/framework.py); one core
thread handles them in order, so offer handling and status handling never
race. Workload calls (`submit`, `kill`) take the core lock and may nudge the
driver (REVIVE). Owner callbacks run on the core thread *without* the lock
held, so an owner may call back into the core (a retry submits a new task).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from framework.errors import StoreError
from framework.store import Store
from scheduler.core.config import FRAMEWORK_ID_KEY, CoreConfig
from scheduler.core.identity import FrameworkId
from scheduler.core.launch_queue import LaunchQueue
from scheduler.core.launches import Launcher, Launches
from scheduler.core.metrics import ACK_LATENCY, APPLY_SECONDS, CORE_WAIT, OFFER_ROUND, OFFERS, STATUS_UPDATES
from scheduler.core.offers import OfferBook, by_agent
from scheduler.core.outbox import Driver, Outbox
from scheduler.core.reconciliation import ReconciliationGate
from scheduler.core.records import TERMINAL_STATES, OwnerCallback, TaskBook
from scheduler.core.suppression import Suppression
from scheduler.mesos_json import task_reference, value_of
from scheduler.placement import refusal
from scheduler.placement.pipeline import Plan, place
from scheduler.placement.views import AgentView, Placed
from scheduler.requests import TaskRequest
from scheduler.tasks import State, TaskRecord

log = logging.getLogger(__name__)

# What a master answers a SUBSCRIBE of a framework it removed (mesos src/master/master.cpp); the one
# error on which Marathon's `MarathonScheduler.error` forgets its framework id.
FRAMEWORK_REMOVED = "Framework has been removed"


@dataclass
class RoundAnswer:
    """What one offer round sends: ACCEPTs (offer ids, TaskInfos), DECLINEs, for how long
    the rest is refused, and the tasks that could not have their secrets."""

    launches: list[tuple[list[dict], list[dict]]] = field(default_factory=list)
    declines: list[dict] = field(default_factory=list)
    refuse: float = 0.0
    refused: dict[str, str] = field(default_factory=dict)  # task id -> why it cannot launch


class Core:
    """Launch queue, offer handling, kill and reconciliation; the only writer of task records."""

    def __init__(self, store: Store, config: CoreConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config or CoreConfig()
        self.clock = clock
        self._lock = threading.RLock()
        self.queue = LaunchQueue(self.config.max_requests_per_round)
        self.records = TaskBook(store, self.config.keep_terminal)
        self.identity = FrameworkId(store)
        self.launcher = Launcher(self.config, self.records, self.queue, self.identity, clock)
        self.offers = OfferBook(self.config, self.post)
        self.outbox = Outbox(store)
        self.gate = ReconciliationGate(self.post)
        self.suppression = Suppression(self.outbox.call, self._demand, self._can_call)
        self.subscribed = threading.Event()
        self.reconciled = self.gate.reconciled  # set while launching and killing may go on
        self._reports: dict[str, Any] = {}  # owner -> its last PlacementReport, while it waits
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._received: dict[int, float] = {}  # id(status) -> when the driver handed it over

    @property
    def driver(self) -> Driver | None:
        return self.outbox.driver

    @property
    def framework_id(self) -> str | None:
        return self.identity.value

    @property
    def secrets(self) -> Any:
        """What resolves TaskRequest.secrets at launch (scheduler/secrets/store.py), or None."""
        return self.launcher.secrets

    @secrets.setter
    def secrets(self, secrets: Any) -> None:
        self.launcher.secrets = secrets

    @property
    def failure(self) -> str | None:
        """Why this scheduler can no longer act on Mesos (set once), or None."""
        return self.outbox.failure

    # -- lifecycle -------------------------------------------------------------

    def load(self) -> int:
        """Read persisted records (after a restart); returns how many were live."""
        with self._lock:
            self.identity.load()
            return self.records.load()

    def attach(self, driver: Driver) -> None:
        self.outbox.driver = driver

    def start(self) -> None:
        """Start the core thread that handles driver events in order, and the outbox."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler-core", daemon=True)
            self._thread.start()
            self.outbox.start(self.config.ack_threads)

    def stop(self) -> None:
        self._stopping.set()
        self._events.put(("stop", None))
        self.outbox.stop()
        self.gate.stop()
        self.offers.stop()
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
            "reconcile_explicit": lambda payload: self._reconcile_explicit(),
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
            self.records.add_owner(prefix, callback)

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            return self.records.get(task_id)

    def tasks(self, owner_prefix: str = "") -> list[TaskRecord]:
        with self._lock:
            return self.records.owned(owner_prefix)

    def pending_count(self) -> int:
        with self._lock:
            return len(self.queue)

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
            return self.offers.agent(agent_id)

    # -- workload calls ----------------------------------------------------------

    def submit(self, request: TaskRequest) -> TaskRecord:
        """Queue a task; it launches at the next offer that fits."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: list[TaskRequest]) -> list[TaskRecord]:
        """Queue tasks in one go (an array run): one lock, at most one REVIVE."""
        with self._lock:
            now = self.clock()
            records = []
            for request in requests:
                records.append(self.records.queued(request, now))
                self.queue.add(request)
            self.queue.count()
            holding = bool(self.offers)
        if holding:  # place on the offers in hand now; the round REVIVEs if they are not enough
            self.post("offers", [])
        else:
            self.suppression.sync(new_work=True)
        return records

    def withdraw(self, task_id: str, message: str = "Withdrawn before launch") -> bool:
        """Drop a task that has not launched yet; its owner hears TASK_KILLED."""
        with self._lock:
            request = self.queue.remove(task_id)
            if request is None:
                return False
            self.queue.count()
            self._reports.pop(self.records[task_id].owner, None)
        try:
            self._apply(self._scheduler_status(task_id, State.KILLED, message))
        except StoreError:
            with self._lock:  # still queued, as the caller is told by the error
                self.queue.put_back(request)
                self.queue.count()
            raise
        return True

    def kill(self, task_id: str) -> bool:
        """Kill a task wherever it is: withdrawn if still queued, KILL sent to Mesos otherwise."""
        if self.withdraw(task_id, "Killed before launch"):
            return True
        with self._lock:
            record = self.records.get(task_id)
            if record is None or record.terminal:
                return False
            agent_id = record.agent_id
        self._kill_or_hold({"value": task_id}, {"value": agent_id} if agent_id else None)
        return True

    def nudge(self, quiet_seconds: float = 15.0) -> None:
        """REVIVE when work waits and no offer came for `quiet_seconds` (a lost REVIVE, a
        long filter): cheap to call often; workloads' tickers call it."""
        self.suppression.nudge(bool(self.queue), quiet_seconds)

    # -- Mesos events (core thread) ----------------------------------------------------

    def handle_subscribed(self, payload: dict) -> None:
        """After every (re)subscribe: fresh offer state, then explicit reconciliation."""
        with self._lock:
            self.identity.given(payload.get("framework_id"))
            self.suppression.subscribed()
            self.offers.clear()  # offers belong to a subscription: the old one's are void
            live = self.records.launched()
            closed = self.gate.close({r.task_id for r in live})
        self.subscribed.set()
        if closed:
            self.gate.ask_again_later()
            self.outbox.call("reconcileTasks", [task_reference(r.task_id, r.agent_id) for r in live])
        else:
            self._open_gate()
        self.gate.implicit_after(self.config.reconcile_delay)
        self.suppression.sync()

    def handle_error(self, message: str) -> None:
        """The master ended our subscription for good (an ERROR event, a refused SUBSCRIBE) and
        the driver has aborted: nothing we send reaches Mesos any more, so say so instead of
        serving as if nothing happened (`/health` 503, writes 503, one ERROR line).

        A removed framework's id is forgotten (identity.py): the next start registers a new
        framework (apps and jobs are kept and launch again; the old tasks were killed).
        """
        removed = message.strip() == FRAMEWORK_REMOVED
        with self._lock:
            if self.outbox.failure is not None:
                return
            framework_id = self.identity.value
            if removed:
                self.outbox.failure = (f"The master removed framework {framework_id} and killed its tasks; "
                                       f"restart the scheduler to register a new framework")
            else:
                self.outbox.failure = f"Mesos error: {message}; fix the cause and restart the scheduler"
            self.subscribed.clear()
            self.offers.clear()
            forgotten = removed and self.identity.forget()
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

    def handle_disconnected(self, payload: Any = None) -> None:
        self.subscribed.clear()
        with self._lock:
            self.offers.clear()

    def handle_rescinded(self, offer_id: Any) -> None:
        with self._lock:
            self.offers.rescinded(offer_id)

    def handle_agent_lost(self, agent_id: str) -> None:
        """Mesos sends TASK_LOST for the agent's tasks itself; forget how to reach it."""
        with self._lock:
            self.offers.lost(agent_id)

    # -- reconciliation ----------------------------------------------------------------

    def reconcile_implicit(self) -> None:
        self.outbox.call("reconcileTasks", [])
        self.gate.implicit_after(self.config.reconcile_interval)

    def _reconcile_explicit(self) -> None:
        """Ask again for tasks nobody answered for, backing off."""
        with self._lock:
            waiting = [r for r in map(self.records.get, self.gate.unanswered()) if r is not None]
        if not waiting:
            return
        log.info("reconciling %d task(s) still unanswered", len(waiting))
        self.outbox.call("reconcileTasks", [task_reference(r.task_id, r.agent_id) for r in waiting])
        self.gate.ask_again_later(backoff=True)

    def _open_gate(self) -> None:
        """Every known task is accounted for: act again, starting with the kills we held."""
        kills = self.gate.open()
        log.info("reconciliation complete: launching and killing resume (%d held kill(s))", len(kills))
        if self.subscribed.is_set():
            self.outbox.call("reconcileTasks", [])  # then implicit: learn what we do not know of
        for task_id, agent_id in kills:
            self.outbox.call("killTask", task_id, agent_id)

    def _kill_or_hold(self, task_id: dict, agent_id: dict | None) -> None:
        if not self.gate.hold_kill(task_id, agent_id):
            self.outbox.call("killTask", task_id, agent_id)

    # -- offers (core thread) --------------------------------------------------------------

    def handle_offers(self, offers: list[dict]) -> None:
        """Place waiting tasks on these offers and the held ones; accept what fits, hold
        the rest when nothing waits, decline it otherwise. `[]`: a round on held offers."""
        if offers:
            self.suppression.offers_came()
        with OFFER_ROUND.time():
            self._handle_offers(offers)

    def _handle_offers(self, offers: list[dict]) -> None:
        if not self.reconciled.is_set():
            self._decline_while_reconciling(offers)
            return
        with self._lock:
            OFFERS.labels("received").inc(len(offers))
            offers = offers + self.offers.take()
            # No offers at all: the held ones went to an earlier round; if work waits, ask anew.
            starved = not offers and bool(self.queue)
            answer = self._offer_round(offers)
        self._fail_refused(answer.refused)
        self.suppression.sync(force_revive=starved)
        self._send_answer(answer)

    def _decline_while_reconciling(self, offers: list[dict]) -> None:
        """No launch before reconciliation: decline these and the held ones, briefly."""
        with self._lock:
            offers = offers + self.offers.take()
        if offers:
            OFFERS.labels("declined_reconciling").inc(len(offers))
            self.outbox.call("declineOffer", [o["id"] for o in offers],
                             {"refuse_seconds": refusal.refuse_seconds(waiting=True)})

    def _offer_round(self, offers: list[dict]) -> RoundAnswer:
        """Note the agents; hold the offers if nothing waits, else place, launch what fits,
        and answer every agent's offers (lock held)."""
        agents = by_agent(offers)
        views = self.offers.seen(agents)
        if not offers:
            return RoundAnswer()
        if not self.queue:
            self.offers.hold(offers)
            return RoundAnswer()
        plan = self._plan(views)
        launches = self.launcher.launch(plan, agents)
        self._keep_reports(plan)
        # Everything placed: what the ACCEPTs leave comes straight back to be held.
        answer = self._answer(agents, launches, plan.refuse_seconds(waiting=bool(self.queue), holding=True))
        log.debug("offer round: %d offers from %d agents, %d launched, %d still pending, refuse %.0fs",
                  len(offers), len(agents), len(plan.assignments), len(self.queue), answer.refuse)
        self.queue.count()
        return answer

    def _plan(self, views: list[AgentView]) -> Plan:
        """Where this round's requests go (lock held)."""
        views = [self.offers.with_capacity(view) for view in views]
        requests = self.queue.for_round(views)
        placed = [] if not any(r.constraints for r in requests) else [
            Placed(owner=r.owner, agent_id=r.agent_id or "", hostname=r.hostname or "",
                   attributes=self.offers.attributes(r.agent_id or ""))
            for r in self.records.launched()]
        return place(requests, views, placed, self.config.strategy)

    def _keep_reports(self, plan: Plan) -> None:
        """Keep why each waiting owner's tasks found no agent; forget it for the launched."""
        for assignment in plan.assignments:
            self._reports.pop(assignment.request.owner, None)
        for owner, report in plan.reports.items():
            if getattr(report, "unplaced", 1):
                self._reports[owner] = report

    def _answer(self, agents: dict[str, list[dict]], launches: Launches, refuse: float) -> RoundAnswer:
        """Each agent's offers: ACCEPTed with its launches, else held when nothing waits,
        else DECLINEd (lock held)."""
        answer = RoundAnswer(refuse=refuse, refused=launches.refused)
        for agent_id, agent_offers in agents.items():
            ids = [o["id"] for o in agent_offers]
            if agent_id in launches.by_agent:
                answer.launches.append((ids, launches.by_agent[agent_id]))
                OFFERS.labels("accepted").inc(len(ids))
            elif not self.queue:
                self.offers.hold(agent_offers)
            else:
                answer.declines.extend(ids)
                OFFERS.labels("declined").inc(len(ids))
        return answer

    def _fail_refused(self, refused: dict[str, str]) -> None:
        """Tasks that cannot have their secrets end as TASK_ERROR, for their owners to see."""
        for task_id, why in refused.items():
            try:
                self._apply({**self._scheduler_status(task_id, State.ERROR, f"Failed to launch container: {why}"),
                             "reason": "REASON_TASK_INVALID"})
            except StoreError as error:
                log.warning("task %s not launched (%s), and that not stored: %s", task_id, why, error)

    def _send_answer(self, answer: RoundAnswer) -> None:
        filters = {"refuse_seconds": answer.refuse}
        for ids, infos in answer.launches:
            self.outbox.after_sync(self._accept, ids, infos, filters)
        if answer.declines:
            self.outbox.send(self._decline, answer.declines, filters)

    def _release_held(self) -> None:
        """DECLINE the offers held past their time (for long: REVIVE clears that), then
        SUPPRESS if nothing waits."""
        with self._lock:
            declines = self.offers.expired()
        if declines:
            OFFERS.labels("declined_idle").inc(len(declines))
            self.outbox.send(self._decline, declines, {"refuse_seconds": refusal.refuse_seconds(waiting=False)})
        self.suppression.sync()

    def _accept(self, ids: list[dict], infos: list[dict], filters: dict) -> None:
        """ACCEPT (outbox thread); if the master never got it, say so: owners decide."""
        operations = [{"type": "LAUNCH", "launch": {"task_infos": infos}}]
        if not self.outbox.call("acceptOffers", ids, operations, filters):
            for info in infos:
                self._apply(self._scheduler_status(info["task_id"]["value"], State.DROPPED, "ACCEPT call failed"))
            return
        self._revive_if_late(filters)

    def _decline(self, ids: list[dict], filters: dict) -> None:
        """DECLINE (outbox thread)."""
        self.outbox.call("declineOffer", ids, filters)
        self._revive_if_late(filters)

    def _revive_if_late(self, filters: dict) -> None:
        """After an ACCEPT or DECLINE that refused the rest for long: the master now hides those
        agents, so the next submission REVIVEs (`Suppression.refused_for_long`); if work waits
        now, REVIVE at once (work that came while the answer waited in the outbox sent its
        REVIVE before this refusal; work that was waiting gets every agent in one round again,
        so what it reports names them all)."""
        if filters.get("refuse_seconds", 0) > refusal.WAITING_SECONDS:
            self.suppression.refused_for_long()
            with self._lock:
                late = bool(self.queue)
            if late:
                self.suppression.sync(force_revive=True)

    def _demand(self) -> tuple[bool, bool]:
        """(work waits, offers are held), for suppression."""
        with self._lock:
            return bool(self.queue), bool(self.offers)

    def _can_call(self) -> bool:
        return self.outbox.driver is not None and self.subscribed.is_set()

    # -- statuses (core thread) ------------------------------------------------------------

    def handle_status(self, status: dict) -> None:
        """Store the update, tell the owner, then acknowledge (never the other way round).

        The ACK itself goes out on the outbox threads: the master holds a task's next
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
                            value_of(status.get("task_id")), error)
                return
        if status.get("uuid"):
            self.outbox.after_sync(self._acknowledge, status)

    def _acknowledge(self, status: dict) -> None:
        self.outbox.call("acknowledgeStatusUpdate", status)
        received = self._received.pop(id(status), None)
        if received is not None:
            ACK_LATENCY.observe(time.monotonic() - received)

    def _apply(self, status: dict) -> TaskRecord | None:
        """Apply a status; any status of a task counts as its reconciliation answer."""
        task_id = value_of(status.get("task_id")) or ""
        state = status.get("state", "")
        opened = self.gate.answered(task_id)
        with self._lock:
            record = self.records.get(task_id)
        if record is not None and record.terminal and state not in TERMINAL_STATES:
            # Alive after we gave it up (TASK_LOST, then its agent came back): its work has
            # been handed to a replacement already, so this one must go.
            log.warning("task %s is %s after it ended as %s: killing it", task_id, state, record.state.value)
            self._kill_or_hold({"value": task_id}, status.get("agent_id"))
        try:
            return self._apply_status(status)
        finally:
            if opened:
                self._open_gate()

    def _apply_status(self, status: dict) -> TaskRecord | None:
        task_id = value_of(status.get("task_id")) or ""
        STATUS_UPDATES.labels(status.get("state", "")).inc()
        with self._lock:
            applied = self.records.apply(status, self.clock())
        if applied.orphan:  # running but unknown to us (a lost store, a stale leader): kill it
            log.warning("killing unknown task %s (%s)", task_id, status.get("state", ""))
            self._kill_or_hold({"value": task_id}, status.get("agent_id"))
        for callback in applied.callbacks:
            try:
                callback(applied.record, dict(status))  # type: ignore[arg-type]
            except Exception:
                log.exception("owner callback for %s failed", task_id)
        return applied.record

    @staticmethod
    def _scheduler_status(task_id: str, state: State, message: str) -> dict:
        """A status the scheduler gives one of its own tasks (never acknowledged: no uuid)."""
        return {"task_id": {"value": task_id}, "state": state.value, "message": message,
                "source": "SOURCE_SCHEDULER"}
