"""The one refusal rule: how long an unused offer is declined for, in each case."""
from __future__ import annotations

from scheduler.placement import place, refusal
from scheduler.placement.views import AgentView

from tests.placement.helpers import agent, request


def busy_agent(i: int, total_cpus: float, free_cpus: float) -> AgentView:
    """Big enough in principle, full now: a task that ends frees it."""
    view = agent(i, cpus=total_cpus)
    view.cpus = free_cpus
    return view


def test_nothing_waits_an_hour_unless_the_rest_is_held() -> None:
    assert refusal.refuse_seconds(waiting=False) == refusal.IDLE_SECONDS == 3600.0
    assert refusal.refuse_seconds(waiting=False, holding=True) == refusal.HELD_SECONDS == 0.0


def test_work_that_may_fit_later_a_second_and_work_that_never_will_marathons_default() -> None:
    later = place([request(cpus=2)], [busy_agent(0, 8, 1)], [])
    assert later.unplaced and later.refuse_seconds() == refusal.WAITING_SECONDS == 1.0
    never = place([request(cpus=16)], [agent(0), agent(1)], [])
    assert never.refuse_seconds() == refusal.UNRESOLVABLE_SECONDS == 120.0
    assert never.refuse_seconds(waiting=False, holding=True) == 0.0


def test_one_owner_that_may_still_fit_keeps_the_refusal_short() -> None:
    plan = place([request(cpus=16, owner="app:/big"), request(cpus=2, owner="app:/small")], [busy_agent(0, 4, 1)], [])
    assert not plan.reports["app:/big"].resolvable and plan.reports["app:/small"].resolvable
    assert plan.refuse_seconds() == refusal.WAITING_SECONDS
