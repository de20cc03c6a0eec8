"""A change the state store cannot keep is refused whole (nothing half-made).

The manager runs over the embedded store with writes switched off at an exact moment
(`FlakyStore`), the one fault a real store cannot be timed to give. A refused call
answers 503 and leaves the app, its deployments and the event stream as they were, in
memory and in the store alike; sent again once the store is back, it takes effect.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from framework.errors import NotFound, StoreError
from framework.store import open_store
from scheduler.api.errors import render_error
from scheduler.context import Context, SchedulerConfig
from scheduler.events import EventBus
from scheduler.services.app_state import _key
from scheduler.services.manager import ServiceManager
from scheduler.services.specs import parse_app
from tests.scheduler.test_core_jobs import FlakyStore, make_world

APP = {"id": "/web", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 2}


def manager(store: Any, core: Any, clock: Any) -> ServiceManager:
    return ServiceManager(Context(config=SchedulerConfig(), store=store, core=core,  # type: ignore[arg-type]
                                  events=EventBus(), clock=clock))


def test_an_app_the_store_cannot_keep_does_not_exist_and_can_be_sent_again(tmp_path: Path) -> None:
    store = FlakyStore(open_store(tmp_path))
    clock, core, _, _ = make_world(store)
    services = manager(store, core, clock)
    store.down = True
    with pytest.raises(StoreError) as caught:
        services.create(parse_app(APP))
    assert render_error(caught.value).status_code == 503
    with pytest.raises(NotFound):
        services.get("/web")
    assert not services.deployments
    store.down = False
    state, deployment = services.create(parse_app(APP))  # the resend: created, not a 409
    assert services.get("/web") is state and list(services.deployments) == [deployment.id]
    reloaded = manager(store, core, clock)
    reloaded.load()
    assert reloaded.get("/web").app.instances == 2


def _running_deployment(services: ServiceManager) -> str:
    return next(iter(services.deployments))


CHANGES: dict[str, Callable[[ServiceManager], Any]] = {
    "update": lambda s: s.update("/web", {"cmd": "sleep 200"}, force=True),
    "rollback to a version": lambda s: s.update("/web", {"version": s.get("/web").app.version}, force=True),
    "scale": lambda s: s.scale("/web", 5, force=True),
    "restart": lambda s: s.restart("/web", force=True),
    "delete": lambda s: s.delete("/web", force=True),
    "cancel a deployment (roll back)": lambda s: s.cancel(_running_deployment(s)),
    "cancel a deployment (force)": lambda s: s.cancel(_running_deployment(s), force=True),
    "reset the launch delay": lambda s: s.reset_delay("/web"),
}


def _memory(services: ServiceManager) -> tuple[bytes, dict[str, tuple[str, int]]]:
    state = services.apps["/web"]
    return state.to_json(), {i: (d.status, d.current) for i, d in services.deployments.items()}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_the_store_cannot_keep_leaves_the_app_as_it_was(tmp_path: Path, change: str) -> None:
    store = FlakyStore(open_store(tmp_path))
    clock, core, _, _ = make_world(store)
    services = manager(store, core, clock)
    state, _ = services.create(parse_app(APP))
    state.backoff.failed(state.app, clock(), None, False)  # a launch delay to reset
    services._persist(state)
    before = _memory(services)
    events = services.events.subscribe()

    store.down = True
    with pytest.raises(StoreError) as caught:
        CHANGES[change](services)
    assert render_error(caught.value).status_code == 503
    assert _memory(services) == before
    assert services.apps["/web"] is state and services.get("/web") is state
    assert events.get(timeout=0) is None, "a refused change announced something"
    stored, _ = store.get(_key("/web"))
    assert stored == before[0]

    store.down = False
    CHANGES[change](services)  # the resend takes effect
    after = _memory(services) if "/web" in services.apps else None
    assert after != before
    if change != "reset the launch delay":  # the one change Marathon announces no event for
        assert events.get(timeout=0)["eventType"] in ("deployment_failed", "deployment_info")
    reloaded = manager(store, core, clock)
    reloaded.load()
    assert (_memory(reloaded) if "/web" in reloaded.apps else None) == after


def test_instances_the_store_cannot_record_are_not_started(tmp_path: Path) -> None:
    """The app records an instance before the core launches it; unrecorded, none starts."""
    store = FlakyStore(open_store(tmp_path))
    clock, core, _, _ = make_world(store)
    services = manager(store, core, clock)
    state, _ = services.create(parse_app(APP))
    store.down = True
    with pytest.raises(StoreError):
        services.tick()
    assert state.instances == {} and core.tasks("app:") == []
    store.down = False
    services.tick()
    assert sorted(state.instances) == sorted(r.task_id for r in core.tasks("app:")) and len(state.instances) == 2
