"""What an app needs next, as a pure diff (Nomad's reconciler shape): no I/O, `now` given.

Inputs: the app (target version and count), its instances (version, state, health,
readiness, start time), the backoff state and `now`. Output: how many instances to
start, which to stop and why, when to look again, and whether the current
deployment step is done. The service manager applies it.

Rolling upgrades follow Marathon: keep at least ceil(n * minimumHealthCapacity)
instances healthy, never run more than n + floor(n * maximumOverCapacity) at once;
old instances die only as new ones become healthy (and ready, when the app has a
readiness check).

Unreachable instances follow Marathon's unreachableStrategy (defaults 300 s and
600 s, as UnreachableEnabled in Marathon's state/UnreachableStrategy.scala). An
instance on a lost agent still counts until it has been unreachable for
inactiveAfterSeconds; then it is inactive and a replacement starts. If it comes
back RUNNING before expungeAfterSeconds, it counts again and the app, one over,
is scaled down in killSelection order (Marathon's ScaleAppUpdateStepImpl asks for
the scale check, ScalingProposition picks): with YOUNGEST_FIRST the replacement
goes and the original stays. Back after expungeAfterSeconds, it was expunged and
is killed, as Marathon kills a task it no longer knows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from scheduler.services.specs import AppDefinition

LIVE_STATES = frozenset({"PENDING", "LAUNCHED", "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING",
                         "TASK_UNREACHABLE", "TASK_UNKNOWN"})
# Terminal states that count as a failure for backoff (a kill we asked for does not).
FAILURE_STATES = frozenset({"TASK_FAILED", "TASK_FINISHED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED",
                            "TASK_GONE"})
HEALTHY_RUN_SECONDS = 10.0  # a task that ran this long (or turned healthy) resets the backoff


@dataclass(frozen=True)
class Instance:
    task_id: str
    version: str
    state: str  # the core's state name (PENDING, LAUNCHED, TASK_*)
    healthy: bool | None = None
    ready: bool = False
    started_at: float | None = None
    created_at: float = 0.0
    killing: bool = False  # a kill was already asked for
    inactive: bool = False  # UNREACHABLE past unreachableStrategy.inactiveAfterSeconds (see `past_inactive_after`)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES and not self.killing and not self.inactive

    @property
    def running(self) -> bool:
        return self.state == "TASK_RUNNING" and not self.killing


@dataclass
class Backoff:
    """Per-app launch delay (Marathon's backoffSeconds/backoffFactor/maxLaunchDelaySeconds)."""

    delay: float = 0.0  # the last delay applied, 0 = none
    until: float = 0.0  # no launch before this time

    def failed(self, app: AppDefinition, now: float, ran_seconds: float | None, was_healthy: bool) -> None:
        """A task failed: grow the delay, unless it had a healthy run first (then restart it)."""
        if was_healthy or (ran_seconds is not None and ran_seconds >= HEALTHY_RUN_SECONDS):
            self.delay = 0.0
        if self.delay <= 0:
            self.delay = app.backoffSeconds
        else:
            self.delay = min(self.delay * app.backoffFactor, app.maxLaunchDelaySeconds)
        self.delay = min(self.delay, app.maxLaunchDelaySeconds)
        self.until = now + self.delay

    def reset(self) -> None:
        self.delay = 0.0
        self.until = 0.0

    def time_left(self, now: float) -> float:
        return max(self.until - now, 0.0)


@dataclass
class Diff:
    start: int = 0
    stop: list[str] = field(default_factory=list)  # task ids, in kill order
    stop_reason: dict[str, str] = field(default_factory=dict)
    wait_until: float | None = None  # backoff: starts held until then
    done: bool = False  # the app is at its target: right version, count, healthy and ready
    counts: dict[str, int] = field(default_factory=dict)


def past_inactive_after(app: AppDefinition, unreachable_for: float) -> bool:
    """Unreachable this long, the instance no longer counts: a replacement starts."""
    return unreachable_for >= app.unreachableStrategy.inactiveAfterSeconds


def past_expunge_after(app: AppDefinition, unreachable_for: float) -> bool:
    """Unreachable this long, the instance is given up for good: killed if it comes back.

    Never before it was inactive: Marathon expunges only instances it has replaced."""
    strategy = app.unreachableStrategy
    return unreachable_for >= max(strategy.expungeAfterSeconds, strategy.inactiveAfterSeconds)


def healthy_and_ready(app: AppDefinition, instance: Instance) -> bool:
    if not instance.running:
        return False
    if app.healthChecks and instance.healthy is not True:
        return False
    if app.readinessChecks and not instance.ready:
        return False
    return True


def kill_order(app: AppDefinition, instances: list[Instance]) -> list[Instance]:
    """Who goes first when scaling down: the unhealthy and the not-yet-running, then by
    killSelection (YOUNGEST_FIRST by default)."""
    youngest_first = app.killSelection == "YOUNGEST_FIRST"

    def key(i: Instance) -> tuple:
        started = i.started_at if i.started_at is not None else float("inf")
        age_key = -started if youngest_first else started
        return (healthy_and_ready(app, i), i.running, age_key, i.task_id)

    return sorted(instances, key=key)


def reconcile(app: AppDefinition, instances: list[Instance], backoff: Backoff, now: float,
              stopping: bool = False) -> Diff:
    """The next moves for one app. `stopping`: the app is being deleted."""
    diff = Diff()
    live = [i for i in instances if i.live]
    if stopping:
        diff.stop = [i.task_id for i in live]
        diff.stop_reason = {t: "app deleted" for t in diff.stop}
        diff.done = not [i for i in instances if i.state in LIVE_STATES or i.state == "TASK_KILLING"]
        return diff
    target = app.instances
    new = [i for i in live if i.version == app.version]
    old = [i for i in live if i.version != app.version]
    healthy_new = sum(1 for i in new if healthy_and_ready(app, i))
    healthy_old = [i for i in old if healthy_and_ready(app, i)]
    min_healthy = math.ceil(target * app.upgradeStrategy.minimumHealthCapacity - 1e-9)
    max_total = target + math.floor(target * app.upgradeStrategy.maximumOverCapacity + 1e-9)

    # Too many new instances (scale down): kill in killSelection order.
    if len(new) > target:
        for instance in kill_order(app, new)[:len(new) - target]:
            diff.stop.append(instance.task_id)
            diff.stop_reason[instance.task_id] = "scaling down"
        new = [i for i in new if i.task_id not in diff.stop]
        healthy_new = sum(1 for i in new if healthy_and_ready(app, i))

    # Old instances: keep only as many healthy ones as capacity still needs.
    keep = max(0, min(len(healthy_old), min_healthy - healthy_new))
    keep_ids = {i.task_id for i in kill_order(app, healthy_old)[len(healthy_old) - keep:]} if keep else set()
    for instance in kill_order(app, old):
        if instance.task_id not in keep_ids:
            diff.stop.append(instance.task_id)
            diff.stop_reason[instance.task_id] = "replaced by a new version"

    missing = max(target - len(new), 0)
    # Every instance still alive counts against maximumOverCapacity, the ones being killed
    # too: they hold their resources (and ports) until they are gone.
    alive = [i for i in instances if (i.state in LIVE_STATES or i.state == "TASK_KILLING") and not i.inactive]
    dying = [i for i in alive if i.killing or i.task_id in diff.stop]
    room = max_total - len(alive)
    if missing and room <= 0 and not dying and all(healthy_and_ready(app, i) for i in new):
        room = 1  # min 1.0 with max 0.0 would never move: go one over, as Marathon does
    diff.start = max(0, min(missing, room))
    if diff.start and backoff.until > now:
        diff.wait_until = backoff.until
        diff.start = 0
    # Done only once the replaced instances are really gone (not merely asked to die).
    lingering = [i for i in instances if (i.state in LIVE_STATES or i.state == "TASK_KILLING")
                 and (i.killing or i.version != app.version)]
    diff.done = (not old and len(new) == target and healthy_new == target and not diff.stop
                 and not lingering)
    diff.counts = {"new": len(new), "old": len(old), "healthyNew": healthy_new,
                   "healthyOld": len(healthy_old), "minHealthy": min_healthy, "maxTotal": max_total}
    return diff
