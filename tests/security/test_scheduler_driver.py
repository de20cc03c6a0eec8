"""The scheduler towards a secured master: its principal (HTTP Basic) on SUBSCRIBE and every
call, FrameworkInfo.principal, and HTTPS with mutual TLS.

The master is the embedded one with a generated bundle's flags (credentials, ACLs,
framework authentication, TLS asking for client certificates): a test cluster with
`mutual_tls=True` and no agent.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path / "cluster", agents=0, mutual_tls=True).start() as started:
        yield started


@pytest.fixture
def bundle(master: Cluster) -> Bundle:
    assert master.bundle is not None
    return master.bundle


def test_subscribes_with_its_principal_over_mutual_tls(master: Cluster, bundle: Bundle,
                                                      tmp_path: Path) -> None:
    # `host:port`: TLS is on, so the scheduler speaks HTTPS to the master without being told.
    assert master.master_uri == master.master_address
    with SchedulerProcess.start(master, tmp_path / "s") as scheduler:
        framework_id = scheduler.health()["frameworkId"]
        frameworks = {f["id"]: f for f in master.state()["frameworks"]}
        assert frameworks[framework_id]["principal"] == "dockyard"
        # Calls through the driver's pool (not only SUBSCRIBE) pass the master's authentication:
        # nothing waits, so it SUPPRESSes; a run is submitted (no agent: its task waits) and it REVIVEs.
        wait_for(lambda: calls(master, framework_id, "suppress") >= 1, timeout=20, what="a SUPPRESS accepted")
        job = {"id": "waits", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}
        assert scheduler.as_(bundle.operator).json("POST", "/v1/jobs", job)[0] == 201
        assert scheduler.as_(bundle.operator).json("POST", "/v1/jobs/waits/runs")[0] == 201
        wait_for(lambda: calls(master, framework_id, "revive") >= 1, timeout=20, what="a REVIVE accepted")
        log = scheduler.process.output()
        assert "refused" not in log and " ERROR " not in log, log[-2000:]


def calls(master: Cluster, framework_id: str, kind: str) -> float:
    """How many calls of `kind` the master took from the framework (its metrics snapshot)."""
    status, _, body = master.call("GET", "/metrics/snapshot")
    assert status == 200, body
    suffix = f"/{framework_id}/calls/{kind}"
    return sum(v for k, v in json.loads(body).items() if k.endswith(suffix))


def test_a_wrong_secret_is_said_in_health_and_log(master: Cluster, bundle: Bundle, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-secret")
    with SchedulerProcess.start(master, tmp_path / "s", "--mesos-authentication-secret-file", str(wrong),
                                subscribed=False) as scheduler:
        wait_for(lambda: "error" in scheduler.health(), timeout=30, what="the refusal reported")
        health = scheduler.health()
        assert health["subscribed"] is False and "401" in health["error"]
        status, body = scheduler.as_(bundle.operator).json("PUT", "/v1/jobs/j",
                                                           {"id": "j", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}})
        assert status == 503 and "401" in body["message"]
        errors = [line for line in scheduler.process.output().splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "restart the scheduler" in errors[0], errors
