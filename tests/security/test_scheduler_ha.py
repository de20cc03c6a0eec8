"""Two secured schedulers on ZooKeeper: the follower is no open relay, and speaks TLS to the leader.

Both serve HTTPS with mutual TLS and authenticate their API (the cluster bundle's
`operator` and `viewer`); the master (secured, without TLS) is named `http://`
explicitly (TLS towards the master is tested in test_scheduler_driver.py).
"""
from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess
from tests.support.security import authorization, call, client_context
from tests.support.zookeeper import ZooKeeper


@pytest.fixture
def pair(zk: ZooKeeper, tmp_path: Path) -> Iterator[tuple[Bundle, Cluster, list[SchedulerProcess]]]:
    schedulers: list[SchedulerProcess] = []
    with Cluster(tmp_path / "cluster", agents=1).start() as cluster:
        assert cluster.bundle is not None
        try:
            for index in range(2):  # one of them is a standby: serving, not subscribed
                schedulers.append(SchedulerProcess.start(
                    cluster, tmp_path / f"s{index}", "--zk", zk.url(f"/sec-ha-{tmp_path.name}"),
                    mutual_tls=True, subscribed=False))
            yield cluster.bundle, cluster, schedulers
        finally:
            for scheduler in schedulers:
                scheduler.stop()


def leading(schedulers: list[SchedulerProcess]) -> SchedulerProcess | None:
    for scheduler in schedulers:
        if scheduler.process.alive():
            health = scheduler.health()
            if health.get("role") == "leader" and health.get("subscribed") and health.get("reconciled"):
                return scheduler
    return None


def test_the_follower_authenticates_callers_and_forwards_over_tls(pair) -> None:  # noqa: ANN001
    bundle, _, schedulers = pair
    leader = wait_for(lambda: leading(schedulers), timeout=60, what="a leading scheduler")
    follower = next(s for s in schedulers if s is not leader)
    wait_for(lambda: follower.health().get("leader") == leader.address, timeout=30, what="the follower to know")
    assert follower.health()["role"] == "standby"

    # Open paths stay open on the follower; the rest need credentials, asked by the follower itself.
    assert follower.as_(None).call("GET", "/ping")[0] == 200
    assert follower.as_(None).call("GET", "/health")[0] == 200
    status, headers, body = follower.as_(None).call("GET", "/v2/apps")
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="Mesosphere"'
    assert json.loads(body)["message"].startswith("Unauthorized")
    # A call that claims to have been forwarded already would be refused with 503 by a follower
    # that only relays: this one never gets that far.
    assert follower.as_(None).call("GET", "/v1/jobs", headers={"X-Marathon-Via": "1.1 elsewhere"})[0] == 401
    assert follower.as_(None).call("GET", "/metrics")[0] == 401
    assert follower.as_(bundle.viewer).call("GET", "/metrics")[0] == 200
    status, headers, body = follower.as_(bundle.viewer).call("GET", "/v2/leader")
    assert status == 200 and json.loads(body) == {"leader": leader.address}
    assert headers["x-marathon-leader"] == f"https://{leader.address}"
    assert follower.as_(bundle.viewer).call("DELETE", "/v2/leader")[0] == 403

    # Forwarded with the caller's own credentials: a viewer reads but cannot write.
    assert follower.as_(bundle.viewer).json("GET", "/v2/apps") == (200, {"apps": []})
    job = {"id": "through-follower", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}
    status, body = follower.as_(bundle.viewer).json("POST", "/v1/jobs", job)
    assert status == 403 and "viewer" in body["message"]
    assert follower.as_(bundle.operator).json("POST", "/v1/jobs", job)[0] == 201
    assert [j["id"] for j in leader.as_(bundle.viewer).json("GET", "/v1/jobs")[1]] == ["through-follower"]
    wrong = type(bundle.operator)(bundle.operator.principal, "not-the-secret")
    assert follower.as_(wrong).call("GET", "/v1/jobs")[0] == 401

    # The event stream goes to the leader, over HTTPS (urllib would follow the redirect).
    connection = http.client.HTTPSConnection("127.0.0.1", follower.port, timeout=5, context=follower.api.context)
    connection.request("GET", "/v2/events", headers=authorization(bundle.viewer))
    response = connection.getresponse()
    assert response.status == 307 and response.getheader("Location") == f"https://{leader.address}/v2/events"
    connection.close()

    # Mutual TLS: no client certificate, no conversation.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        call("GET", follower.url + "/ping", context=client_context(bundle, with_cert=False))
    with pytest.raises(OSError):
        call("GET", f"http://{follower.address}/ping", timeout=3)


def test_a_dead_leader_is_replaced_quickly_under_tls(pair) -> None:  # noqa: ANN001
    """The successor's probe of the leader's `/ping` speaks TLS: a kill -9 is noticed at once,
    not only when ZooKeeper expires the session (10 s)."""
    bundle, _, schedulers = pair
    leader = wait_for(lambda: leading(schedulers), timeout=60, what="a leading scheduler")
    follower = next(s for s in schedulers if s is not leader)
    leader.process.kill9()
    killed = time.monotonic()
    wait_for(lambda: follower.health().get("role") == "leader", timeout=30, what="the follower leading")
    assert time.monotonic() - killed < 7.0, "the take-over probe did not notice the dead leader"
    wait_for(lambda: leading([follower]), timeout=30, what="the new leader subscribed")
    assert follower.as_(bundle.viewer).json("GET", "/v1/jobs")[0] == 200
