"""Scheduler HA against real ZooKeeper and real processes: election, forwarding, failover."""
from __future__ import annotations

import json

from kazoo.client import KazooClient

from scheduler.leader import current_leader, election_url
from tests.faults.harness import Deployment
from tests.ha.conftest import job
from tests.support.procs import wait_for


def start_long_run(d: Deployment, job_id: str) -> dict:
    """A run whose one task stays RUNNING; returns the run once it does."""
    status, _ = d.api("POST", "/v1/jobs", job(job_id, "sleep 600"))
    assert status == 201
    status, run = d.api("POST", f"/v1/jobs/{job_id}/runs")
    assert status == 201, run

    def running() -> dict | None:
        _, current = d.api("GET", f"/v1/jobs/{job_id}/runs/{run['id']}")
        tasks = current.get("tasks") or []
        return current if tasks and tasks[0]["status"] == "TASK_RUNNING" else None
    return wait_for(running, timeout=30, what=f"{job_id} running")


def our_framework_tasks(d: Deployment, framework_id: str) -> list[dict]:
    state = d.master_state()
    frameworks = [f for f in state["frameworks"] if f["id"] == framework_id]
    return [t for f in frameworks for t in f["tasks"]]


def test_two_schedulers_elect_one_leader_and_the_follower_forwards(deploy) -> None:
    d = deploy(agents=1)
    leader = d.wait_leader()
    follower = d.follower()
    for sched in d.scheds:
        assert sched.call("/v2/leader")[1] == {"leader": leader.address}
    assert current_leader(d.scheduler_zk) == leader.address
    assert follower.health()["role"] == "standby"

    # Writes through the follower land on the leader; reads through either agree.
    created = follower.call("/v1/jobs", "POST", job("via-follower", "true"))
    assert created[0] == 201 and created[1]["id"] == "via-follower"
    assert created[2].get("x-marathon-leader") == f"http://{leader.address}"
    for sched in (leader, follower):
        status, jobs, _ = sched.call("/v1/jobs")
        assert status == 200 and [j["id"] for j in jobs] == ["via-follower"]
    status, run, _ = follower.call("/v1/jobs/via-follower/runs", "POST")
    assert status == 201
    wait_for(lambda: follower.call(f"/v1/jobs/via-follower/runs/{run['id']}")[1]["status"] == "SUCCESS",
             timeout=30, what="the run started through the follower to succeed")
    # Validation errors come back unchanged (status and body), not as proxy errors.
    bad = follower.call("/v1/jobs", "POST", {"id": "Bad Id!", "run": {}})
    assert bad[0] == leader.call("/v1/jobs", "POST", {"id": "Bad Id!", "run": {}})[0] == 422

    # Marathon's API goes the same way (whatever the leader answers, the follower answers).
    app = {"id": "/ha-web", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1}
    created = follower.call("/v2/apps", "POST", app)
    assert created[0] == 201, created
    on_leader, on_follower = leader.call("/v2/apps"), follower.call("/v2/apps")
    assert on_leader[0] == on_follower[0] == 200
    assert [a["id"] for a in on_follower[1]["apps"]] == [a["id"] for a in on_leader[1]["apps"]] == ["/ha-web"]
    # The event stream is not proxied: the follower sends the client to the leader.
    connection = follower.api.http_connection(timeout=5)
    connection.request("GET", "/v2/events", headers=follower.api.headers({"Accept": "text/event-stream"}))
    response = connection.getresponse()
    assert response.status == 307 and response.getheader("Location") == f"http://{leader.address}/v2/events"
    connection.close()
    connection = follower.api.http_connection(timeout=5)
    connection.request("GET", "/v1/events?jobId=x",  # the jobs stream too
                       headers=follower.api.headers({"Accept": "text/event-stream"}))
    response = connection.getresponse()
    assert response.status == 307 and response.getheader("Location") == f"http://{leader.address}/v1/events?jobId=x"
    connection.close()


