"""The core and the jobs manager together, driven by Mesos events the test writes.

The driver is a recorder (the Mesos edge is tested against real processes in
tests/jobs); the clock is the test's. Everything else is real: the embedded
store, the state machine, placement, the jobs manager.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from framework.errors import StoreError
from framework.store import open_store
from scheduler.api.errors import render_error
from scheduler.core import Core, CoreConfig
from scheduler.jobs.manager import JobManager
from scheduler.jobs.specs import SpecInvalid, parse_job
from scheduler.tasks import State


class RecordingDriver:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> None:
            record = self.core.get(args[0]["task_id"]["value"]) if name == "acknowledgeStatusUpdate" else None
            if record is not None:  # the store must already hold the update being acknowledged
                raw, _ = self.core.store.get(f"/tasks/{record.task_id}")
                assert json.loads(raw)["state"] == args[0]["state"]
            self.calls.append((name, args))
        return call

    def named(self, name: str) -> list[tuple]:
        return [args for call, args in self.calls if call == name]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def offer(n: int, agent: str = "S1", cpus: float = 4, mem: float = 4096) -> dict:
    return {"id": {"value": f"O{n}"}, "agent_id": {"value": agent}, "hostname": agent.lower(),
            "url": {"scheme": "http", "address": {"ip": "127.0.0.1", "port": 5051}},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
                          {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31010}]}}]}


def make_world(store: Any) -> tuple[Clock, Core, RecordingDriver, JobManager]:
    """A subscribed core and a jobs manager over `store`, driven by the test."""
    clock = Clock()
    core = Core(store, CoreConfig(), clock=clock)
    driver = RecordingDriver(core)
    core.attach(driver)
    core.handle_subscribed({"framework_id": "F1"})
    return clock, core, driver, JobManager(store, core, clock=clock)


@pytest.fixture
def world(tmp_path: Path):
    return make_world(open_store(tmp_path))


def launched(driver: RecordingDriver) -> list[dict]:
    out = []
    for ids, operations, filters in driver.named("acceptOffers"):
        for operation in operations:
            out.extend(operation["launch"]["task_infos"])
    return out


def status(task_id: str, state: str, message: str = "") -> dict:
    return {"task_id": {"value": task_id}, "state": state, "message": message,
            "agent_id": {"value": "S1"}, "uuid": base64.b64encode(b"0123456789abcdef").decode()}


def finish(core: Core, task_id: str, state: str, message: str = "") -> None:
    for step in ("TASK_STARTING", "TASK_RUNNING", state):
        core.handle_status(status(task_id, step, message if step == state else ""))


def test_idle_scheduler_holds_offers_then_declines_them_long_and_suppresses(world) -> None:
    clock, core, driver, jobs = world
    assert driver.named("suppressOffers")
    core.handle_offers([offer(1)])
    assert not driver.named("declineOffer"), "an idle offer is held a while, not declined at once"
    core.config.offer_hold_seconds = 0.0
    core.handle_offers([offer(2)])  # held until now: both go at the next release
    suppressions = len(driver.named("suppressOffers"))
    core._release_held()
    declined = [o["value"] for ids, _ in driver.named("declineOffer") for o in ids]
    ids, filters = driver.named("declineOffer")[-1]
    assert filters["refuse_seconds"] >= 3600
    assert "O2" in declined
    assert len(driver.named("suppressOffers")) >= suppressions


def test_work_submitted_while_holding_an_offer_launches_on_it_without_a_revive(world) -> None:
    clock, core, driver, jobs = world
    core.handle_offers([offer(1)])  # nothing waits: held
    revives = len(driver.named("reviveOffers"))
    jobs.create_job(parse_job({"id": "quick", "run": {"cmd": "true", "cpus": 0.5, "mem": 64}}))
    jobs.start_run("quick")
    kind, payload = core._events.get_nowait()  # the submit asked the core for a round on held offers
    assert (kind, payload) == ("offers", [])
    core.handle_offers(payload)
    assert [t["name"] for t in launched(driver)] and len(driver.named("reviveOffers")) == revives
    ids, operations, filters = driver.named("acceptOffers")[-1]
    assert [o["value"] for o in ids] == ["O1"]
    assert filters["refuse_seconds"] == 0, "what the ACCEPT leaves comes straight back to be held"


def test_submit_revives_and_launch_acks_after_store(world) -> None:
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "hello", "run": {"cmd": "echo hi", "cpus": 0.5, "mem": 64}}))
    run = jobs.start_run("hello")
    assert driver.named("reviveOffers")
    core.handle_offers([offer(1)])
    [info] = launched(driver)
    assert info["command"]["value"] == "echo hi"
    env = {v["name"]: v["value"] for v in info["command"]["environment"]["variables"]}
    assert env["DOCKYARD_INSTANCE_INDEX"] == "0" and env["DOCKYARD_RUN_ID"] == run.id
    finish(core, info["task_id"]["value"], "TASK_FINISHED", "Command exited with status 0")
    assert len(driver.named("acknowledgeStatusUpdate")) == 3
    assert run.status == "SUCCESS" and run.tasks[0].exit_code == 0
    assert jobs.job_state("hello").success_count == 1
    assert core.get(info["task_id"]["value"]).state == State.FINISHED


def test_on_failure_retries_with_backoff_then_succeeds(world) -> None:
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "flaky", "run": {"cmd": "x", "cpus": 0.1, "mem": 32,
                                                       "restart": {"policy": "ON_FAILURE", "backoffSeconds": 2}}}))
    run = jobs.start_run("flaky")
    for attempt, delay in ((1, 2.0), (2, 4.0)):
        core.handle_offers([offer(attempt)])
        task_id = launched(driver)[-1]["task_id"]["value"]
        assert task_id.endswith(f".0.{attempt}")
        finish(core, task_id, "TASK_FAILED", "Command exited with status 1")
        assert run.status != "FAILED" and run.retry_at[0] == pytest.approx(clock.now + delay)
        jobs.tick(clock.now + delay - 0.1)
        assert len(run.tasks) == attempt  # not yet
        clock.now += delay
        jobs.tick()
        assert len(run.tasks) == attempt + 1
    core.handle_offers([offer(9)])
    finish(core, launched(driver)[-1]["task_id"]["value"], "TASK_FINISHED")
    assert run.status == "SUCCESS" and [t.attempt for t in run.tasks] == [1, 2, 3]


def test_never_policy_fails_once_with_exit_code(world) -> None:
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "bad", "run": {"cmd": "exit 7", "cpus": 0.1, "mem": 32}}))
    run = jobs.start_run("bad")
    core.handle_offers([offer(1)])
    task_id = launched(driver)[-1]["task_id"]["value"]
    finish(core, task_id, "TASK_FAILED", "Command exited with status 7")
    core.handle_status(status(task_id, "TASK_FAILED", "Command exited with status 7"))  # a resend
    assert run.status == "FAILED" and run.tasks[0].exit_code == 7
    assert jobs.job_state("bad").failure_count == 1


def test_active_deadline_kills_at_the_deadline(world) -> None:
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "slow", "run": {"cmd": "sleep 100", "cpus": 0.1, "mem": 32,
                                                      "restart": {"activeDeadlineSeconds": 5}}}))
    run = jobs.start_run("slow")
    core.handle_offers([offer(1)])
    task_id = launched(driver)[-1]["task_id"]["value"]
    core.handle_status(status(task_id, "TASK_RUNNING"))
    jobs.tick(clock.now + 4.9)
    assert run.status == "ACTIVE" and not driver.named("killTask")
    clock.now += 5
    jobs.tick()
    assert run.status == "FAILED" and "activeDeadlineSeconds" in run.reason
    assert driver.named("killTask")[0][0] == {"value": task_id}
    core.handle_status(status(task_id, "TASK_KILLED"))
    assert run.tasks[0].status == "TASK_KILLED" and jobs.job_state("slow").failure_count == 1


def test_array_job_instances_see_their_index(world) -> None:
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "arr", "run": {"cmd": "echo $DOCKYARD_INSTANCE_INDEX", "cpus": 0.1,
                                                     "mem": 32, "instances": 3}}))
    run = jobs.start_run("arr")
    core.handle_offers([offer(1)])
    infos = launched(driver)
    indexes = sorted(int({v["name"]: v["value"] for v in i["command"]["environment"]["variables"]}
                         ["DOCKYARD_INSTANCE_INDEX"]) for i in infos)
    assert indexes == [0, 1, 2]
    for info in infos[:2]:
        finish(core, info["task_id"]["value"], "TASK_FINISHED")
    assert run.status == "ACTIVE"
    finish(core, infos[2]["task_id"]["value"], "TASK_FINISHED")
    assert run.status == "SUCCESS"


def test_unplaceable_run_says_why(world) -> None:
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "huge", "run": {"cmd": "true", "cpus": 0.1, "mem": 1_000_000}}))
    run = jobs.start_run("huge")
    core.handle_offers([offer(1)])
    assert not launched(driver)
    jobs.tick()
    assert "mem" in run.waiting.lower() or "memory" in run.waiting.lower(), run.waiting


def test_work_after_an_unplaceable_run_revives_the_agents_its_refusal_hid(world) -> None:
    """A run no agent can take gets its offers declined for long (they are hidden from us
    until the refusal ends); it is stopped while that refusal still waits in the outbox, and new
    work comes: it must REVIVE, or it waits the whole refusal out while the framework is not
    even suppressed."""
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "huge", "run": {"cmd": "true", "cpus": 0.1, "mem": 1_000_000}}))
    run = jobs.start_run("huge")
    core.handle_offers([offer(1)])
    ids, filters = driver.named("declineOffer")[-1]
    assert filters["refuse_seconds"] > 60 and not launched(driver)
    jobs.stop_run("huge", run.id)
    # the outbox sends a last round's DECLINE only now: nothing waits, so nothing revives yet
    core._decline([{"value": "O1"}], dict(filters))
    revives = len(driver.named("reviveOffers"))
    jobs.create_job(parse_job({"id": "small", "run": {"cmd": "true", "cpus": 0.1, "mem": 64}}))
    jobs.start_run("small")
    assert len(driver.named("reviveOffers")) == revives + 1
    core.handle_offers([offer(2)])
    assert [t["name"] for t in launched(driver)]


def test_dependency_cycle_is_refused_and_diamond_runs_in_order(world) -> None:
    clock, core, driver, jobs = world
    for job_id, parents in (("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])):
        jobs.create_job(parse_job({"id": job_id, "run": {"cmd": job_id, "cpus": 0.1, "mem": 32},
                                   "dependencies": [{"id": p} for p in parents]}))
    with pytest.raises(SpecInvalid) as caught:
        jobs.put_job(parse_job({"id": "a", "run": {"cmd": "a", "cpus": 0.1, "mem": 32},
                                "dependencies": [{"id": "d"}]}))
    assert caught.value.details[0]["path"] == "/dependencies"
    order = []
    jobs.start_run("a")
    for _ in range(4):
        core.handle_offers([offer(len(order) + 1)])
        infos = launched(driver)[len(order):]
        for info in infos:
            order.append(info["command"]["value"])
        for info in infos:
            finish(core, info["task_id"]["value"], "TASK_FINISHED")
            clock.now += 1
    assert order[0] == "a" and set(order[1:3]) == {"b", "c"} and order[3] == "d"


def test_explicit_then_implicit_reconciliation_after_subscribe(world, tmp_path: Path) -> None:
    clock, core, driver, jobs = world
    jobs.create_job(parse_job({"id": "r", "run": {"cmd": "sleep 9", "cpus": 0.1, "mem": 32}}))
    jobs.start_run("r")
    core.handle_offers([offer(1)])
    task_id = launched(driver)[-1]["task_id"]["value"]
    # a restarted scheduler: a new core and manager over the same store
    core2 = Core(core.store, CoreConfig(reconcile_delay=0.01), clock=clock)
    assert core2.load() == 1 and core2.framework_id == "F1"
    driver2 = RecordingDriver(core2)
    core2.attach(driver2)
    jobs2 = JobManager(core.store, core2, clock=clock)
    jobs2.load()
    core2.handle_subscribed({"framework_id": "F1"})
    [tasks] = driver2.named("reconcileTasks")[0]
    assert tasks == [{"task_id": {"value": task_id}, "agent_id": {"value": "S1"}}]
    core2.reconcile_implicit()
    assert driver2.named("reconcileTasks")[-1] == ([],)
    core2.handle_status({"task_id": {"value": task_id}, "state": "TASK_LOST", "agent_id": {"value": "S1"}})
    assert jobs2.finished_runs("r")[0].status == "FAILED"
    core2.stop()


def test_unknown_running_task_is_killed(world) -> None:
    clock, core, driver, jobs = world
    core.handle_status(status("stranger", "TASK_RUNNING"))
    assert driver.named("killTask")[0][0] == {"value": "stranger"}
    assert driver.named("acknowledgeStatusUpdate")


def test_fires_missed_while_down_start_one_run_and_are_counted(world) -> None:
    clock, core, driver, jobs = world
    clock.now = 1_800_000_030.0  # hh:mm:30
    jobs.create_job(parse_job({"id": "cron", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}, "schedules": [
        {"id": "m", "cron": "* * * * *", "startingDeadlineSeconds": 300}]}))
    jobs.tick()
    assert not jobs.active_runs("cron")
    # the scheduler is down for ten minutes; a new one reads the same store
    clock.now += 600
    core2 = Core(core.store, CoreConfig(), clock=clock)
    core2.load()
    jobs2 = JobManager(core.store, core2, clock=clock)
    jobs2.load()
    jobs2.tick()
    jobs2.tick()
    runs = jobs2.active_runs("cron")
    assert len(runs) == 1 and runs[0].trigger == "schedule:m"
    stats = jobs2.states["cron"].schedule_stats["m"]
    assert stats["fired"] == 1 and stats["missed"] == 9


class FlakyStore:
    """The embedded store, with writes that fail as StoreError while `down` is set: an
    outage of the store at an exact moment, which a real ZooKeeper cannot time."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False
        self.refused = ""  # or only the writes to keys under this prefix fail

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name in ("put", "put_lazy", "delete") and callable(attribute):
            def write(*args: Any, **kwargs: Any) -> Any:
                if self.down or (self.refused and str(args[0]).startswith(self.refused)):
                    raise StoreError("cannot write: store unavailable (test outage)")
                return attribute(*args, **kwargs)
            return write
        return attribute


