"""The reconciler is pure: these tests drive whole rolling upgrades by hand."""
import pytest

from scheduler.services.reconcile import Backoff, Instance, past_expunge_after, past_inactive_after, reconcile
from scheduler.services.specs import parse_app


def app(instances=4, version="v2", min_health=0.5, max_over=0.0, **extra):
    spec = parse_app({"id": "/web", "cmd": "httpd", "instances": instances,
                      "healthChecks": [{"protocol": "MESOS_HTTP"}],
                      "upgradeStrategy": {"minimumHealthCapacity": min_health,
                                          "maximumOverCapacity": max_over}, **extra})
    spec.version = version
    return spec


def running(n, version, healthy=True, start=0):
    return [Instance(f"{version}-{i}", version, "TASK_RUNNING", healthy=healthy, started_at=float(start + i))
            for i in range(n)]


def test_fresh_app_starts_every_instance():
    diff = reconcile(app(), [], Backoff(), now=0)
    assert diff.start == 4 and diff.stop == [] and not diff.done


def test_steady_state_is_done():
    diff = reconcile(app(), running(4, "v2"), Backoff(), now=0)
    assert diff.start == 0 and diff.stop == [] and diff.done


def test_scale_down_kills_youngest_first_and_unhealthy_before_that():
    instances = running(3, "v2") + [Instance("sick", "v2", "TASK_RUNNING", healthy=False, started_at=0.0)]
    diff = reconcile(app(instances=2), instances, Backoff(), now=0)
    assert diff.stop == ["sick", "v2-2"]
    diff = reconcile(app(instances=2, killSelection="OLDEST_FIRST"), running(3, "v2"), Backoff(), now=0)
    assert diff.stop == ["v2-0"]


def simulate(spec, instances, steps=20):
    """Apply diffs: kills happen, starts become healthy next round; track healthy counts."""
    healthy_seen = []
    counter = 0
    for _ in range(steps):
        healthy_seen.append(sum(1 for i in instances if i.running and i.healthy))
        diff = reconcile(spec, instances, Backoff(), now=0)
        if diff.done:
            return instances, healthy_seen, True
        instances = [i for i in instances if i.task_id not in diff.stop]
        # last round's starts turned healthy
        instances = [Instance(i.task_id, i.version, "TASK_RUNNING", healthy=True, started_at=i.started_at)
                     if i.state == "LAUNCHED" else i for i in instances]
        for _ in range(diff.start):
            counter += 1
            instances.append(Instance(f"new-{counter}", spec.version, "LAUNCHED", started_at=100.0 + counter))
    return instances, healthy_seen, False


@pytest.mark.parametrize("min_health, max_over, floor", [(0.5, 0.0, 2), (1.0, 0.0, 3), (0.0, 0.0, 0),
                                                           (1.0, 0.5, 4), (0.5, 1.0, 2)])
def test_rolling_upgrade_honours_capacity(min_health, max_over, floor):
    spec = app(min_health=min_health, max_over=max_over)
    final, healthy_seen, done = simulate(spec, running(4, "v1"))
    assert done
    assert all(i.version == "v2" for i in final) and len(final) == 4
    assert min(healthy_seen) >= floor


@pytest.mark.parametrize("min_health, max_over, most", [(0.5, 0.0, 4), (1.0, 0.0, 5), (1.0, 0.5, 6),
                                                          (0.5, 1.0, 8)])
def test_instances_being_killed_count_against_maximum_capacity(min_health, max_over, most):
    """A killed instance lingers (TASK_KILLING) for a round before it is gone: it still holds its
    resources, so it counts; only Marathon's one-over rule for max 0 / min 1.0 goes past target."""
    spec = app(min_health=min_health, max_over=max_over)
    instances, counter, alive_seen = running(4, "v1"), 0, []
    for _ in range(40):
        alive_seen.append(len(instances))
        diff = reconcile(spec, instances, Backoff(), now=0)
        if diff.done:
            break
        instances = [i for i in instances if not i.killing]  # last round's kills completed
        instances = [Instance(i.task_id, i.version, "TASK_KILLING", healthy=i.healthy, started_at=i.started_at,
                              killing=True) if i.task_id in diff.stop else
                     Instance(i.task_id, i.version, "TASK_RUNNING", healthy=True, started_at=i.started_at)
                     if i.state == "LAUNCHED" else i for i in instances]
        for _ in range(diff.start):
            counter += 1
            instances.append(Instance(f"new-{counter}", spec.version, "LAUNCHED", started_at=100.0 + counter))
    assert diff.done and all(i.version == "v2" for i in instances)
    assert max(alive_seen) <= most, alive_seen


