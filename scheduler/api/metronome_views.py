"""Metronome's JSON for the jobs domain: jobs with their embeds, schedules, history, the queue.

The jobs manager (scheduler/jobs/manager.py) keeps jobs, runs and their
bookkeeping; these functions say it the way Metronome's `/v1` API does (its
api/v1/models formats: JobSpec, ScheduleSpec, JobHistory, the queue), so that a client
that parses strictly finds nothing else. dockyard's extensions show only where a job
uses them (`run.instances` for an array job, `run.restart.backoffSeconds` when set),
or when the caller asks for dockyard's detail (`detail`: the `Dockyard-Detail` header,
docs/jobs.md): then runs are `JobRun.to_api`, the shape the jobs event stream carries.
"""
from __future__ import annotations

from typing import Any

from scheduler.jobs.manager import JobManager
from scheduler.jobs.runs import FAILED, SUCCESS, JobRun
from scheduler.jobs.specs import JobSpec, Restart, Run, Schedule, metronome_time, timestamp

DEFAULT_INSTANCES = Run.model_fields["instances"].default
DEFAULT_BACKOFF = Restart.model_fields["backoff_seconds"].default


def run_view(run: JobRun, detail: bool) -> dict:
    """A run as Metronome's JobRun, or with dockyard's detail."""
    return run.to_api() if detail else run.metronome()


def job_view(jobs: JobManager, spec: JobSpec, embed: set[str], detail: bool = False) -> dict:
    """A job as its JobSpec, with the schedules and what `embed` asks for."""
    out = spec.dump()
    if not out.get("description"):
        out.pop("description", None)  # Metronome writes it only when the job has one
    if not out.get("dependencies"):
        out.pop("dependencies", None)  # dockyard's job dependencies: shown where a job has some
    run = out["run"]
    if run.get("instances") == DEFAULT_INSTANCES:  # dockyard's array jobs: shown where a job is one
        del run["instances"]
    if run.get("restart", {}).get("backoffSeconds") == DEFAULT_BACKOFF:
        del run["restart"]["backoffSeconds"]
    out["schedules"] = [schedule_view(jobs, spec.id, s, detail) for s in spec.schedules]
    if "activeRuns" in embed:
        out["activeRuns"] = [run_view(r, detail) for r in jobs.active_runs(spec.id)]
    if "history" in embed:
        out["history"] = history(jobs, spec.id)
    if "historySummary" in embed:
        out["historySummary"] = history_summary(jobs, spec.id)
    return out


def schedule_view(jobs: JobManager, job_id: str, schedule: Schedule, detail: bool = False) -> dict:
    """A schedule, with `nextRunAt` while enabled and (dockyard's detail) `stats` once it fired or skipped."""
    out = schedule.dump()
    nxt = jobs.next_fire(job_id, schedule)
    if nxt is not None:
        out["nextRunAt"] = metronome_time(nxt)
    stats = jobs.job_state(job_id).schedule_stats.get(schedule.id)
    if stats and detail:
        out["stats"] = {k: (timestamp(v) if k.endswith("At") else v) for k, v in stats.items()}
    return out


def history_summary(jobs: JobManager, job_id: str) -> dict:
    state = jobs.job_state(job_id)
    return {"successCount": state.success_count, "failureCount": state.failure_count,
            "lastSuccessAt": metronome_time(state.last_success_at),
            "lastFailureAt": metronome_time(state.last_failure_at)}


def history(jobs: JobManager, job_id: str) -> dict:
    """The summary, and the kept finished runs, newest first."""
    runs = list(reversed(jobs.finished_runs(job_id)))
    summary = history_summary(jobs, job_id)

    def entry(run: JobRun) -> dict:
        return {"id": run.id, "createdAt": metronome_time(run.created_at),
                "finishedAt": metronome_time(run.completed_at)}

    summary["successfulFinishedRuns"] = [entry(r) for r in runs if r.status == SUCCESS]
    summary["failedFinishedRuns"] = [entry(r) for r in runs if r.status == FAILED]
    return summary


def metronome_queue(jobs: JobManager) -> list[dict[str, Any]]:
    """`GET /v1/queue` as Metronome answers it: per job, the runs with tasks waiting to launch."""
    by_job: dict[str, list[dict[str, str]]] = {}
    for item in queue_view(jobs):
        by_job.setdefault(item["jobId"], []).append({"runId": item["runId"]})
    return [{"jobId": job_id, "runs": runs} for job_id, runs in by_job.items()]


def queue_view(jobs: JobManager) -> list[dict[str, Any]]:
    """dockyard's detail of the queue: the runs with tasks waiting for offers, and why they wait."""
    out = []
    for run in jobs.active_runs():
        pending = [t.id for t in run.tasks if t.status == "PENDING"]
        if pending:
            out.append({"jobId": run.job_id, "runId": run.id, "tasks": pending, "waiting": run.waiting})
    return out
