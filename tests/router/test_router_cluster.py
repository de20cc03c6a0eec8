"""`dockyard router` end to end: an embedded cluster, the scheduler, the router process and a
real HAProxy, all on loopback. Apps are small Python servers run as host command tasks.

Most apps ask for fixed service ports (`portDefinitions[].port`, free ones of this
machine); the scheduler keeps them and echoes them in each task's `servicePorts`. Drain
before kill has its own module (test_router_drain.py).
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.router.cluster import HEALTH, deploy, echo_command, epoch, pid_serving, web_app
from tests.router.conftest import free_ports
from tests.router.load import SteadyLoad, get
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess


def test_a_three_instance_http_app_is_reached_through_its_service_port_and_a_vhost(scheduler, router):
    service = free_ports(1)[0]
    tasks = deploy(scheduler, web_app("/web", service, HAPROXY_0_VHOST="web.test"))
    assert all(t["servicePorts"] == [service] for t in tasks), tasks  # the scheduler keeps the asked port
    assert scheduler.call("GET", "/v2/apps/web")["app"]["portDefinitions"][0]["port"] == service
    ports = {t["ports"][0] for t in tasks}
    router.wait(lambda: set(router.serving("/web").values()) == ports, "3 servers in the router")
    seen = {get(service)[1] for _ in range(12)}
    assert seen == {str(p) for p in ports}
    assert {get(router.http_port, host="web.test")[1] for _ in range(12)} == seen
    assert get(router.http_port, host="other.test")[0] == 404

    # scaling to 5 adds servers through the runtime API: no reload
    reloads = router.status()["counts"]["reloads"]
    scheduler.call("PUT", "/v2/apps/web", {"instances": 5})
    router.wait(lambda: len(router.serving("/web")) == 5, "5 servers in the router")
    assert router.status()["counts"]["reloads"] == reloads and router.status()["counts"]["runtimeUpdates"] >= 1


def test_a_killed_instance_leaves_rotation_and_a_deleted_app_its_frontend(scheduler, router):
    service = free_ports(1)[0]
    tasks = deploy(scheduler, web_app("/kill", service))
    router.wait(lambda: len(router.serving("/kill")) == 3, "3 servers in the router")
    victim = tasks[0]
    with SteadyLoad(service, rate=100) as load:
        wait_for(lambda: load.total > 20, timeout=10, what="steady requests")
        os.kill(pid_serving(victim["ports"][0]), signal.SIGKILL)
        failure = scheduler.wait_until(lambda: scheduler.call("GET", "/v2/apps/kill")["app"].get("lastTaskFailure"),
                                       lambda f: bool(f) and f["taskId"] == victim["id"], "the kill reported", 30)
        router.wait(lambda: victim["id"] not in router.serving("/kill"), "the killed instance out", 10)
        left_at = time.time()
        wait_for(lambda: load.total > 150, timeout=10, what="requests after the kill")
    assert left_at - epoch(failure["timestamp"]) <= 2.0, (failure, left_at)
    assert not load.failures, load.failures[:5]  # a refused connection was retried on another instance

    scheduler.call("DELETE", "/v2/apps/kill")
    router.wait(lambda: router.backend("/kill") is None, "the deleted app's backend gone")
    assert all(f["port"] != service for f in router.status()["frontends"])
    with pytest.raises(ConnectionRefusedError):
        get(service)


def test_an_unhealthy_instance_is_taken_out_while_it_runs(scheduler, router):
    service = free_ports(1)[0]
    tasks = deploy(scheduler, web_app("/sick", service, instances=2))
    router.wait(lambda: len(router.serving("/sick")) == 2, "2 servers in the router")
    sick = tasks[0]
    sandbox = Path(scheduler.call("GET", f"/dockyard/v1/tasks/{sick['id']}")["sandbox"])
    (sandbox / "health").unlink()
    router.wait(lambda: list(router.serving("/sick")) == [tasks[1]["id"]], "the unhealthy instance out", 30)
    assert {get(service)[1] for _ in range(6)} == {str(tasks[1]["ports"][0])}
    running = scheduler.call("GET", "/v2/apps/sick/tasks")["tasks"]
    assert sick["id"] in {t["id"] for t in running if t["state"] == "TASK_RUNNING"}  # unhealthy, not killed
    (sandbox / "health").touch()
    router.wait(lambda: len(router.serving("/sick")) == 2, "the instance back once healthy", 30)


def test_a_tcp_mode_app(scheduler, router):
    service = free_ports(1)[0]
    app = {"id": "/echo", "cmd": echo_command(), "cpus": 0.05, "mem": 32, "instances": 2,
           "portDefinitions": [{"port": service}], "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "tcp"},
           "healthChecks": [{**HEALTH, "protocol": "MESOS_TCP", "path": None}]}
    tasks = deploy(scheduler, app)
    router.wait(lambda: len(router.serving("/echo")) == 2, "2 servers in the router")
    assert router.backend("/echo")["mode"] == "tcp"
    answers = set()
    for _ in range(6):
        with socket.create_connection(("127.0.0.1", service), timeout=5) as connection:
            connection.sendall(b"hello\n")
            answers.add(connection.makefile("rb").readline().decode())
    assert answers == {f"{t['ports'][0]}:hello\n" for t in tasks}


def test_injected_config_is_refused_at_deploy_naming_each_label_and_never_reaches_haproxy(scheduler, router):
    """The router leaves out what the scheduler let through (test_model.py checks that part);
    the scheduler lets nothing through: an app whose labels would change HAProxy's
    configuration is refused (422) with each label named."""
    good, evil = free_ports(2)
    deploy(scheduler, web_app("/good", good, instances=1))
    status, answer = scheduler.status("POST", "/v2/apps", web_app(
        "/evil", evil, instances=1, HAPROXY_0_VHOST="evil.test\n  server x 203.0.113.9:22", HAPROXY_0_PATH="/a#b"))
    assert status == 422 and [d["path"] for d in answer["details"]] == ["/labels/HAPROXY_0_VHOST",
                                                                        "/labels/HAPROXY_0_PATH"], answer
    assert scheduler.status("GET", "/v2/apps/evil")[0] == 404
    router.wait(lambda: len(router.serving("/good")) == 1, "/good served")
    text = (router.work_dir / "haproxy.cfg").read_text()
    assert "203.0.113.9" not in text and "evil_0" not in text and "/a#b" not in text
    assert get(good)[0] == 200


def test_a_configuration_haproxy_cannot_load_is_kept_aside_and_the_running_one_stays(scheduler, router):
    service, held = free_ports(2)
    deploy(scheduler, web_app("/steady", service, instances=1))
    router.wait(lambda: len(router.serving("/steady")) == 1, "/steady served")
    holder = socket.socket()
    holder.bind(("127.0.0.1", held))
    holder.listen(1)  # another process holds the port: `haproxy -c` passes, the reload cannot bind
    try:
        scheduler.call("POST", "/v2/apps", web_app("/blocked", held, instances=1))
        router.wait(lambda: router.status().get("rejectedConfig"), "the refused configuration reported")
        assert "blocked_0" in Path(router.status()["rejectedConfig"]).read_text()
        assert "blocked_0" not in (router.work_dir / "haproxy.cfg").read_text()
        assert "could not load" in router.status()["lastError"]
        # the running configuration still follows the scheduler for the apps it has
        scheduler.call("PUT", "/v2/apps/steady", {"instances": 2})
        router.wait(lambda: len(router.serving("/steady")) == 2, "/steady scaled in the running configuration")
        assert get(service)[0] == 200
    finally:
        holder.close()
    scheduler.call("DELETE", "/v2/apps/blocked")


def test_a_router_restart_while_serving_refuses_no_connection(scheduler, router):
    service = free_ports(1)[0]
    tasks = deploy(scheduler, web_app("/calm", service, instances=2))
    router.wait(lambda: len(router.serving("/calm")) == 2, "2 servers in the router")
    master = router.status()["haproxy"]["master"]
    with SteadyLoad(service, rate=100) as load:
        wait_for(lambda: load.total > 50, timeout=10, what="steady requests")
        router.stop()
        seen = load.total
        wait_for(lambda: load.total > seen + 50, timeout=10, what="requests with no router")
        router.start()
        seen = load.total
        wait_for(lambda: load.total > seen + 50, timeout=10, what="requests after the restart")
    assert not load.failures, load.failures[:5]
    assert {body for _, body in load.answers} == {str(t["ports"][0]) for t in tasks}
    assert router.status()["haproxy"]["master"] == master  # adopted, not restarted
    scheduler.call("PUT", "/v2/apps/calm", {"instances": 3})
    router.wait(lambda: len(router.serving("/calm")) == 3, "the new router follows the scheduler")


def test_a_scheduler_restart_while_serving_refuses_no_connection_and_the_router_catches_up(
        cluster, scheduler, router):
    """The event stream drops with the scheduler; HAProxy serves on. An instance killed while
    the scheduler is down leaves rotation once it is back and the router has read the apps again;
    the others stay in rotation meanwhile: the new scheduler gives their agent's IP at once
    (kept in its store), before any offer told it again."""
    service = free_ports(1)[0]
    tasks = deploy(scheduler, web_app("/through", service, instances=3))
    router.wait(lambda: len(router.serving("/through")) == 3, "3 servers in the router")
    syncs = router.status()["counts"]["syncs"]
    victim = tasks[0]
    with SteadyLoad(service, rate=100) as load:
        wait_for(lambda: load.total > 30, timeout=10, what="steady requests")
        scheduler.process.stop()
        router.wait(lambda: router.status()["eventStream"] == "disconnected", "the event stream dropped", 20)
        os.kill(pid_serving(victim["ports"][0]), signal.SIGKILL)
        seen = load.total
        wait_for(lambda: load.total > seen + 50, timeout=10, what="requests with the scheduler down")
        again = SchedulerProcess.start(cluster, scheduler.workdir, port=scheduler.port, log_name="scheduler-2.log")
        scheduler.process = again.process  # the module's fixture stops this one
        router.wait(lambda: router.status()["eventStream"] == "attached"
                    and router.status()["counts"]["syncs"] > syncs, "the router attached again and resynced")
        router.wait(lambda: victim["id"] not in router.serving("/through"), "the dead instance out", 30)
    assert not load.failures, load.failures[:5]  # the dead instance's refusals were retried elsewhere