def test_kill9_of_the_leader_fails_over_without_losing_or_doubling_tasks(deploy) -> None:
    d = deploy(agents=2)
    old = d.wait_leader()
    framework_id = old.health()["frameworkId"]
    run = start_long_run(d, "long")
    task_id = run["tasks"][0]["id"]

    d.kill_scheduler(old.index)
    new = d.wait_leader(other_than=old.index, timeout=40)
    health = new.health()
    assert health["frameworkId"] == framework_id  # re-subscribed with the stored id
    assert new.call("/v2/leader")[1] == {"leader": new.address}
    # The new leader knows the run and its task, still running; Mesos runs it once.
    _, after = d.api("GET", f"/v1/jobs/long/runs/{run['id']}", via=new)
    assert after["status"] == "ACTIVE" and [t["id"] for t in after["tasks"]] == [task_id]
    assert after["tasks"][0]["status"] == "TASK_RUNNING"
    tasks = our_framework_tasks(d, framework_id)
    assert [(t["id"], t["state"]) for t in tasks] == [(task_id, "TASK_RUNNING")]
    assert len([f for f in d.master_state()["frameworks"] if f.get("active", True)]) == 1
    # The new leader acts: a new run launches, and stopping the old one kills its task.
    second = start_long_run(d, "after-failover")
    assert second["tasks"][0]["id"] != task_id
    assert d.api("POST", f"/v1/jobs/long/runs/{run['id']}/actions/stop", via=new)[0] in (200, 202)
    wait_for(lambda: d.api("GET", f"/v1/jobs/long/runs/{run['id']}")[1]["tasks"][0]["status"] == "TASK_KILLED",
             timeout=30, what="the old run's task killed by the new leader")
    assert task_id not in {t["id"] for t in our_framework_tasks(d, framework_id) if t["state"] == "TASK_RUNNING"}


def test_a_leader_that_loses_its_node_stops_acting(deploy) -> None:
    d = deploy(agents=1)
    old = d.wait_leader()
    election = election_url(d.scheduler_zk)
    client = KazooClient(hosts=election.servers)
    client.start(timeout=10)
    try:
        members = sorted(client.get_children(election.path))
        data, _ = client.get(f"{election.path}/{members[0]}")
        assert json.loads(data)["address"] == old.address
        client.delete(f"{election.path}/{members[0]}")
    finally:
        client.stop()
        client.close()
    wait_for(lambda: not old.alive(), timeout=15, what="the deposed leader to exit")
    assert old.process.popen.returncode == 3
    new = d.wait_leader(other_than=old.index, timeout=30)
    assert new.call("/v2/leader")[1] == {"leader": new.address}


def test_abdication_hands_leadership_over(deploy) -> None:
    d = deploy(agents=1)
    old = d.wait_leader()
    follower = d.follower()
    status, payload, _ = follower.call("/v2/leader", "DELETE")  # forwarded to the leader
    assert status == 200 and payload == {"message": "Leadership abdicated"}
    wait_for(lambda: not old.alive(), timeout=15, what="the abdicating leader to exit")
    assert d.wait_leader(timeout=30).index == follower.index


def test_state_survives_a_zookeeper_restart(deploy) -> None:
    d = deploy(agents=1)
    leader = d.wait_leader()
    run = start_long_run(d, "before-restart")
    d.zk.restart()
    # Sessions survive a quick ZooKeeper restart: the same leader keeps its state and goes on.
    assert d.wait_leader(timeout=30).index == leader.index
    _, jobs = d.api("GET", "/v1/jobs")
    assert [j["id"] for j in jobs] == ["before-restart"]
    _, after = d.api("GET", f"/v1/jobs/before-restart/runs/{run['id']}")
    assert after["tasks"][0]["status"] == "TASK_RUNNING"
    # Writes work again once the store's own session has reconnected (a client retries).
    wait_for(lambda: d.api("PUT", "/v1/jobs/before-restart", job("before-restart", "sleep 600"))[0] == 200,
             timeout=30, what="a write accepted after the restart")
    second = start_long_run(d, "after-restart")
    assert second["status"] == "ACTIVE"
    assert leader.alive() and d.leader().index == leader.index


def test_a_leader_whose_session_expires_exits_and_returns_as_a_follower(deploy) -> None:
    """A leader frozen past its ZooKeeper session timeout (10 s) is replaced; when it
    wakes it must not act: it exits (code 3) and, restarted by its supervisor, follows. Its app
    keeps exactly its instances throughout."""
    import os
    import signal

    from tests.faults.harness import check_apps_converged, converge

    d = deploy(agents=1)
    old = d.wait_leader()
    assert d.api("POST", "/v2/apps", {"id": "/steady", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                       "instances": 2})[0] == 201
    assert converge(lambda: check_apps_converged(d, {"/steady": 2}), 30, "apps") == []
    before = {t["id"] for t in d.api("GET", "/v2/apps/steady/tasks")[1]["tasks"]}
    os.kill(old.process.pid, signal.SIGSTOP)
    try:
        new = d.wait_leader(other_than=old.index, timeout=40)  # only ZooKeeper can depose it
    finally:
        os.kill(old.process.pid, signal.SIGCONT)
    wait_for(lambda: not old.alive(), timeout=20, what="the expired leader to exit")
    assert old.process.popen.returncode == 3
    assert d.supervise() == [f"scheduler {old.index}"]
    assert (old.health() or {}).get("role") == "standby"
    assert d.wait_leader().index == new.index
    assert converge(lambda: check_apps_converged(d, {"/steady": 2}), 30, "apps") == []
    assert {t["id"] for t in d.api("GET", "/v2/apps/steady/tasks")[1]["tasks"]} == before  # none replaced
