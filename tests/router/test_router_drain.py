"""Drain before kill with a real router: an embedded cluster, the scheduler, `dockyard router`
and HAProxy on loopback. Under a steady client through the router, a rolling restart, a
scale-down and an app's deletion take each instance out of HAProxy's rotation before the
scheduler kills it, and no request fails. The apps ask for service port 0: the scheduler
assigns one and the router serves it."""
from __future__ import annotations

import threading
import time
from typing import Any

from tests.router.cluster import EventLog, RouterProcess, deploy, epoch, web_app
from tests.router.load import SteadyLoad, get
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess

NAMED_DRAIN = 30  # seconds: a kill within a few seconds of its drain was ended by the router's report


def drain_and_kill(events: EventLog, task_id: str) -> tuple[float, float]:
    """(when the scheduler marked the instance draining, when it heard of its kill)."""
    def both() -> tuple[float, float] | None:
        drained = [e for e in events.of("instance_changed_event") if e["instanceId"] == task_id and e.get("draining")]
        killed = [e for e in events.of("status_update_event") if e["taskId"] == task_id
                  and e["taskStatus"] in ("TASK_KILLING", "TASK_KILLED")]
        return (epoch(drained[0]["timestamp"]), epoch(killed[0]["timestamp"])) if drained and killed else None
    return wait_for(both, timeout=30, what=f"{task_id} drained and killed")  # type: ignore[return-value]


def running(scheduler: SchedulerProcess, app_id: str) -> list[dict[str, Any]]:
    return [t for t in scheduler.call("GET", f"/v2/apps{app_id}/tasks")["tasks"] if t["state"] == "TASK_RUNNING"]


def deployed(scheduler: SchedulerProcess, app_id: str, count: int) -> None:
    scheduler.wait_until(lambda: scheduler.call("GET", f"/v2/apps{app_id}")["app"],
                         lambda app: not app["deployments"] and app["tasksRunning"] == count,
                         f"{app_id} at {count} instances", 90)


def test_restart_scale_down_and_delete_drain_before_each_kill(scheduler: SchedulerProcess,
                                                             router: RouterProcess) -> None:
    app = web_app("/drained", 0, instances=3, **{"dockyard.drainSeconds": str(NAMED_DRAIN)})
    tasks = deploy(scheduler, app)
    (service,) = scheduler.call("GET", "/v2/apps/drained")["app"]["portDefinitions"]
    service = service["port"]
    assert 10000 <= service < 20000 and all(t["servicePorts"] == [service] for t in tasks), tasks
    router.wait(lambda: len(router.serving("/drained")) == 3, "3 servers in the router")
    first = {t["id"] for t in tasks}
    with EventLog(scheduler, "instance_changed_event", "status_update_event") as events, \
            SteadyLoad(service, rate=100) as load:
        wait_for(lambda: load.total > 30, timeout=10, what="steady requests")
        scheduler.call("POST", "/v2/apps/drained/restart")
        deployed(scheduler, "/drained", 3)
        router.wait(lambda: not set(router.serving("/drained")) & first and len(router.serving("/drained")) == 3,
                    "the new instances serving")
        second = {t["id"] for t in running(scheduler, "/drained")}
        scheduler.call("PUT", "/v2/apps/drained", {"instances": 1})
        deployed(scheduler, "/drained", 1)
        router.wait(lambda: len(router.serving("/drained")) == 1, "1 server in the router")
        seen = load.total
        wait_for(lambda: load.total > seen + 50, timeout=10, what="requests after the scale-down")
    assert not load.failures, load.failures[:5]
    left = first | (second - set(router.serving("/drained")))
    assert len(left) == 5
    for task_id in left:
        drained, killed = drain_and_kill(events, task_id)
        # marked first; killed once the router had it out, long before its 30 s were up
        assert drained <= killed < drained + NAMED_DRAIN / 3, (task_id, drained, killed)

    (last,) = router.serving("/drained")
    with EventLog(scheduler, "instance_changed_event", "status_update_event") as events:
        scheduler.call("DELETE", "/v2/apps/drained")
        drained, killed = drain_and_kill(events, last)
    assert drained <= killed < drained + NAMED_DRAIN / 3
    router.wait(lambda: router.backend("/drained") is None, "the deleted app's backend gone")


def test_a_request_in_flight_when_its_app_is_deleted_finishes_before_the_kill(scheduler: SchedulerProcess,
                                                                           router: RouterProcess) -> None:
    """The deletion reloads HAProxy without the app; its old worker still holds the slow request,
    so the router reports the instance served until that worker is gone, and the kill waits."""
    tasks = deploy(scheduler, web_app("/deleted", 0, instances=1, **{"dockyard.drainSeconds": str(NAMED_DRAIN)}))
    (service,) = tasks[0]["servicePorts"]
    router.wait(lambda: len(router.serving("/deleted")) == 1, "1 server in the router")
    wait_for(lambda: get(service)[0] == 200, timeout=10, what="the instance answering through the router")
    answers: list[Any] = []
    slow = threading.Thread(target=lambda: answers.append(_try(lambda: get(service, "/slow/3", timeout=20))))
    with EventLog(scheduler, "instance_changed_event", "status_update_event") as events:
        slow.start()
        time.sleep(0.5)  # the request is in HAProxy and at the instance
        scheduler.call("DELETE", "/v2/apps/deleted")
        drained, killed = drain_and_kill(events, tasks[0]["id"])
        slow.join(20)
    assert answers == [(200, str(tasks[0]["ports"][0]))], answers
    # the kill waited for the old worker (about 2.5 s more), not for the whole 30 s drain
    assert drained + 1.5 < killed < drained + NAMED_DRAIN / 2, (drained, killed)


def _try(call: Any) -> Any:
    try:
        return call()
    except Exception as error:  # the answer the test asserts on: the request's failure, shown
        return repr(error)


def test_an_app_port_asking_for_0_is_served_on_the_port_the_scheduler_assigned(scheduler, router) -> None:
    tasks = deploy(scheduler, web_app("/assigned", 0, instances=2))
    (service,) = {port for t in tasks for port in t["servicePorts"]}
    router.wait(lambda: len(router.serving("/assigned")) == 2, "2 servers in the router")
    assert {f["port"] for f in router.status()["frontends"] if f["backend"] == "assigned_0"} == {service}
    expected = {str(t["ports"][0]) for t in tasks}
    # HAProxy may take a moment to bring the new servers up once the router has sent them
    wait_for(lambda: {get(service)[1] for _ in range(8)} == expected, timeout=10, what="both instances answering")
    assert {get(service) for _ in range(8)} <= {(200, port) for port in expected}  # then steadily
