"""A framework that never answers its offers does not keep the cluster from the others.

A real master and agent: a "silent" framework subscribes first (a raw SUBSCRIBE
stream that never accepts, declines or acknowledges), so it is offered the
whole agent; a normal framework subscribes next and has work. With
`--offer-timeout`, the silent framework's offer is rescinded, and the resources
go to the framework that was not offered them (the silent one is filtered from
them for as long again), so the normal framework's tasks run within a bounded
time. Without that rule DRF, seeing the silent framework hold nothing after the
rescind, offered them straight back to it, for ever.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.mesos_http import open_stream

OFFER_TIMEOUT = 2.0
BOUND = 3 * OFFER_TIMEOUT + 5.0  # rescind, one allocation, the launch itself


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, agents=1, master_args=["--offer-timeout", str(OFFER_TIMEOUT)]).start() as running:
        yield running


def test_a_silent_framework_does_not_starve_a_working_one(cluster: Cluster) -> None:
    silent = open_stream(cluster.master_api(), "/api/v1/scheduler", {
        "type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "silent"}}})
    try:
        assert silent.status == 200
        held = silent.wait_for("OFFERS")["offers"]["offers"]
        assert held, "the silent framework was offered the agent first"
        normal = RawFramework(cluster.master_api(), name="normal").start()
        try:
            for number in range(2):  # not one lucky round: each task needs an offer of its own
                started = time.monotonic()
                offer = normal.offer(timeout=BOUND)
                assert time.monotonic() - started < BOUND
                task_id = f"work-{number}"
                normal.launch(offer, [command_task("exit 0", task_id=task_id)])
                assert normal.wait_terminal(task_id, timeout=30)["state"] == "TASK_FINISHED"
        finally:
            normal.stop()
        # The silent framework was told its offer went away.
        rescinded = silent.wait_for("RESCIND", timeout=5)["rescind"]["offer_id"]
        assert rescinded == held[0]["id"]
    finally:
        silent.close()
