"""The scheduler towards a secured master: its principal (HTTP Basic) on SUBSCRIBE and every
call, FrameworkInfo.principal, and HTTPS with mutual TLS.

The master is the embedded one with a generated bundle's flags (credentials, ACLs,
framework authentication, TLS asking for client certificates): tests/security/secured.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle
from tests.security.secured import SecuredMaster, SecuredScheduler
from tests.support.procs import wait_for


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    return Bundle(tmp_path / "security").ensure()


@pytest.fixture
def master(tmp_path: Path, bundle: Bundle) -> Iterator[SecuredMaster]:
    with SecuredMaster.start(tmp_path, bundle) as started:
        yield started


def scheduler_flags(bundle: Bundle, secret_file: Path | None = None) -> list[str]:
    return ["--mesos-authentication-principal", "dockyard",
            "--mesos-authentication-secret-file", str(secret_file or bundle.scheduler_secret_file),
            "--http-users", str(bundle.users_file)]


def test_subscribes_with_its_principal_over_mutual_tls(master: SecuredMaster, bundle: Bundle,
                                                      tmp_path: Path) -> None:
    # `host:port`: TLS is on, so the scheduler speaks HTTPS to the master without being told.
    with SecuredScheduler.start(master.address, tmp_path / "s", bundle, *scheduler_flags(bundle),
                                tls=True, mutual=True) as scheduler:
        wait_for(lambda: scheduler.health().get("subscribed"), timeout=30, what="subscribed to the master")
        framework_id = scheduler.health()["frameworkId"]
        frameworks = {f["id"]: f for f in master.state()["frameworks"]}
        assert frameworks[framework_id]["principal"] == "dockyard"
        # Calls through the driver's pool (not only SUBSCRIBE) pass the master's authentication:
        # nothing waits, so it SUPPRESSes; a run is submitted (no agent: its task waits) and it REVIVEs.
        wait_for(lambda: calls(master, framework_id, "suppress") >= 1, timeout=20, what="a SUPPRESS accepted")
        job = {"id": "waits", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}
        assert scheduler.json("POST", "/v1/jobs", bundle.operator, job)[0] == 201
        assert scheduler.json("POST", "/v1/jobs/waits/runs", bundle.operator)[0] == 201
        wait_for(lambda: calls(master, framework_id, "revive") >= 1, timeout=20, what="a REVIVE accepted")
        log = scheduler.process.output()
        assert "refused" not in log and " ERROR " not in log, log[-2000:]


def calls(master: SecuredMaster, framework_id: str, kind: str) -> float:
    """How many calls of `kind` the master took from the framework (its metrics snapshot)."""
    status, _, body = master.call("GET", "/metrics/snapshot", master.bundle.operator)
    assert status == 200, body
    suffix = f"/{framework_id}/calls/{kind}"
    return sum(v for k, v in json.loads(body).items() if k.endswith(suffix))


def test_a_wrong_secret_is_said_in_health_and_log(master: SecuredMaster, bundle: Bundle, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-secret")
    with SecuredScheduler.start(master.address, tmp_path / "s", bundle, *scheduler_flags(bundle, wrong),
                                tls=True, mutual=True) as scheduler:
        wait_for(lambda: "error" in scheduler.health(), timeout=30, what="the refusal reported")
        health = scheduler.health()
        assert health["subscribed"] is False and "401" in health["error"]
        status, body = scheduler.json("PUT", "/v1/jobs/j", bundle.operator,
                                      {"id": "j", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}})
        assert status == 503 and "401" in body["message"]
        errors = [line for line in scheduler.process.output().splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "restart the scheduler" in errors[0], errors
