"""A secured scheduler as a real process on the embedded cluster: who may call what, hostile
headers, and a framework the master removed.
"""
from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle, Identity
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess

JOB = {"id": "hello", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("sched-auth")), agents=1).start() as started:
        yield started


@pytest.fixture
def bundle(cluster: Cluster) -> Bundle:
    assert cluster.bundle is not None
    return cluster.bundle


def test_viewers_read_admins_write_and_marathons_flags_work(cluster: Cluster, bundle: Bundle, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESOSPHERE_HTTP_CREDENTIALS", "ops:s3cret pass")  # Marathon's environment variable
    with SchedulerProcess.start(cluster, tmp_path / "s", "--http-realm", "dockyard-test") as scheduler:
        ops = Identity("ops", "s3cret pass")
        assert scheduler.as_(None).call("GET", "/ping")[0] == 200  # Marathon 1.5+: open
        assert scheduler.as_(None).call("GET", "/health")[0] == 200
        status, headers, body = scheduler.as_(None).call("GET", "/v1/jobs")
        assert status == 401 and headers["www-authenticate"] == 'Basic realm="dockyard-test"'
        assert json.loads(body)["message"].startswith("Unauthorized")
        assert scheduler.as_(bundle.viewer).json("GET", "/v1/jobs") == (200, [])
        status, body = scheduler.as_(bundle.viewer).json("POST", "/v1/jobs", JOB)
        assert status == 403 and "viewer" in body["message"]
        assert scheduler.as_(ops).json("POST", "/v1/jobs", JOB)[0] == 201
        assert scheduler.as_(bundle.operator).json("POST", "/v1/jobs/hello/runs")[0] == 201
        assert scheduler.as_(bundle.viewer).json("DELETE", "/v1/jobs/hello?stopCurrentJobRuns=true")[0] == 403
        assert scheduler.as_(bundle.viewer).call("GET", "/metrics")[0] == 200
        assert scheduler.as_(None).call("GET", "/metrics")[0] == 401


HOSTILE = ["Basic !!!", "Basic " + base64.b64encode(b"operator").decode(), "Basic " + "é" * 20,
           "Bearer x.y.z", "Basic", "Basic " + "A" * 65536, "Basic " + base64.b64encode(b"operator:wrong").decode()]


def raw_request(port: int, request: bytes) -> int:
    """The status of one raw HTTP/1.1 request (the header bytes exactly as given)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_hostile_headers_are_refused_and_the_server_keeps_serving(cluster: Cluster, bundle: Bundle,
                                                                  tmp_path: Path) -> None:
    with SchedulerProcess.start(cluster, tmp_path / "s") as scheduler:
        for header in HOSTILE:
            for method, path in (("GET", "/v2/apps"), ("POST", "/v1/jobs"), ("DELETE", "/v2/apps/x"),
                                 ("GET", "/v1/events")):
                status, headers, body = scheduler.as_(None).call(method, path, JOB if method == "POST" else None,
                                                                 headers={"Authorization": header})
                assert status == 401, (header[:30], method, path, status, body[:200])
                assert "message" in json.loads(body) and headers["www-authenticate"].startswith("Basic")
        raw = b"GET /v2/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xff\xfe\x00zz\r\nConnection: close\r\n\r\n"
        assert raw_request(scheduler.port, raw) in (400, 401)
        assert scheduler.as_(bundle.viewer).json("GET", "/v2/apps") == (200, {"apps": []})
        assert scheduler.process.alive() and "Traceback" not in scheduler.process.output()


def test_a_removed_framework_is_said_and_not_served_as_if_nothing_happened(tmp_path: Path) -> None:
    """Operator TEARDOWN: `/health` answers 503 with the reason, writes 503, one ERROR line;
    the framework id is forgotten (Marathon's `MarathonScheduler.error`), so a restart registers
    a new framework and keeps the jobs."""
    with Cluster(tmp_path / "cluster", agents=1).start() as cluster:
        bundle = cluster.bundle
        assert bundle is not None
        with SchedulerProcess.start(cluster, tmp_path / "s") as scheduler:
            old_id = scheduler.health()["frameworkId"]
            assert scheduler.as_(bundle.operator).json("POST", "/v1/jobs", JOB)[0] == 201
            status, _, body = cluster.call("POST", "/api/v1",
                                           {"type": "TEARDOWN", "teardown": {"framework_id": {"value": old_id}}})
            assert status == 200, body

            wait_for(lambda: "error" in scheduler.health(), timeout=30, what="the removal said in /health")
            status, _, body = scheduler.as_(None).call("GET", "/health")
            health = json.loads(body)
            assert status == 503 and health["subscribed"] is False
            assert old_id in health["error"] and "restart" in health["error"]
            status, body = scheduler.as_(bundle.operator).json("PUT", "/v1/jobs/hello", JOB)
            assert status == 503 and body["message"] == health["error"]
            assert scheduler.as_(bundle.operator).json("POST", "/v2/apps", {"id": "/a", "cmd": "true"})[0] == 503
            assert scheduler.as_(bundle.viewer).json("GET", "/v1/jobs")[0] == 200  # reads still answer
            errors = [line for line in scheduler.process.output().splitlines() if " ERROR " in line]
            assert len(errors) == 1 and "removed framework" in errors[0] and "Restart" in errors[0], errors

        with SchedulerProcess.start(cluster, tmp_path / "s", log_name="restarted.log") as restarted:
            assert restarted.health()["frameworkId"] not in (None, old_id)
            assert [j["id"] for j in restarted.as_(bundle.viewer).json("GET", "/v1/jobs")[1]] == ["hello"]
