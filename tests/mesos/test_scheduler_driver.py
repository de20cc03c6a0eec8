"""MesosSchedulerDriver against the real embedded master and agent processes."""
from __future__ import annotations

import os
import signal

import pytest

from framework.errors import MesosError
from framework.mesos.scheduler import DRIVER_ABORTED, DRIVER_STOPPED, MesosSchedulerDriver
from tests.support.cluster import Cluster
from tests.support.procs import wait_for

from .conftest import Recorder, command_task, framework_info, new_id, scalar


def frameworks(cluster: Cluster) -> tuple[set[str], set[str]]:
    state = cluster.state()
    return ({f["id"] for f in state.get("frameworks", [])},
            {f["id"] for f in state.get("completed_frameworks", [])})


def test_subscribe_registers_and_offers_arrive(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    framework_id, master_info = rec.wait_named("registered")
    assert framework_id.value and driver.framework_id == framework_id.value
    assert master_info.port == cluster.master_ports[0]
    assert driver.connected and driver.stream_id
    assert framework_id.value in frameworks(cluster)[0]
    offer = rec.take_offer()
    assert offer.framework_id.value == framework_id.value
    assert offer.hostname == "agent0"
    names = {r.name for r in offer.resources}
    assert {"cpus", "mem"} <= names


def test_launch_command_task_runs_to_finished_and_is_acknowledged(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    offer = rec.take_offer()
    task_id = new_id("finish")
    driver.launchTasks(offer.id, [command_task(offer, task_id, "exit 0")], {"refuse_seconds": 0})
    finished = rec.wait_status(task_id, "TASK_FINISHED")
    assert finished.uuid and finished.agent_id.value == offer.agent_id.value
    states = [s.state for s in rec.statuses(task_id)]
    assert "TASK_RUNNING" in states and states[-1] == "TASK_FINISHED"
    # Implicit ACKs went out: the master forgets a task once its terminal update is
    # acknowledged, so explicit reconciliation ends up answering "unknown".
    def forgotten() -> bool:
        mark = rec.mark()
        driver.reconcileTasks([{"task_id": {"value": task_id}, "agent_id": offer.agent_id}])
        answer = rec.wait(lambda e: e[0] == "update" and e[1][0].task_id.value == task_id,
                          start=mark, what="reconcile answer")[1][0]
        assert answer.reason == "REASON_RECONCILIATION" and not answer.uuid
        return answer.state in ("TASK_LOST", "TASK_GONE")
    wait_for(forgotten, timeout=10, interval=0.1, what="the master to forget the acknowledged task")


def test_explicit_acknowledgement(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster, implicit_acknowledgements=False)
    driver.start()
    offer = rec.take_offer()
    task_id = new_id("explicit")
    driver.launchTasks(offer.id, [command_task(offer, task_id, "exit 0")])
    # The agent sends a task's next update only once the previous one is acknowledged.
    mark = 0
    while True:
        event = rec.wait(lambda e: e[0] == "update" and e[1][0].task_id.value == task_id
                         and bool(e[1][0].uuid), start=mark, what=f"next update of {task_id}")
        with rec.cond:
            mark = rec.events.index(event) + 1
        status = event[1][0]
        if status.state == "TASK_FINISHED":
            break
        driver.acknowledgeStatusUpdate(status)

    def reconcile_answer() -> str:
        start = rec.mark()
        driver.reconcileTasks([{"task_id": {"value": task_id}, "agent_id": offer.agent_id}])
        return rec.wait(lambda e: e[0] == "update" and e[1][0].task_id.value == task_id
                        and e[1][0].reason == "REASON_RECONCILIATION",
                        start=start, what="reconcile answer")[1][0].state

    # The terminal update is not acknowledged yet: the master still holds the task.
    assert reconcile_answer() == "TASK_FINISHED"
    driver.acknowledgeStatusUpdate(status)
    wait_for(lambda: reconcile_answer() in ("TASK_LOST", "TASK_GONE"), timeout=10, interval=0.1,
             what="the master to forget the acknowledged task")


def test_failed_command_reports_exit_status(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    offer = rec.take_offer()
    task_id = new_id("fail")
    driver.launchTasks([offer.id], [command_task(offer, task_id, "exit 3")])
    failed = rec.wait_status(task_id, "TASK_FAILED")
    assert "3" in failed.message


def test_kill_with_kill_policy_and_implicit_reconcile(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    offer = rec.take_offer()
    task_id = new_id("sleeper")
    driver.launchTasks(offer.id, [command_task(offer, task_id, "sleep 60")])
    rec.wait_status(task_id, "TASK_RUNNING")

    mark = rec.mark()
    driver.reconcileTasks([])
    running = rec.wait_status(task_id, "TASK_RUNNING", start=mark)
    assert running.reason == "REASON_RECONCILIATION" and running.source == "SOURCE_MASTER"

    driver.killTask({"value": task_id}, agent_id=offer.agent_id,
                    kill_policy={"grace_period": {"nanoseconds": 500_000_000}})
    killed = rec.wait_status(task_id, "TASK_KILLED")
    assert killed.uuid


def test_launch_group_with_default_executor(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    offer = rec.take_offer()
    first, second = new_id("g1"), new_id("g2")
    executor = {"type": "DEFAULT", "executor_id": {"value": new_id("group")},
                "resources": [scalar("cpus", 0.1), scalar("mem", 32), scalar("disk", 10)]}
    tasks = [command_task(offer, first, "exit 0"), command_task(offer, second, "exit 0")]
    driver.launchTaskGroup(offer.id, executor, tasks)
    for task_id in (first, second):
        rec.wait_status(task_id, "TASK_FINISHED", timeout=30)


def test_invalid_offer_gives_task_lost_from_master(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    offer = rec.take_offer()
    task_id = new_id("stale")
    bogus = {"value": offer.id.value + "-gone"}
    driver.launchTasks(bogus, [command_task(offer, task_id, "exit 0")])
    lost = rec.wait_status(task_id, "TASK_LOST")
    assert lost.reason == "REASON_INVALID_OFFERS" and not lost.uuid


def test_decline_filters_and_revive(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    offer = rec.take_offer()
    driver.declineOffer(offer.id, {"refuse_seconds": 0})
    again = rec.take_offer(timeout=10)        # no filter: back at the next allocation
    assert again.id.value != offer.id.value

    driver.declineOffer([again.id], {"refuse_seconds": 3600})
    mark = rec.mark()
    driver.reviveOffers()                      # clears the hour-long filter at once
    revived = rec.wait(lambda e: e[0] == "offers", start=mark, timeout=10, what="revived offer")
    assert revived[1][0][0].agent_id.value == offer.agent_id.value


def test_suppress_stops_offers_until_revive(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    offer = rec.take_offer()
    driver.suppressOffers()
    mark = rec.mark()
    driver.declineOffer(offer.id, {"refuse_seconds": 0})
    # Suppressed: several allocation rounds (0.2 s each) pass without an offer.
    with pytest.raises(TimeoutError):
        rec.wait_named("offers", timeout=1.5, start=mark)
    driver.reviveOffers()
    rec.take_offer(timeout=10)


def test_calls_before_subscription_are_queued_and_sent(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    task_id = new_id("never-launched")
    driver.killTask({"value": task_id})        # queued: not started yet
    driver.start()
    rec.wait_named("registered")
    lost = rec.wait(lambda e: e[0] == "update" and e[1][0].task_id.value == task_id,
                    what="answer to the queued KILL")[1][0]
    assert lost.state in ("TASK_LOST", "TASK_UNKNOWN", "TASK_GONE")
    assert lost.reason == "REASON_RECONCILIATION"


def test_calls_after_stop_raise(cluster) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = MesosSchedulerDriver(rec, framework_info(), cluster.master_address,
                                  **cluster.master_api().driver_options())
    driver.start()
    rec.wait_named("registered")
    assert driver.stop() == DRIVER_STOPPED
    assert driver.join(5) == DRIVER_STOPPED
    with pytest.raises(MesosError, match="DRIVER_STOPPED"):
        driver.reviveOffers()


def test_stop_tears_down_and_failover_keeps_tasks(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    first = drivers(rec, cluster, framework_info(failover_timeout=60.0))
    first.start()
    framework_id = rec.wait_named("registered")[0].value
    offer = rec.take_offer()
    task_id = new_id("survivor")
    first.launchTasks(offer.id, [command_task(offer, task_id, "sleep 60")])
    rec.wait_status(task_id, "TASK_RUNNING")
    first.stop(failover=True)                  # disconnect only: no TEARDOWN

    assert framework_id in frameworks(cluster)[0]
    rec2 = Recorder()
    second = drivers(rec2, cluster,
                     framework_info(failover_timeout=60.0, id={"value": framework_id}))
    second.start()
    rec2.wait_named("reregistered")
    assert second.framework_id == framework_id
    second.reconcileTasks([{"task_id": {"value": task_id}}])
    rec2.wait_status(task_id, "TASK_RUNNING")

    second.stop()                              # TEARDOWN: the framework and its task go
    assert framework_id in frameworks(cluster)[1]
    assert framework_id not in frameworks(cluster)[0]

    rec3 = Recorder()
    third = drivers(rec3, cluster, framework_info(id={"value": framework_id}))
    third.start()
    message = rec3.wait_named("error")[0]
    assert "removed" in message.lower()
    assert third.join(10) == DRIVER_ABORTED


def test_heartbeats_keep_the_stream_and_silence_kills_it(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    # Dead after 3 x the interval the master announces (0.3 s here, 15 s by default).
    driver = drivers(rec, cluster, heartbeat_factor=3,
                     backoff_initial=0.2, backoff_max=0.5)
    driver.start()
    framework_id = rec.wait_named("registered")[0].value
    # Heartbeats flow: well past 0.9 s of them, the stream is still the first one.
    rec.wait(lambda e: rec.count("heartbeat") >= 6, timeout=10, what="six heartbeats")
    assert rec.count("disconnected") == 0
    master = cluster.masters[0]
    assert master is not None
    # The master goes silent (stopped, its socket still open): no EOF, just no events.
    mark = rec.mark()
    os.kill(master.pid, signal.SIGSTOP)
    try:
        rec.wait_named("disconnected", timeout=10, start=mark)
    finally:
        os.kill(master.pid, signal.SIGCONT)
    rec.wait_named("reregistered", timeout=20, start=mark)
    assert driver.framework_id == framework_id and driver.connected


def test_redirect_and_zk_failover(tmp_path, zk, drivers) -> None:  # noqa: ANN001
    zk_url = zk.url(f"/mesos-{new_id('ha')}")
    with Cluster(tmp_path, agents=1, masters=2, zk_url=zk_url).start() as cluster:
        leader = cluster.leader()
        assert leader is not None
        follower_index = 1 if leader.endswith(f":{cluster.master_ports[0]}") else 0
        follower = f"127.0.0.1:{cluster.master_ports[follower_index]}"

        # A non-leading master answers 307 //leader; the driver follows it.
        rec = Recorder()
        via_follower = drivers(rec, cluster, master=follower, backoff_initial=0.2, backoff_max=1.0)
        via_follower.start()
        rec.wait_named("registered")
        assert via_follower.master == leader

        # With zk:// the driver follows the leader when it dies.
        rec2 = Recorder()
        via_zk = drivers(rec2, cluster, framework_info(failover_timeout=60.0), master=zk_url,
                         backoff_initial=0.2, backoff_max=1.0)
        via_zk.start()
        framework_id = rec2.wait_named("registered")[0].value
        assert via_zk.master == leader
        cluster.stop_master(1 - follower_index)
        rec2.wait_named("reregistered", timeout=30)
        assert via_zk.master == follower
        assert via_zk.framework_id == framework_id


@pytest.mark.slow
def test_failover_resubscribe_soak(cluster) -> None:  # noqa: ANN001
    """Many disconnect/re-subscribe/teardown rounds: each TEARDOWN must find the
    re-subscribed framework subscribed (an intermittent 403 was seen once)."""
    for _ in range(30):
        rec = Recorder()
        first = MesosSchedulerDriver(rec, framework_info(failover_timeout=60.0), cluster.master_address,
                                     **cluster.master_api().driver_options())
        first.start()
        framework_id = rec.wait_named("registered")[0].value
        offer = rec.take_offer()
        task_id = new_id("soak")
        first.launchTasks(offer.id, [command_task(offer, task_id, "sleep 60")])
        rec.wait_status(task_id, "TASK_RUNNING")
        first.stop(failover=True)

        rec2 = Recorder()
        second = MesosSchedulerDriver(rec2, framework_info(failover_timeout=60.0, id={"value": framework_id}),
                                      cluster.master_address, **cluster.master_api().driver_options())
        second.start()
        rec2.wait_named("reregistered")
        second.teardown()                     # raises MesosError on a 403
        wait_for(lambda: framework_id in frameworks(cluster)[1], timeout=10, what="teardown")
        second.stop()
