"""Cron schedules with time zones and concurrency policies, on a clock the test moves."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from scheduler.jobs import schedules
from scheduler.jobs.specs import parse_schedule


def ts(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_next_fire_respects_the_time_zone() -> None:
    schedule = parse_schedule({"cron": "0 9 * * *", "timezone": "Europe/Paris"})
    fire = schedules.next_fire(schedule, ts("2026-07-01T00:00:00"))
    assert datetime.fromtimestamp(fire, tz=timezone.utc).hour == 7  # 09:00 CEST


def test_every_minute_fires_once_per_minute() -> None:
    schedule = parse_schedule({"cron": "* * * * *"})
    start = ts("2026-01-01T12:00:30")
    assert schedules.decide(schedule, start, start + 20, 0).action == "none"
    decision = schedules.decide(schedule, start + 20, start + 31, 0)
    assert decision.action == "start" and decision.fire_at == ts("2026-01-01T12:01:00")
    assert decision.missed == 0


def test_missed_fires_while_down_start_one_run_not_many() -> None:
    schedule = parse_schedule({"cron": "* * * * *", "startingDeadlineSeconds": 120})
    start = ts("2026-01-01T12:00:00")
    decision = schedules.decide(schedule, start, start + 10 * 60 + 30, 0)
    assert decision.action == "start" and decision.missed == 9
    assert decision.fire_at == ts("2026-01-01T12:10:00")


def test_fire_past_its_starting_deadline_is_late() -> None:
    schedule = parse_schedule({"cron": "0 * * * *", "startingDeadlineSeconds": 60})
    start = ts("2026-01-01T12:30:00")
    decision = schedules.decide(schedule, start, ts("2026-01-01T13:05:00"), 0)
    assert decision.action == "late" and decision.missed == 1


def test_concurrency_policies() -> None:
    start = ts("2026-01-01T12:00:30")
    for policy, expected in (("ALLOW", "start"), ("FORBID", "skip"), ("REPLACE", "replace")):
        schedule = parse_schedule({"cron": "* * * * *", "concurrencyPolicy": policy})
        assert schedules.decide(schedule, start, start + 31, active_runs=1).action == expected
        assert schedules.decide(schedule, start, start + 31, active_runs=0).action == "start"


def test_disabled_schedule_never_fires() -> None:
    schedule = parse_schedule({"cron": "* * * * *", "enabled": False})
    assert schedules.decide(schedule, 0, 10_000, 0).action == "none"
