"""When a schedule fires, and what to do about fires missed while we were down.

Pure functions of (schedule, last time we looked, now): the manager's ticker
calls `decide` with its injected clock, so tests move time instead of waiting.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

from scheduler.jobs.specs import ConcurrencyPolicy, Schedule

MAX_MISSED_COUNTED = 1000  # stop counting missed fires after this many (a long outage)


def next_fire(schedule: Schedule, after: float) -> float:
    """The first fire strictly after `after` (epoch seconds), in the schedule's time zone."""
    start = datetime.fromtimestamp(after, tz=timezone.utc).astimezone(ZoneInfo(schedule.timezone))
    return croniter(schedule.cron, start).get_next(datetime).timestamp()


def fires_between(schedule: Schedule, since: float, now: float, limit: int = MAX_MISSED_COUNTED) -> list[float]:
    """Fire times in (since, now], oldest first, at most `limit`."""
    out: list[float] = []
    cursor = since
    while len(out) < limit:
        fire = next_fire(schedule, cursor)
        if fire > now:
            break
        out.append(fire)
        cursor = fire
    return out


@dataclass(frozen=True)
class Decision:
    """What one tick means for one schedule."""

    fire_at: float | None      # the fire to act on (the latest due one), None if nothing due
    missed: int                # due fires not acted on (older ones, or past their deadline)
    action: str                # "none", "start", "skip" (FORBID), "replace" (REPLACE), "late"
    reason: str = ""


def decide(schedule: Schedule, since: float, now: float, active_runs: int) -> Decision:
    """Act on at most one fire per tick: the newest due one, if still within its deadline.

    Older due fires (the scheduler was down, or ticks were slow) are counted as missed,
    never replayed one by one: that would double work a cron job expects once.
    """
    if not schedule.enabled:
        return Decision(None, 0, "none")
    due = fires_between(schedule, since, now)
    if not due:
        return Decision(None, 0, "none")
    latest = due[-1]
    missed = len(due) - 1
    if now - latest > schedule.starting_deadline_seconds:
        return Decision(latest, missed + 1, "late",
                        f"fire at {latest:.0f} is past its startingDeadlineSeconds")
    if active_runs:
        if schedule.concurrency_policy is ConcurrencyPolicy.FORBID:
            return Decision(latest, missed, "skip", f"{active_runs} run(s) still active (FORBID)")
        if schedule.concurrency_policy is ConcurrencyPolicy.REPLACE:
            return Decision(latest, missed, "replace", f"stopping {active_runs} active run(s) (REPLACE)")
    return Decision(latest, missed, "start")
