"""The jobs workload: job definitions, runs, retries, deadlines, schedules, dependencies.

The manager holds the state and does the I/O; the decisions come from pure
functions (`runs.task_ended`, `schedules.decide`, `dependencies.*`). Its clock
is injected: the ticker asks it for "now", so a test that owns the clock owns
every schedule, backoff and deadline.

Store layout: `/jobs/<id>` (the spec), `/jobs/<id>/state` (history and
schedule bookkeeping), `/jobs/<id>/runs/<run-id>` (active and kept runs).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from framework.errors import Conflict, NotFound, StoreError
from framework.store import Store
from scheduler.core import Core
from scheduler.events import EventBus
from scheduler.jobs import dependencies, schedules
from scheduler.jobs.runs import (ACTIVE, FAILED, INITIAL, STARTING, SUCCESS, JobRun, RunTask, new_run_id,
                                 task_ended, task_id_for)
from scheduler.jobs.specs import JobSpec, Schedule, SpecInvalid
from scheduler.mesos_json import launch as mesos
from scheduler.placement.constraints import parse_one
from scheduler.requests import TaskRequest
from scheduler.secrets.refs import job_uses, sources
from scheduler.tasks import State, TaskRecord

log = logging.getLogger(__name__)
OWNER_PREFIX = "job:"
NOT_RUNNING_YET = frozenset({"PENDING", "TASK_STAGING", "TASK_STARTING"})  # maxLaunchDelay applies
# The jobs event stream (`GET /v1/events`) uses Metronome's event names (its model/Event.scala).
JOB_EVENT_TYPES = frozenset({"job_created", "job_updated", "job_deleted", "job_run_started",
                             "job_run_updated", "job_run_finished", "job_run_failed"})


@dataclass
class JobState:
    """Per job bookkeeping that outlives runs: history and schedule cursors."""

    success_count: int = 0
    failure_count: int = 0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_triggered_at: float | None = None      # last run start (dependency rule)
    schedule_checked: dict[str, float] = field(default_factory=dict)  # sid -> checked up to
    schedule_stats: dict[str, dict] = field(default_factory=dict)     # sid -> fired/skipped/missed

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    def copy(self) -> "JobState":
        return JobState.from_json(self.to_json())

    @classmethod
    def from_json(cls, raw: bytes) -> "JobState":
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def task_request(spec: JobSpec, run: JobRun, index: int, attempt: int) -> TaskRequest:
    """What the core launches for one instance of a run."""
    r = spec.run
    command = mesos.command_info(
        shell=r.cmd or None, args=r.args or (), user=r.user,
        uris=[mesos.uri_info(a.uri, extract=a.extract, executable=a.executable, cache=a.cache) for a in r.artifacts])
    image = r.docker.image if r.docker else (r.ucr.image.id if r.ucr else None)
    container = mesos.container_info(
        image=image, force_pull=bool(r.docker.force_pull_image if r.docker else r.ucr and r.ucr.image.force_pull),
        volumes=[mesos.volume_info(v.container_path, v.host_path, v.mode)
                 for v in r.volumes if v.secret is None])  # secret volumes: the core adds them, resolved
    env = {name: value for name, value in r.env.items() if isinstance(value, str)}
    env.update({"DOCKYARD_JOB_ID": spec.id, "DOCKYARD_RUN_ID": run.id,
                "DOCKYARD_INSTANCE_INDEX": str(index), "DOCKYARD_INSTANCES": str(run.instances),
                "DOCKYARD_ATTEMPT": str(attempt)})
    return TaskRequest(
        task_id=task_id_for(run, index, attempt), owner=run.owner,
        name=f"{spec.id}.{index}" if run.instances > 1 else spec.id,
        cpus=r.cpus, mem=r.mem, disk=r.disk, gpus=r.gpus,
        constraints=[parse_one(c.dump()) for c in r.placement.constraints],
        command=command, container=container, kill_grace_seconds=r.task_kill_grace_period_seconds,
        labels={**spec.labels, "dockyard.job": spec.id, "dockyard.run": run.id}, env=env,
        secrets=job_uses(r),
    )


def run_key(run: JobRun) -> str:
    return f"/jobs/{run.job_id}/runs/{run.id}"


class JobManager:
    def __init__(self, store: Store, core: Core, clock: Callable[[], float] = time.time,
                 history_limit: int = 50, tick_seconds: float = 0.25,
                 unreachable_seconds: float | None = None) -> None:
        self.store = store
        # How long a run waits for a task on an unreachable agent before retrying it:
        # long enough that a short partition heals with the run done once, not twice.
        self.unreachable_seconds = unreachable_seconds if unreachable_seconds is not None else \
            float(os.environ.get("DOCKYARD_JOB_UNREACHABLE_SECONDS", "300"))
        self._abandoned: set[str] = set()  # unreachable tasks given up on: killed if they return
        self.core = core
        self.clock = clock
        self.history_limit = history_limit
        self.tick_seconds = tick_seconds
        self._lock = threading.RLock()
        self.jobs: dict[str, JobSpec] = {}
        self.states: dict[str, JobState] = {}
        self.active: dict[str, JobRun] = {}                  # run id -> run
        self.kept: dict[str, OrderedDict[str, JobRun]] = {}  # job id -> finished runs kept, oldest first
        self._kept_job: dict[str, str] = {}                  # kept run id -> job id
        self._by_task: dict[str, str] = {}                   # task id -> run id
        self._stop = threading.Event()
        self._in_status = False  # inside a core status callback (writes may be lazy)
        self._waiting_refreshed = 0.0
        self._thread: threading.Thread | None = None
        self.changed = threading.Condition(self._lock)       # notified whenever a run moves
        # Job events, apart from Marathon's /v2/events (whose clients reject unknown types).
        # Built only while someone listens: the status path pays one check otherwise.
        self.events = EventBus()
        self.secrets: Any = None  # the scheduler's secrets (scheduler/secrets/store.py), set by main
        core.add_owner(OWNER_PREFIX, self.on_task_status)

    # -- lifecycle ---------------------------------------------------------------

    def load(self) -> None:
        """Read jobs and runs back after a restart; relaunch what never reached Mesos."""
        with self._lock:
            for job_id in self.store.children("/jobs"):
                raw, _ = self.store.get(f"/jobs/{job_id}")
                if raw is None:
                    continue
                try:
                    self.jobs[job_id] = JobSpec.model_validate_json(raw)
                except ValueError as error:  # one unreadable job must not stop the scheduler starting
                    from scheduler.services.app_state import quarantine

                    quarantine(self.store, f"/jobs/{job_id}", raw, error)
                    continue
                state_raw, _ = self.store.get(f"/jobs/{job_id}/state")
                self.states[job_id] = JobState.from_json(state_raw) if state_raw else JobState()
                kept: list[JobRun] = []
                for run_id in self.store.children(f"/jobs/{job_id}/runs"):
                    run_raw, _ = self.store.get(f"/jobs/{job_id}/runs/{run_id}")
                    if run_raw is None:
                        continue
                    run = JobRun.from_json(run_raw)
                    if run.finished:
                        kept.append(run)
                    else:
                        self.active[run.id] = run
                        for task in run.tasks:
                            latest = run.latest(task.index)
                            superseded = latest is not None and latest.id != task.id
                            if (superseded or task.counted_as) and not State(task.status).terminal:
                                self._abandoned.add(task.id)  # given up while unreachable: kill if back
                            self._by_task[task.id] = run.id
                kept.sort(key=lambda r: r.completed_at or 0)
                self.kept[job_id] = OrderedDict((r.id, r) for r in kept)
                for run in kept:
                    self._kept_job[run.id] = job_id
                    for task in run.tasks:
                        if not State(task.status).terminal:
                            self._by_task[task.id] = run.id
                            if task.counted_as:  # given up as unreachable: kill it if it is back
                                self._abandoned.add(task.id)
            for run in list(self.active.values()):
                self._recover_run(run)

    def _recover_run(self, run: JobRun) -> None:
        spec = self.jobs.get(run.job_id)
        if spec is None:
            return
        for index in range(run.instances):
            task = run.latest(index)
            if task is None or index in run.succeeded or index in run.retry_at or task.counted_as:
                continue
            record = self.core.get(task.id)
            if record is None or record.state == State.PENDING:
                self.core.submit(task_request(spec, run, index, task.attempt))
            elif record.terminal and not State(task.status).terminal:
                self.on_task_status(record, {"state": record.state.value, "message": record.message})

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._ticker, name="jobs-ticker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _ticker(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:  # a bad tick must not stop schedules for ever
                log.exception("jobs tick failed")

    # -- jobs ----------------------------------------------------------------------

    def _check_dependencies(self, spec: JobSpec) -> None:
        for index, dependency in enumerate(spec.dependencies):
            if dependency.id not in self.jobs and dependency.id != spec.id:
                raise SpecInvalid([{"path": f"/dependencies/{index}/id",
                                    "errors": [f"job {dependency.id!r} does not exist"]}])
        graph = {job_id: [d.id for d in job.dependencies] for job_id, job in self.jobs.items()}
        graph[spec.id] = [d.id for d in spec.dependencies]
        cycle = dependencies.find_cycle(graph)
        if cycle:
            raise SpecInvalid([{"path": "/dependencies",
                                "errors": ["dependency cycle: " + " -> ".join(cycle)]}])

    def create_job(self, spec: JobSpec) -> JobSpec:
        with self._lock:
            if spec.id in self.jobs:
                raise Conflict(f"Job with id {spec.id} already exists")
            return self._save_job(spec)

    def put_job(self, spec: JobSpec) -> JobSpec:
        with self._lock:
            return self._save_job(spec)

    def _save_job(self, spec: JobSpec) -> JobSpec:
        self._check_dependencies(spec)
        if self.secrets is not None:  # each secret exists and the caller may reference it
            self.secrets.check(sources(spec.run), lambda name: f"/run/secrets/{name}/source")
        now = self.clock()
        before = self.states.get(spec.id)
        state = before.copy() if before is not None else JobState()
        for schedule in spec.schedules:
            state.schedule_checked.setdefault(schedule.id, now)  # new schedules look forward only
        for sid in list(state.schedule_checked):
            if sid not in {s.id for s in spec.schedules}:
                del state.schedule_checked[sid]
        # The schedule cursors first: stored alone (the spec's write refused, 503) they change
        # nothing a restart would act on; everything here changes only once both are stored.
        raw = spec.model_dump_json(by_alias=True).encode()
        JobSpec.model_validate_json(raw)  # what is stored loads again after a restart (else 422)
        self.store.put(f"/jobs/{spec.id}/state", state.to_json())
        self.store.put(f"/jobs/{spec.id}", raw)
        existed = spec.id in self.jobs
        self.jobs[spec.id] = spec
        self.states[spec.id] = state
        self.kept.setdefault(spec.id, OrderedDict())
        if self.events.subscriber_count:
            self.events.publish("job_updated" if existed else "job_created", jobId=spec.id, job=spec.dump())
        return spec

    def get_job(self, job_id: str) -> JobSpec:
        with self._lock:
            spec = self.jobs.get(job_id)
            if spec is None:
                raise NotFound(f"Job '{job_id}' does not exist")
            return spec

    def delete_job(self, job_id: str, stop_runs: bool = False) -> None:
        with self._lock:
            self.get_job(job_id)
            children = [j for j, s in self.jobs.items() if any(d.id == job_id for d in s.dependencies)]
            if children:
                raise Conflict(f"Job '{job_id}' is a dependency of {', '.join(sorted(children))}")
            active = [r for r in self.active.values() if r.job_id == job_id]
            if active and not stop_runs:
                raise Conflict(f"Job '{job_id}' has {len(active)} active run(s); "
                               "use stopCurrentJobRuns=true")
            # The job and its history go away together, in one delete, before anything else:
            # a delete the store refuses (503) leaves the job and its runs as they were.
            # Its runs then end without per-run bookkeeping (no history to keep).
            self.store.delete(f"/jobs/{job_id}")
            now = self.clock()
            for run in active:
                run.status, run.completed_at, run.reason = FAILED, now, "stopped: job deleted"
                self._emit_run("job_run_failed", run)
                self.active.pop(run.id, None)
                for task in run.tasks:
                    self._by_task.pop(task.id, None)
                    if not State(task.status).terminal:
                        self.core.kill(task.id)
            del self.jobs[job_id]
            self.states.pop(job_id, None)
            for run_id in self.kept.pop(job_id, {}):
                self._kept_job.pop(run_id, None)
            if self.events.subscriber_count:
                self.events.publish("job_deleted", jobId=job_id)

    # -- schedules -------------------------------------------------------------------

    def upsert_schedule(self, job_id: str, schedule: Schedule, create: bool) -> Schedule:
        with self._lock:
            spec = self.get_job(job_id)
            existing = [s for s in spec.schedules if s.id == schedule.id]
            if create and existing:
                raise Conflict(f"Schedule '{schedule.id}' of job '{job_id}' already exists")
            if not create and not existing:
                raise NotFound(f"Schedule '{schedule.id}' of job '{job_id}' does not exist")
            others = [s for s in spec.schedules if s.id != schedule.id]
            self._save_job(spec.model_copy(update={"schedules": others + [schedule]}))
            return schedule

    def delete_schedule(self, job_id: str, schedule_id: str) -> None:
        with self._lock:
            spec = self.get_job(job_id)
            if not any(s.id == schedule_id for s in spec.schedules):
                raise NotFound(f"Schedule '{schedule_id}' of job '{job_id}' does not exist")
            self._save_job(spec.model_copy(update={
                "schedules": [s for s in spec.schedules if s.id != schedule_id]}))

    # -- runs --------------------------------------------------------------------------

    def start_run(self, job_id: str, trigger: str = "api") -> JobRun:
        """Start a run now: one task per instance, queued with the core."""
        with self._lock:
            spec = self.get_job(job_id)
            now = self.clock()
            run = JobRun(id=new_run_id(now), job_id=job_id, created_at=now,
                         instances=spec.run.instances, trigger=trigger)
            deadline = spec.run.restart.active_deadline_seconds
            if deadline:
                run.deadline_at = now + deadline
            for index in range(run.instances):
                run.tasks.append(RunTask(id=task_id_for(run, index, 1), index=index, attempt=1,
                                         created_at=now))
            state = self.states[job_id]
            triggered_before, state.last_triggered_at = state.last_triggered_at, now
            try:  # stored before it exists here: a store outage leaves no run that never starts
                self.store.put_lazy(run_key(run), run.to_json())
                self.store.put_lazy(f"/jobs/{job_id}/state", state.to_json())
                if not self._in_status:  # one fsync for both (in a status callback the core syncs before its ACK)
                    self.store.sync()
            except StoreError:
                state.last_triggered_at = triggered_before
                raise
            self.active[run.id] = run
            for task in run.tasks:
                self._by_task[task.id] = run.id
            self.core.submit_many([task_request(spec, run, index, 1) for index in range(run.instances)])
            self.changed.notify_all()
            self._emit_run("job_run_started", run)
            return run

    def get_run(self, job_id: str, run_id: str) -> JobRun:
        with self._lock:
            self.get_job(job_id)
            run = self.active.get(run_id)
            if run is not None and run.job_id == job_id:
                return run
            kept = self.kept.get(job_id, {}).get(run_id)
            if kept is not None:
                return kept
            raise NotFound(f"Run '{run_id}' of job '{job_id}' does not exist")

    def find_run(self, run_id: str) -> JobRun:
        """A run by id alone (run ids are unique across jobs)."""
        with self._lock:
            if run_id in self.active:
                return self.active[run_id]
            job_id = self._kept_job.get(run_id)
            if job_id is not None and run_id in self.kept.get(job_id, {}):
                return self.kept[job_id][run_id]
        raise NotFound(f"Run '{run_id}' does not exist")

    def active_runs(self, job_id: str | None = None) -> list[JobRun]:
        with self._lock:
            return [r for r in self.active.values() if job_id is None or r.job_id == job_id]

    def finished_runs(self, job_id: str) -> list[JobRun]:
        with self._lock:
            return list(self.kept.get(job_id, {}).values())

    def stop_run(self, job_id: str, run_id: str, reason: str = "stopped by request") -> JobRun:
        with self._lock:
            run = self.get_run(job_id, run_id)
            if not run.finished:
                # The stop is stored before anything changes here: refused by the store (503),
                # the run goes on as it was and the stop can be sent again.
                self._save_run(replace(run, status=FAILED, completed_at=self.clock(), reason=reason,
                                       retry_at={}, waiting=""))
                self._finish(run, FAILED, reason)
            return run

    # -- statuses from the core --------------------------------------------------------

    def on_task_status(self, record: TaskRecord, status: dict) -> None:
        """Owner callback: keep the run's view of its task, and move the run."""
        with self._lock:
            self._in_status = True
            try:
                self._on_task_status(record, status)
            finally:
                self._in_status = False

    def _on_task_status(self, record: TaskRecord, status: dict) -> None:
        if record.task_id in self._abandoned:
            if record.terminal:
                self._abandoned.discard(record.task_id)
            else:  # back from a partition after we gave it up: only one copy may run
                self.core.kill(record.task_id)
        run_id = self._by_task.get(record.task_id)
        run = self.active.get(run_id or "")
        if run is None:
            if run_id is not None:
                self._late_update(run_id, record)
            return
        task = run.task(record.task_id)
        if task is None:
            return
        self._copy(record, task)
        spec = self.jobs.get(run.job_id)
        if record.terminal and spec is not None:
            outcome = task_ended(run, spec.run, task, record.state.value, record.message, self.clock())
            self._by_task.pop(record.task_id, None)
            if outcome.action != "ignore":
                task.counted_as = record.state.value
            if outcome.action == "ignore":
                # Counted before (given up as unreachable) or superseded: recorded, nothing more.
                self._save_run(run)
            elif outcome.action == "success":
                run.succeeded.append(task.index)
                self._finish(run, SUCCESS, "")
            elif outcome.action == "instance_done":
                # Not saved here: an array run would rewrite all its tasks per instance.
                # After a restart `_recover_run` replays this from the core's record.
                run.succeeded.append(task.index)
            elif outcome.action == "retry":
                run.retry_at[task.index] = outcome.retry_at or self.clock()
                run.reason = outcome.reason
                self._save_run(run)
            elif outcome.action == "fail":
                self._finish(run, FAILED, outcome.reason)
        elif task.counted_as:
            pass  # given up already (and being killed): it does not make the run active again
        elif record.state == State.RUNNING and run.status != ACTIVE:
            run.status = ACTIVE
            run.waiting = ""
            self._save_run(run)
        elif record.state in (State.LAUNCHED, State.STAGING, State.STARTING) and run.status == INITIAL:
            run.status = STARTING
            run.waiting = ""
        self.changed.notify_all()
        if not run.finished:  # a finished run has said so, with all its tasks
            self._emit_run("job_run_updated", run, task)

    def _late_update(self, run_id: str, record: TaskRecord) -> None:
        """A status for a finished run's task (e.g. TASK_KILLED after a stop): keep it visible."""
        job_id = self._kept_job.get(run_id)
        run = self.kept.get(job_id or "", {}).get(run_id)
        task = run.task(record.task_id) if run is not None else None
        if task is None:
            self._by_task.pop(record.task_id, None)
            return
        self._copy(record, task)
        if record.terminal:
            self._by_task.pop(record.task_id, None)
            self._save_run(run)
        self._emit_run("job_run_updated", run, task)

    def _copy(self, record: TaskRecord, task: RunTask) -> None:
        task.status = record.state.value if record.state != State.LAUNCHED else "TASK_STAGING"
        task.started_at = record.started_at
        task.completed_at = record.finished_at
        task.exit_code = record.exit_code
        task.agent_id = record.agent_id
        task.host = record.hostname
        task.message = record.message
        if task.counted_as and task.counted_as != task.status:
            task.message = (f"{record.message}; " if record.message else "") + \
                f"after the run counted it as {task.counted_as}"
        if record.agent_id:
            agent = self.core.agent(record.agent_id)
            if agent:
                task.agent_url = agent.get("url")

    # -- the ticker: retries, deadlines, launch delays, waiting reasons, schedules ----

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if self.active:
            self.core.nudge()
        # Explaining why runs wait is the costly part with thousands queued: once a second,
        # one snapshot of the core's reports, one text per report.
        refresh = time.monotonic() - self._waiting_refreshed >= 1.0
        reports = self.core.placement_reports() if refresh else None
        if refresh:
            self._waiting_refreshed = time.monotonic()
        texts: dict[int, str] = {}
        with self._lock:
            for run in list(self.active.values()):
                self._tick_run(run, now, reports, texts)
            for job_id, spec in list(self.jobs.items()):
                for schedule in spec.schedules:
                    self._tick_schedule(spec, schedule, now)

    def _tick_run(self, run: JobRun, now: float, reports: dict | None = None,
                  texts: dict[int, str] | None = None) -> None:
        spec = self.jobs.get(run.job_id)
        if spec is None:
            return
        if run.deadline_at is not None and now >= run.deadline_at:
            self._finish(run, FAILED, f"activeDeadlineSeconds ({spec.run.restart.active_deadline_seconds}s) "
                                      "exceeded: killed")
            return
        self._give_up_unreachable(run, now)
        for index, when in sorted(run.retry_at.items()):
            if now >= when:
                del run.retry_at[index]
                previous = run.latest(index)
                attempt = (previous.attempt if previous else 0) + 1
                task = RunTask(id=task_id_for(run, index, attempt), index=index, attempt=attempt,
                               created_at=now)
                run.tasks.append(task)
                self._by_task[task.id] = run.id
                self._save_run(run)
                self.core.submit(task_request(spec, run, index, attempt))
                self._emit_run("job_run_updated", run, task)
        pending = [t for t in run.tasks if t.status == "PENDING"]
        # maxLaunchDelay (Metronome: "running within"): a task placed but stuck staging counts too.
        for task in (t for t in run.tasks if t.status in NOT_RUNNING_YET):
            if now - task.created_at > spec.run.max_launch_delay:
                self._finish(run, FAILED, f"instance {task.index} not running within maxLaunchDelay "
                                          f"({spec.run.max_launch_delay}s)" + (f": {run.waiting}" if run.waiting else ""))
                return
        if reports is None:
            return
        text = ""
        report = reports.get(run.owner) if pending else None
        if report is not None:
            cache = texts if texts is not None else {}
            if id(report) not in cache:
                cache[id(report)] = _describe_report(report)
            text = cache[id(report)]
        if text != run.waiting:
            run.waiting = text
            self.changed.notify_all()
            self._emit_run("job_run_updated", run)

    def _give_up_unreachable(self, run: JobRun, now: float) -> None:
        """Retry a task whose agent stayed unreachable past `unreachable_seconds`.

        Until then the run waits: a task that comes back RUNNING just carries on."""
        waiting = [t for t in run.tasks if t.status in ("TASK_UNREACHABLE", "TASK_UNKNOWN")
                   and not t.counted_as and t.id not in self._abandoned]
        if not waiting:
            return
        records = {r.task_id: r for r in self.core.tasks(run.owner)}
        for task in waiting:
            record = records.get(task.id)
            if record is None or not record.history or record.state.value != task.status:
                continue
            if now - record.history[-1][1] < self.unreachable_seconds:
                continue
            self._abandoned.add(task.id)  # killed if it comes back; its statuses are only recorded
            self.core.kill(task.id)
            # Given up on, the task counts as lost, once: the run's restart policy decides.
            message = f"unreachable for {self.unreachable_seconds:.0f} s"
            spec = self.jobs.get(run.job_id)
            outcome = task_ended(run, spec.run, task, "TASK_LOST", message, now) if spec else None
            if outcome is not None and outcome.action == "ignore":
                continue
            task.counted_as = "TASK_LOST"
            if outcome is not None and outcome.action == "fail":
                task.message = message
                self._finish(run, FAILED, outcome.reason)
                return
            task.message = f"{message}: retried elsewhere"
            run.retry_at[task.index] = (outcome.retry_at if outcome is not None else None) or now
            self._save_run(run)  # a new leader must not count it again, nor wait for it
            self._emit_run("job_run_updated", run, task)

    def _tick_schedule(self, spec: JobSpec, schedule: Schedule, now: float) -> None:
        state = self.states[spec.id]
        since = state.schedule_checked.get(schedule.id, now)
        if now <= since:
            return
        active = [r for r in self.active.values() if r.job_id == spec.id]
        decision = schedules.decide(schedule, since, now, len(active))
        state.schedule_checked[schedule.id] = now
        if decision.action == "none":
            return
        stats = state.schedule_stats.setdefault(schedule.id, {"fired": 0, "skipped": 0, "missed": 0})
        stats["missed"] += decision.missed
        if decision.missed:
            log.warning("job %s schedule %s: %d fire(s) missed", spec.id, schedule.id, decision.missed)
        if decision.action == "skip":
            stats["skipped"] += 1
            stats["lastSkippedAt"] = decision.fire_at
            stats["lastSkipReason"] = decision.reason
        elif decision.action in ("start", "replace"):
            if decision.action == "replace":
                for run in active:
                    self._finish(run, FAILED, "replaced by a newer scheduled run (REPLACE)")
            stats["fired"] += 1
            stats["lastFiredAt"] = decision.fire_at
            self.store.put(f"/jobs/{spec.id}/state", state.to_json())
            self.start_run(spec.id, trigger=f"schedule:{schedule.id}")
            return
        self.store.put(f"/jobs/{spec.id}/state", state.to_json())
        self.changed.notify_all()

    def next_fire(self, job_id: str, schedule: Schedule) -> float | None:
        if not schedule.enabled:
            return None
        with self._lock:
            since = self.states[job_id].schedule_checked.get(schedule.id, self.clock())
        return schedules.next_fire(schedule, since)

    # -- finishing ---------------------------------------------------------------------

    def _finish(self, run: JobRun, status: str, reason: str) -> None:
        """The one place a run ends: kill what is left, record history, start dependents."""
        if run.finished:
            return
        now = self.clock()
        run.status = status
        run.completed_at = now
        run.reason = reason if status == FAILED else ""
        run.retry_at.clear()
        run.waiting = ""
        self.active.pop(run.id, None)
        state = self.states.get(run.job_id)
        if state is not None:
            if status == SUCCESS:
                state.success_count += 1
                state.last_success_at = now
            else:
                state.failure_count += 1
                state.last_failure_at = now
            self._put(f"/jobs/{run.job_id}/state", state.to_json())
        self._save_run(run)
        kept = self.kept.setdefault(run.job_id, OrderedDict())
        kept[run.id] = run
        self._kept_job[run.id] = run.job_id
        while len(kept) > self.history_limit:
            _, old = kept.popitem(last=False)
            self._kept_job.pop(old.id, None)
            for task in old.tasks:
                self._by_task.pop(task.id, None)
            self.store.delete(run_key(old))
        for task in run.tasks:
            if not State(task.status).terminal:
                self.core.kill(task.id)
        self.changed.notify_all()
        self._emit_run("job_run_finished" if status == SUCCESS else "job_run_failed", run)
        if status == SUCCESS:
            self._start_dependents(run.job_id)

    def _start_dependents(self, job_id: str) -> None:
        graph = {j: [d.id for d in s.dependencies] for j, s in self.jobs.items()}
        last_success = {j: s.last_success_at or float("-inf") for j, s in self.states.items()}
        last_triggered = {j: s.last_triggered_at or float("-inf") for j, s in self.states.items()}
        for child in dependencies.ready_children(graph, job_id, last_success, last_triggered):
            self.start_run(child, trigger=f"dependency:{job_id}")

    def _emit_run(self, event_type: str, run: JobRun, task: RunTask | None = None) -> None:
        """Publish a run event: `jobRun` is the run's API view (without its tasks in
        `job_run_updated`, which names the one `task` that changed: O(1) per status)."""
        if not self.events.subscriber_count:
            return
        fields: dict[str, Any] = {"jobId": run.job_id, "runId": run.id,
                                  "jobRun": run.to_api(tasks=event_type != "job_run_updated")}
        if task is not None:
            fields["task"] = task.to_api()
        self.events.publish(event_type, **fields)

    def _save_run(self, run: JobRun) -> None:
        self._put(run_key(run), run.to_json())

    def _put(self, key: str, value: bytes) -> None:
        """Inside a status callback the core syncs the store before it ACKs (group commit);
        everywhere else a write is durable when it returns."""
        if self._in_status:
            self.store.put_lazy(key, value)
        else:
            self.store.put(key, value)

    # -- what the API shows (rendered by scheduler/api/metronome_views.py) ------------

    def job_state(self, job_id: str) -> JobState:
        """A copy of the job's counts and schedule bookkeeping (empty for an unknown job)."""
        with self._lock:
            state = self.states.get(job_id)
            return state.copy() if state is not None else JobState()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds (checked whenever a run moves), or the timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 1.0))
            return True


def _describe_report(report: Any) -> str:
    """One line from a placement report (the pipeline's or the interim one)."""
    for attr in ("explain", "summary", "describe", "message"):
        value = getattr(report, attr, None)
        if callable(value):
            return str(value())
        if isinstance(value, str):
            return value
    return str(report)