@pytest.fixture
def flaky(tmp_path: Path):
    store = FlakyStore(open_store(tmp_path))
    _, core, driver, jobs = make_world(store)
    return store, core, driver, jobs


def running(core: Core, driver: RecordingDriver, jobs: JobManager, job_id: str) -> tuple[Any, str]:
    """A one-task run of `job_id`, launched and RUNNING: (the run, its task id)."""
    jobs.create_job(parse_job({"id": job_id, "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}))
    run = jobs.start_run(job_id)
    core.handle_offers([offer(1)])
    task_id = launched(driver)[-1]["task_id"]["value"]
    core.handle_status(status(task_id, "TASK_RUNNING"))
    return run, task_id


def stored_state(core: Core, task_id: str) -> str | None:
    raw, _ = core.store.get(f"/tasks/{task_id}")
    return json.loads(raw)["state"] if raw else None


def test_a_status_the_store_cannot_keep_is_not_acknowledged_and_counts_when_resent(flaky) -> None:
    store, core, driver, jobs = flaky
    run, task_id = running(core, driver, jobs, "j")
    acks = len(driver.named("acknowledgeStatusUpdate"))
    store.down = True
    core.handle_status(status(task_id, "TASK_FINISHED", "Command exited with status 0"))
    assert len(driver.named("acknowledgeStatusUpdate")) == acks, "acknowledged an update it did not store"
    assert core.get(task_id).state == State.RUNNING, "memory ahead of the store"
    assert run.status == "ACTIVE"
    store.down = False
    core.handle_status(status(task_id, "TASK_FINISHED", "Command exited with status 0"))  # the master resends
    assert len(driver.named("acknowledgeStatusUpdate")) == acks + 1
    assert stored_state(core, task_id) == "TASK_FINISHED"
    assert run.status == "SUCCESS" and jobs.job_state("j").success_count == 1
    assert [s for s, _ in core.get(task_id).history].count("TASK_FINISHED") == 1


def test_an_offer_round_the_store_cannot_keep_launches_nothing_and_the_next_one_does(flaky) -> None:
    store, core, driver, jobs = flaky
    jobs.create_job(parse_job({"id": "k", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "instances": 3}}))
    run = jobs.start_run("k")
    store.down = True
    core.handle_offers([offer(1)])
    assert not launched(driver), "launched tasks whose LAUNCHED state is not stored"
    assert [o["value"] for ids, _ in driver.named("declineOffer") for o in ids] == ["O1"]
    assert {core.get(t.id).state for t in run.tasks} == {State.PENDING}
    assert core.pending_count() == 3
    store.down = False
    core.handle_offers([offer(2)])
    assert len(launched(driver)) == 3
    assert {stored_state(core, t.id) for t in run.tasks} == {"LAUNCHED"}
    assert [s for s, _ in core.get(run.tasks[0].id).history] == ["PENDING", "LAUNCHED"]


def test_a_withdrawal_the_store_cannot_keep_leaves_the_task_queued(flaky) -> None:
    store, core, driver, jobs = flaky
    jobs.create_job(parse_job({"id": "w", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}))
    run = jobs.start_run("w")
    task_id = run.tasks[0].id
    store.down = True
    with pytest.raises(StoreError):
        core.kill(task_id)
    assert core.get(task_id).state == State.PENDING and core.pending_count() == 1
    store.down = False
    assert core.kill(task_id)
    assert core.get(task_id).state == State.KILLED and core.pending_count() == 0


def test_nothing_launches_under_a_framework_id_the_store_has_not_kept(flaky) -> None:
    store, core, driver, jobs = flaky
    jobs.create_job(parse_job({"id": "f", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}))
    jobs.start_run("f")
    store.down = True
    core.handle_subscribed({"framework_id": "F2"})  # a new registration: its id is not stored
    core.handle_offers([offer(1)])
    assert not launched(driver), "a restart would lose the framework id these tasks run under"
    store.down = False
    core.handle_offers([offer(2)])
    assert len(launched(driver)) == 1
    assert core.store.get("/framework/id")[0] == b"F2"


def test_a_run_the_store_cannot_keep_is_refused_whole_and_answers_503(flaky) -> None:
    store, core, driver, jobs = flaky
    jobs.create_job(parse_job({"id": "r", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}))
    store.down = True
    with pytest.raises(StoreError) as caught:
        jobs.start_run("r")
    answer = render_error(caught.value)
    assert answer.status_code == 503 and b"store unavailable" in answer.body
    assert not jobs.active_runs("r") and core.pending_count() == 0
    store.down = False
    run = jobs.start_run("r")
    assert jobs.active_runs("r") == [run] and core.pending_count() == 1


def _stored(store: FlakyStore, key: str) -> bytes | None:
    return store.get(key)[0]


def test_a_stop_the_store_cannot_keep_leaves_the_run_running_and_can_be_sent_again(flaky) -> None:
    store, core, driver, jobs = flaky
    run, task_id = running(core, driver, jobs, "s")
    stored_run, stored_counts = _stored(store, f"/jobs/s/runs/{run.id}"), _stored(store, "/jobs/s/state")
    store.down = True
    with pytest.raises(StoreError):
        jobs.stop_run("s", run.id)
    assert jobs.get_run("s", run.id) is run and run.status == "ACTIVE" and jobs.active_runs("s") == [run]
    assert not driver.named("killTask"), "killed the task of a run that still counts as running"
    assert jobs.job_state("s").failure_count == 0
    assert (_stored(store, f"/jobs/s/runs/{run.id}"), _stored(store, "/jobs/s/state")) == (stored_run, stored_counts)
    store.down = False
    jobs.stop_run("s", run.id)
    assert run.status == "FAILED" and not jobs.active_runs("s") and jobs.finished_runs("s") == [run]
    assert [ids for ids, *_ in driver.named("killTask")] == [{"value": task_id}]
    assert jobs.job_state("s").failure_count == 1


def test_a_job_delete_the_store_cannot_keep_leaves_the_job_and_its_runs(flaky) -> None:
    store, core, driver, jobs = flaky
    run, task_id = running(core, driver, jobs, "d")
    store.down = True
    with pytest.raises(StoreError):
        jobs.delete_job("d", stop_runs=True)
    assert jobs.get_job("d").id == "d" and jobs.active_runs("d") == [run] and run.status == "ACTIVE"
    assert not driver.named("killTask")
    store.down = False
    jobs.delete_job("d", stop_runs=True)
    assert _stored(store, "/jobs/d") is None and not jobs.jobs
    assert [ids for ids, *_ in driver.named("killTask")] == [{"value": task_id}]


def test_a_job_update_the_store_cannot_keep_changes_nothing(flaky) -> None:
    store, core, driver, jobs = flaky
    spec = jobs.create_job(parse_job({"id": "u", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}))
    schedule = {"id": "nightly", "cron": "0 2 * * *"}
    changed = parse_job({"id": "u", "run": {"cmd": "false", "cpus": 0.1, "mem": 32}, "schedules": [schedule]})
    before = (_stored(store, "/jobs/u"), _stored(store, "/jobs/u/state"), jobs.states["u"].to_json())
    store.down = True
    with pytest.raises(StoreError):
        jobs.put_job(changed)
    assert jobs.get_job("u") is spec
    assert (_stored(store, "/jobs/u"), _stored(store, "/jobs/u/state"), jobs.states["u"].to_json()) == before
    store.down = False
    assert jobs.put_job(changed).run.cmd == "false" and "nightly" in jobs.states["u"].schedule_checked


def test_a_finish_stored_for_the_task_but_not_its_run_is_caught_up_at_the_next_start(flaky) -> None:
    """The store fails between the task's write and its run's: the update is acknowledged
    (the task's record is the truth) and a restarted scheduler finishes the run from it."""
    store, core, driver, jobs = flaky
    run, task_id = running(core, driver, jobs, "c")
    acks = len(driver.named("acknowledgeStatusUpdate"))
    store.refused = "/jobs/"
    core.handle_status(status(task_id, "TASK_FINISHED", "Command exited with status 0"))
    assert len(driver.named("acknowledgeStatusUpdate")) == acks + 1
    assert stored_state(core, task_id) == "TASK_FINISHED"
    assert json.loads(store.get(f"/jobs/c/runs/{run.id}")[0])["status"] == "ACTIVE"
    store.refused = ""
    core.stop()
    restarted = Core(store, CoreConfig(), clock=core.clock)
    restarted.load()
    jobs2 = JobManager(store, restarted, clock=core.clock)
    jobs2.load()
    assert jobs2.get_run("c", run.id).status == "SUCCESS" and jobs2.job_state("c").success_count == 1
    assert json.loads(store.get(f"/jobs/c/runs/{run.id}")[0])["status"] == "SUCCESS"
    restarted.stop()
