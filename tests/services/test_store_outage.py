"""An app created while the state store is down is refused whole (issue 2: nothing half-made).

The manager runs over the embedded store with writes switched off at an exact moment
(`FlakyStore`), the one fault a real store cannot be timed to give.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import StoreError
from framework.store import open_store
from scheduler.api.common import render_error
from scheduler.context import Context, SchedulerConfig
from scheduler.events import EventBus
from scheduler.services.manager import NotFound, ServiceManager
from scheduler.services.specs import parse_app
from tests.scheduler.test_core_jobs import FlakyStore, make_world


def test_an_app_the_store_cannot_keep_does_not_exist_and_can_be_sent_again(tmp_path: Path) -> None:
    store = FlakyStore(open_store(tmp_path))
    clock, core, _, _ = make_world(store)
    services = ServiceManager(Context(config=SchedulerConfig(), store=store, core=core,  # type: ignore[arg-type]
                                      events=EventBus(), clock=clock))
    app = {"id": "/web", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 2}
    store.down = True
    with pytest.raises(StoreError) as caught:
        services.create(parse_app(app))
    assert render_error(caught.value).status_code == 503
    with pytest.raises(NotFound):
        services.get("/web")
    assert not services.deployments
    store.down = False
    state, deployment = services.create(parse_app(app))  # the resend: created, not a 409
    assert services.get("/web") is state and list(services.deployments) == [deployment.id]
    reloaded = ServiceManager(Context(config=SchedulerConfig(), store=store, core=core,  # type: ignore[arg-type]
                                      events=EventBus(), clock=clock))
    reloaded.load()
    assert reloaded.get("/web").app.instances == 2