def test_never_over_maximum_capacity():
    spec = app(min_health=1.0, max_over=0.5)
    diff = reconcile(spec, running(4, "v1"), Backoff(), now=0)
    assert diff.start == 2 and diff.stop == []


def test_readiness_gates_old_instance_kills():
    spec = app(min_health=1.0, max_over=1.0, readinessChecks=[{"portName": "http"}],
               portDefinitions=[{"port": 0, "name": "http"}])
    instances = running(4, "v1") + running(4, "v2")  # new are healthy but not ready
    old_ready = [Instance(i.task_id, i.version, i.state, True, ready=True, started_at=i.started_at)
                 for i in instances[:4]]
    diff = reconcile(spec, old_ready + instances[4:], Backoff(), now=0)
    assert diff.stop == [] and not diff.done
    ready = [Instance(i.task_id, i.version, i.state, True, ready=True, started_at=i.started_at)
             for i in instances[4:]]
    diff = reconcile(spec, old_ready + ready, Backoff(), now=0)
    assert sorted(diff.stop) == [f"v1-{i}" for i in range(4)]


def test_backoff_grows_caps_holds_starts_and_resets_after_a_healthy_run():
    spec = app(backoffSeconds=1, backoffFactor=2, maxLaunchDelaySeconds=5)
    backoff = Backoff()
    delays = []
    for now in range(5):
        backoff.failed(spec, float(now), ran_seconds=0.5, was_healthy=False)
        delays.append(backoff.delay)
    assert delays == [1, 2, 4, 5, 5]
    diff = reconcile(spec, [], backoff, now=4.0)
    assert diff.start == 0 and diff.wait_until == 9.0
    assert reconcile(spec, [], backoff, now=9.5).start == 4
    backoff.failed(spec, 10.0, ran_seconds=60.0, was_healthy=False)
    assert backoff.delay == 1


def test_deleting_stops_everything_and_is_done_when_nothing_lives():
    diff = reconcile(app(), running(2, "v1"), Backoff(), now=0, stopping=True)
    assert sorted(diff.stop) == ["v1-0", "v1-1"] and not diff.done
    assert reconcile(app(), [], Backoff(), now=0, stopping=True).done


def test_an_unreachable_instance_counts_until_it_is_inactive():
    """Within inactiveAfterSeconds the app waits for it; past it a replacement starts."""
    spec = app(instances=1)
    waiting = [Instance("v2-0", "v2", "TASK_UNREACHABLE", started_at=0.0)]
    assert reconcile(spec, waiting, Backoff(), now=0).start == 0
    inactive = [Instance("v2-0", "v2", "TASK_UNREACHABLE", started_at=0.0, inactive=True)]
    assert reconcile(spec, inactive, Backoff(), now=0).start == 1


def test_an_instance_back_from_a_partition_makes_a_surplus_that_is_killed():
    spec = app(instances=1)
    back = running(1, "v2") + [Instance("v2-new", "v2", "TASK_RUNNING", healthy=True, started_at=5.0)]
    diff = reconcile(spec, back, Backoff(), now=10)
    assert diff.start == 0 and diff.stop == ["v2-new"]


def test_unreachable_strategy_round_trips_through_the_spec():
    spec = app(unreachableStrategy={"inactiveAfterSeconds": 30, "expungeAfterSeconds": 60})
    assert spec.unreachableStrategy.inactiveAfterSeconds == 30


def test_unreachable_strategy_defaults_are_marathons():
    """300 s until a replacement starts, 600 s until a returning original is killed rather than kept."""
    spec = app()
    assert (spec.unreachableStrategy.inactiveAfterSeconds, spec.unreachableStrategy.expungeAfterSeconds) == (300, 600)
    assert not past_inactive_after(spec, 299) and past_inactive_after(spec, 300)
    assert not past_expunge_after(spec, 599) and past_expunge_after(spec, 600)
    eager = app(unreachableStrategy={"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    assert past_inactive_after(eager, 0) and past_expunge_after(eager, 0)
    never_before_inactive = app(unreachableStrategy={"inactiveAfterSeconds": 60, "expungeAfterSeconds": 10})
    assert not past_expunge_after(never_before_inactive, 30)
