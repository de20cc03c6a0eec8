"""MesosExecutorDriver in a real executor process launched by the embedded agent."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from framework.mesos.executor import ExecutorDriverError, ExecutorEnvironment, MesosExecutorDriver
from framework.mesos.interface import Executor
from tests.support.cluster import Cluster
from tests.support.procs import wait_for

from .conftest import Recorder, echo_executor_info, echo_task, framework_info, new_id

AGENT_ENV = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "F-0000",
             "MESOS_EXECUTOR_ID": "e1", "MESOS_DIRECTORY": "/var/sandbox"}


def pid_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_environment_defaults_and_checkpoint_flag() -> None:
    env = ExecutorEnvironment.from_environ(dict(AGENT_ENV, MESOS_CHECKPOINT="0"))
    assert env.checkpoint is False                 # pymesos reads "0" as true; we do not
    assert env.sandbox == "/var/sandbox"           # MESOS_SANDBOX defaults to the directory
    assert env.recovery_timeout == 15 * 60 and env.subscription_backoff_max == 2.0
    assert env.shutdown_grace_period == 5.0
    env = ExecutorEnvironment.from_environ(dict(
        AGENT_ENV, MESOS_CHECKPOINT="1", MESOS_SANDBOX="/mnt/mesos/sandbox",
        MESOS_RECOVERY_TIMEOUT="30secs", MESOS_SUBSCRIPTION_BACKOFF_MAX="500ms",
        MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD="3secs"))
    assert env.checkpoint and env.sandbox == "/mnt/mesos/sandbox"
    assert (env.recovery_timeout, env.subscription_backoff_max, env.shutdown_grace_period) == (30, 0.5, 3)


def test_missing_agent_environment_is_a_clear_error() -> None:
    with pytest.raises(ExecutorDriverError, match="MESOS_AGENT_ENDPOINT"):
        MesosExecutorDriver(Executor(), env={"MESOS_FRAMEWORK_ID": "F", "MESOS_EXECUTOR_ID": "e"})


def test_status_update_fields_are_filled_and_kept_until_acknowledged() -> None:
    driver = MesosExecutorDriver(Executor(), env=AGENT_ENV)
    status = {"task_id": {"value": "t1"}, "state": "TASK_RUNNING"}
    driver.sendStatusUpdate(status)                # not subscribed: kept for the next SUBSCRIBE
    assert status["source"] == "SOURCE_EXECUTOR" and status["timestamp"] > 0
    assert len(base64.b64decode(status["uuid"])) == 16
    assert [u["uuid"] for u in driver.unacknowledged_updates()] == [status["uuid"]]


def test_custom_executor_lifecycle(cluster, drivers) -> None:  # noqa: ANN001
    rec = Recorder()
    driver = drivers(rec, cluster)
    driver.start()
    framework_id = rec.wait_named("registered")[0].value
    offer = rec.take_offer()
    executor = echo_executor_info(new_id("echo"))
    sleeper = new_id("sleeper")
    driver.launchTasks(offer.id, [echo_task(offer, sleeper, executor)], {"refuse_seconds": 0})

    hello = rec.wait_message("registered", timeout=30)
    assert hello["executor_id"] == executor["executor_id"]["value"]
    assert hello["framework_id"] == framework_id and hello["agent_hostname"] == "agent0"
    assert hello["checkpoint"] is False and hello["env"]["MESOS_CHECKPOINT"] == "0"
    assert hello["env"]["MESOS_AGENT_ENDPOINT"] == cluster.agent_address(0)
    assert Path(hello["env"]["MESOS_DIRECTORY"]).is_dir()

    running = rec.wait_status(sleeper, "TASK_RUNNING")
    assert running.source == "SOURCE_EXECUTOR" and running.uuid
    assert running.executor_id.value == executor["executor_id"]["value"]

    # Messages both ways, and the agent's ACKNOWLEDGED empties the executor's buffer.
    agent_id = offer.agent_id
    mark = rec.mark()
    driver.sendFrameworkMessage(executor["executor_id"], agent_id, b"ping")
    rec.wait_message("pong", start=mark)

    def nothing_unacked() -> bool:
        start = rec.mark()
        driver.sendFrameworkMessage(executor["executor_id"], agent_id, b"unacked")
        return rec.wait_message("unacked", start=start)["count"] == 0
    wait_for(nothing_unacked, timeout=20, interval=0.2, what="ACKNOWLEDGED for every update")

    # A second task goes to the same executor.
    quick = new_id("quick")
    second_offer = rec.take_offer()
    driver.launchTasks(second_offer.id, [echo_task(second_offer, quick, executor, finish=True)])
    rec.wait_status(quick, "TASK_FINISHED")
    assert rec.count("message") >= 1 and len([m for m in rec.events if m[0] == "message"
                                              and m[1][2].get("event") == "registered"]) == 1

    driver.killTask({"value": sleeper}, agent_id=agent_id,
                    kill_policy={"grace_period": {"nanoseconds": 250_000_000}})
    killed = rec.wait_status(sleeper, "TASK_KILLED")
    assert "250000000" in killed.message          # the KILL's kill_policy reached the executor

    # SHUTDOWN: the executor kills what runs and exits.
    last = new_id("last")
    third_offer = rec.take_offer()
    driver.launchTasks(third_offer.id, [echo_task(third_offer, last, executor)])
    rec.wait_status(last, "TASK_RUNNING")
    driver.shutdownExecutor(executor["executor_id"], agent_id)
    rec.wait_status(last, "TASK_KILLED")
    wait_for(lambda: pid_gone(hello["pid"]), timeout=20, what="executor process exit")


def test_without_checkpoint_executor_exits_when_agent_dies(tmp_path, drivers) -> None:  # noqa: ANN001
    with Cluster(tmp_path, agents=1).start() as cluster:
        rec = Recorder()
        driver = drivers(rec, cluster)
        driver.start()
        offer = rec.take_offer()
        task_id = new_id("orphan")
        driver.launchTasks(offer.id, [echo_task(offer, task_id, echo_executor_info(new_id("echo")))])
        pid = rec.wait_message("registered", timeout=30)["pid"]
        rec.wait_status(task_id, "TASK_RUNNING")
        cluster.kill_agent(0)
        wait_for(lambda: pid_gone(pid), timeout=20, what="executor exit after losing its agent")


def test_with_checkpoint_updates_survive_an_agent_restart(tmp_path, drivers) -> None:  # noqa: ANN001
    with Cluster(tmp_path, agents=1).start() as cluster:
        rec = Recorder()
        driver = drivers(rec, cluster, framework_info(checkpoint=True, failover_timeout=60.0))
        driver.start()
        offer = rec.take_offer()
        task_id = new_id("durable")
        driver.launchTasks(offer.id, [echo_task(offer, task_id, echo_executor_info(new_id("echo")),
                                                finish_on_disconnect=True)])
        hello = rec.wait_message("registered", timeout=30)
        assert hello["checkpoint"] is True and hello["env"]["MESOS_CHECKPOINT"] == "1"
        assert "MESOS_RECOVERY_TIMEOUT" in hello["env"]
        rec.wait_status(task_id, "TASK_RUNNING")

        cluster.kill_agent(0)
        # While the agent is away the executor finishes its task; the update waits in
        # the driver and travels in the next SUBSCRIBE.
        mark = rec.mark()
        cluster.start_agent(0)

        def back_or_gone() -> str | None:
            with rec.cond:
                if any(e[0] == "message" and e[1][2]["event"] == "reregistered" for e in rec.events[mark:]):
                    return "reregistered"
            return "executor exited" if pid_gone(hello["pid"]) else None
        outcome = wait_for(back_or_gone, timeout=30, what="the executor to re-subscribe")
        assert outcome == "reregistered", "the restarted agent did not take its executor back"
        finished = rec.wait_status(task_id, "TASK_FINISHED", timeout=30)
        assert finished.message == "finished while the agent was away"
        assert not pid_gone(hello["pid"])
