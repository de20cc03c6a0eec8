"""Marathon apps end to end: real master, agents, executors and scheduler processes."""
from __future__ import annotations


import urllib.request

from tests.support.procs import port_open, wait_for


def sleeper(app_id: str, instances: int = 2, **extra) -> dict:
    return {"id": app_id, "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": instances, **extra}


def test_create_scale_and_delete(marathon) -> None:
    status, body = marathon.status("POST", "/v2/apps", sleeper("/basic/sleep", 2))
    assert status == 201 and body["id"] == "/basic/sleep" and body["deployments"]
    app = marathon.wait_deployed("/basic/sleep")
    assert app["tasksRunning"] == 2 and len(app["tasks"]) == 2
    assert all(t["state"] == "TASK_RUNNING" and t["ports"] for t in app["tasks"])
    # duplicate create answers 409
    status, body = marathon.status("POST", "/v2/apps", sleeper("/basic/sleep", 2))
    assert status == 409 and "already exists" in body["message"]
    # scale up through PUT (partial update keeps the command)
    result = marathon.call("PUT", "/v2/apps//basic/sleep", {"instances": 3})
    assert result["deploymentId"]
    app = marathon.wait_deployed("/basic/sleep")
    assert app["tasksRunning"] == 3
    assert len(marathon.call("GET", "/v2/apps/basic/sleep/versions")["versions"]) == 2
    marathon.call("DELETE", "/v2/apps/basic/sleep")
    wait_for(lambda: marathon.status("GET", "/v2/apps/basic/sleep")[0] == 404, timeout=20,
             what="app removed")


def test_validation_names_each_bad_field(marathon) -> None:
    status, body = marathon.status("POST", "/v2/apps", {"id": "/bad", "cmd": "sleep 1", "cpus": -1,
                                                        "upgradeStrategy": {"minimumHealthCapacity": 2}})
    assert status == 422 and body["message"] == "Object is not valid"
    assert {d["path"] for d in body["details"]} == {"/cpus", "/upgradeStrategy/minimumHealthCapacity"}


def test_killed_instance_is_replaced_and_env_has_ports_and_host(marathon) -> None:
    cmd = "echo $HOST $PORT0 $PORTS $PORT_HTTP; sleep 600"
    marathon.call("POST", "/v2/apps", {"id": "/replace", "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": 1,
                                       "portDefinitions": [{"port": 0, "name": "http"}]})
    app = marathon.wait_deployed("/replace")
    task = app["tasks"][0]
    printed = wait_for(lambda: marathon.stdout(task["id"]).strip(), timeout=10, what="env printed")
    host, port0, ports, named = printed.split()
    assert host == task["host"] and int(port0) == task["ports"][0] and ports == port0 and named == port0
    marathon.call("DELETE", f"/v2/apps/replace/tasks/{task['id']}")
    wait_for(lambda: [t for t in marathon.app("/replace")["tasks"]
                      if t["id"] != task["id"] and t["state"] == "TASK_RUNNING"], timeout=20,
             what="a replacement running")
    marathon.call("DELETE", "/v2/apps/replace?force=true")


def test_crash_loop_backs_off_and_shows_last_failure(marathon) -> None:
    marathon.call("POST", "/v2/apps", {"id": "/crash", "cmd": "exit 3", "cpus": 0.1, "mem": 32,
                                       "backoffSeconds": 30, "instances": 1})

    def queued():
        items = [q for q in marathon.call("GET", "/v2/queue")["queue"] if q["app"]["id"] == "/crash"]
        return items[0] if items and items[0]["delay"]["timeLeftSeconds"] > 0 else None
    item = wait_for(queued, timeout=20, what="a backoff delay in the queue")
    assert item["count"] == 1 and not item["delay"]["overdue"]
    failure = marathon.app("/crash")["lastTaskFailure"]
    assert failure["state"] == "TASK_FAILED" and "3" in failure["message"]
    marathon.call("DELETE", "/v2/queue//crash/delay")
    assert not [q for q in marathon.call("GET", "/v2/queue")["queue"]
                if q["app"]["id"] == "/crash" and q["delay"]["timeLeftSeconds"] > 0]
    marathon.call("DELETE", "/v2/apps/crash?force=true")


def test_unique_hostname_and_unplaceable_reasons(marathon) -> None:
    marathon.call("POST", "/v2/apps", sleeper("/unique", 4, constraints=[["hostname", "UNIQUE"]]))

    def three_running():
        app = marathon.app("/unique")
        running = [t for t in app["tasks"] if t["state"] == "TASK_RUNNING"]
        return running if len(running) == 3 else None
    running = wait_for(three_running, timeout=30, what="3 instances on 3 agents")
    assert len({t["host"] for t in running}) == 3

    def reported():
        items = [q for q in marathon.call("GET", "/v2/queue?embed=lastUnusedOffers")["queue"]
                 if q["app"]["id"] == "/unique"]
        summary = items[0]["processedOffersSummary"] if items else {}
        return items[0] if summary.get("processedOffersCount") else None
    item = wait_for(reported, timeout=20, what="a placement report for the 4th instance")
    reasons = {r["reason"]: r["declined"] for r in item["processedOffersSummary"]["rejectSummaryLastOffers"]}
    assert reasons["UnfulfilledConstraint"] >= 1
    # A dry run of the running app's update is checked against everything but its own
    # instances (a rolling update replaces them): 3 fit, one per agent; the 4th cannot.
    preview = marathon.call("POST", "/dockyard/v1/plan", sleeper("/unique", 4, constraints=[["hostname", "UNIQUE"]]))
    assert len(preview["assignments"]) == 3 and preview["unplaced"] == 1
    assert len({a["host"] for a in preview["assignments"]}) == 3
    marathon.call("DELETE", "/v2/apps/unique?force=true")


def test_groups_restart_and_filtered_event_stream(marathon) -> None:
    import json as jsonlib

    seen: list[dict] = []
    attached = __import__("threading").Event()

    def listen() -> None:
        with marathon.api.client(timeout=30) as client, client.stream(
                "GET", "/v2/events",
                params=[("event_type", "deployment_success"), ("event_type", "event_stream_attached")],
                headers={"Accept": "text/event-stream"}) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    event = jsonlib.loads(line[5:])
                    seen.append(event)
                    attached.set()
                    if event["eventType"] == "deployment_success" and event["plan"]["steps"][0]["actions"][0][
                            "action"] == "RestartApplication":
                        return

    thread = __import__("threading").Thread(target=listen, daemon=True)
    thread.start()
    assert attached.wait(10)
    marathon.call("POST", "/v2/groups", {"id": "/shop", "apps": [sleeper("web", 1), sleeper("/shop/db", 1)]})
    wait_for(lambda: len(marathon.call("GET", "/v2/groups/shop")["apps"]) == 2, timeout=10, what="group apps")
    root = marathon.call("GET", "/v2/groups")
    assert [g["id"] for g in root["groups"]] == ["/shop"]
    marathon.wait_deployed("/shop/web")
    before = {t["id"] for t in marathon.app("/shop/web")["tasks"]}
    result = marathon.call("POST", "/v2/apps//shop/web/restart")
    app = marathon.wait_deployed("/shop/web")
    assert result["deploymentId"] and not before & {t["id"] for t in app["tasks"]} and app["tasksRunning"] == 1
    thread.join(10)
    assert {e["eventType"] for e in seen} == {"event_stream_attached", "deployment_success"}
    status, _, body = marathon.api.call("GET", "/v2/tasks", headers={"Accept": "text/plain"})
    text = body.decode()
    assert status == 200, text
    assert "shop_web" in text
    marathon.call("DELETE", "/v2/groups/shop")
    wait_for(lambda: marathon.status("GET", "/v2/groups/shop")[0] == 404, timeout=20, what="group gone")


def post_ready_httpd(marathon, app_id: str, *, port: str, timeout_seconds: int) -> None:
    """One busybox httpd instance serving "ready" from its sandbox, with an HTTP readiness check on it."""
    marathon.call("POST", "/v2/apps", {
        "id": app_id, "cmd": f"mkdir www && echo ready > www/index.html && exec busybox httpd -f -p {port} -h www",
        "cpus": 0.1, "mem": 32,
        "instances": 1, "portDefinitions": [{"port": 0, "name": "http"}],
        "readinessChecks": [{"name": "ready", "protocol": "HTTP", "path": "/", "portName": "http",
                             # Marathon refuses a timeout that is not shorter than the interval
                             "intervalSeconds": timeout_seconds + 1, "timeoutSeconds": timeout_seconds}]})


def test_readiness_check_reaches_the_task_by_agent_address(marathon) -> None:
    """Agents here are named agent0, agent1, ... (no DNS): readiness must use the agent's address."""
    post_ready_httpd(marathon, "/ready", port="$PORT0", timeout_seconds=1)
    app = marathon.wait_deployed("/ready", timeout=40)
    assert app["tasksRunning"] == 1
    marathon.call("DELETE", "/v2/apps/ready?force=true")


def test_fetch_puts_uris_in_the_sandbox_before_the_task_starts(marathon, task_dir) -> None:
    """A local file is fetched with the task's user's permissions: one it may read."""
    artifact = task_dir / "config.txt"
    artifact.write_text("fetched\n")
    marathon.call("POST", "/v2/apps", {
        "id": "/fetcher", "cmd": "cat config.txt; sleep 600", "cpus": 0.1, "mem": 32,
        "instances": 1, "fetch": [{"uri": f"file://{artifact}"}]})
    task = marathon.wait_deployed("/fetcher")["tasks"][0]
    wait_for(lambda: marathon.stdout(task["id"]) == "fetched\n", timeout=15, what="artifact read by the task")
    marathon.call("DELETE", "/v2/apps/fetcher?force=true")


def test_container_service_from_a_test_built_image_becomes_healthy(marathon) -> None:
    """busybox httpd in the image the tests built (conftest), health-checked over HTTP."""
    from tests.services.conftest import IMAGE

    marathon.call("POST", "/v2/apps", {
        "id": "/boxed", "cpus": 0.1, "mem": 32, "instances": 2,
        # one agent: the agents here share the host's network and offer the same port range
        "cmd": "mkdir -p /tmp/www && echo boxed > /tmp/www/index.html && exec httpd -f -p $PORT0 -h /tmp/www",
        "container": {"type": "MESOS", "docker": {"image": IMAGE}},
        "constraints": [["hostname", "IS", "agent1"]], "portDefinitions": [{"port": 0, "name": "http"}],
        "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 10,
                          "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]})
    app = wait_for(lambda: (a := marathon.app("/boxed"))["tasksHealthy"] == 2 and a, timeout=40,
                   what="2 healthy container instances")
    for task in app["tasks"]:
        with urllib.request.urlopen(f"http://127.0.0.1:{task['ports'][0]}/", timeout=5) as response:
            assert response.read() == b"boxed\n"
    marathon.call("DELETE", "/v2/apps/boxed?force=true")


def test_a_slow_readiness_endpoint_does_not_delay_another_apps_deployment(marathon, task_python) -> None:
    """Readiness GETs run off the services loop: /hung's instances accept connections and never
    answer (each probe hangs for its 30 s timeout); /brisk still finishes its deployment as soon
    as its own instance is ready."""
    import time

    # SO_REUSEADDR as any server: earlier tests' connections to these ports may sit in TIME_WAIT
    silent = ("import os, socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              "s.bind(('127.0.0.1', int(os.environ['PORT0']))); s.listen(64); time.sleep(600)")
    marathon.call("POST", "/v2/apps", {
        "id": "/hung", "cmd": f"exec {task_python} -c \"{silent}\"", "cpus": 0.1, "mem": 32, "instances": 4,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "readinessChecks": [{"name": "ready", "protocol": "HTTP", "path": "/", "portName": "http",
                             "intervalSeconds": 31, "timeoutSeconds": 30}]})
    # four running and listening (not refusing), so that from now on every probe of /hung hangs
    marathon.wait_until(lambda: marathon.app("/hung"),
                        lambda a: a["tasksRunning"] == 4 and all(port_open(t["ports"][0]) for t in a["tasks"]),
                        "4 /hung instances running and listening", timeout=60)
    post_ready_httpd(marathon, "/brisk", port="127.0.0.1:$PORT0", timeout_seconds=1)
    marathon.wait_until(lambda: marathon.app("/brisk"), lambda a: a["tasksRunning"] == 1, "/brisk running",
                        timeout=60)
    running_at = time.monotonic()
    app = marathon.wait_deployed("/brisk", timeout=60)
    # One services tick that waited on the four hanging GETs would take 4 x 30 s.
    assert time.monotonic() - running_at < 10, "the deployment of /brisk waited on /hung's probes"
    assert app["tasksRunning"] == 1
    assert marathon.app("/hung")["deployments"]  # still waiting for readiness that never comes
    assert all(not r["ready"] for r in marathon.call("GET", "/v2/apps?id=/hung&embed=apps.readiness")["apps"][0][
        "readinessCheckResults"])
    marathon.call("DELETE", "/v2/apps/hung?force=true")
    marathon.call("DELETE", "/v2/apps/brisk?force=true")


def test_an_app_waits_for_its_dependency_to_be_healthy(marathon, task_dir) -> None:
    """Marathon's `dependencies` (here relative: "db" in /deps): /deps/web launches nothing until
    /deps/db is deployed and healthy; db's health is a file the test creates (where db's check,
    run as db's user, can see it)."""
    ok = task_dir / "db-ok"
    db = {"id": "db", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1,
          "healthChecks": [{"protocol": "COMMAND", "command": {"value": f"test -f {ok}"},
                            "gracePeriodSeconds": 0, "intervalSeconds": 1, "timeoutSeconds": 5,
                            "maxConsecutiveFailures": 0}]}
    web = {"id": "web", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 2, "dependencies": ["db"]}
    marathon.call("POST", "/v2/groups", {"id": "/deps", "apps": [web, db]})

    def db_unhealthy(app: dict) -> bool:
        results = [r for t in app["tasks"] for r in t["healthCheckResults"]]
        return bool(results) and results[0]["alive"] is False
    marathon.wait_until(lambda: marathon.app("/deps/db"), db_unhealthy, "db running, its check failing", timeout=60)
    # Both deployments began together; without the ordering web would have launched at once.
    web_app = marathon.app("/deps/web")
    assert web_app["tasks"] == [] and web_app["deployments"], web_app
    assert web_app["dependencies"] == ["db"]
    ok.write_text("")
    db_app = marathon.wait_until(lambda: marathon.app("/deps/db"), lambda a: a["tasksHealthy"] == 1,
                                 "db healthy", timeout=60)
    web_app = marathon.wait_deployed("/deps/web", timeout=60)
    assert web_app["tasksRunning"] == 2
    healthy_since = db_app["tasks"][0]["healthCheckResults"][0]["firstSuccess"]
    assert all(t["stagedAt"] >= healthy_since for t in web_app["tasks"]), (healthy_since, web_app["tasks"])
    marathon.call("DELETE", "/v2/groups/deps")


def test_a_dependency_cycle_is_refused_and_changes_nothing(marathon) -> None:
    """Marathon answers 422 for a cyclic dependency graph: such apps would wait for each other
    forever. The whole group is refused; an app that would close a cycle with existing apps too."""
    group = {"id": "/loop", "apps": [
        {"id": "a", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "dependencies": ["b"]},
        {"id": "b", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "dependencies": ["../loop/a"]}]}
    status, body = marathon.status("POST", "/v2/groups", group)
    assert status == 422, body
    assert body["details"][0]["path"] == "/dependencies"
    assert "/loop/a -> /loop/b -> /loop/a" in body["details"][0]["errors"][0]
    assert marathon.status("GET", "/v2/apps/loop/a")[0] == 404
    marathon.call("POST", "/v2/apps", {"id": "/chain/a", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                       "instances": 0, "dependencies": ["/chain/b"]})
    status, body = marathon.status("POST", "/v2/apps", {"id": "/chain/b", "cmd": "sleep 600", "cpus": 0.1,
                                                        "mem": 32, "instances": 0, "dependencies": ["a"]})
    assert status == 422 and "cyclic" in body["details"][0]["errors"][0], body
    assert marathon.status("GET", "/v2/apps/chain/b")[0] == 404
    marathon.call("DELETE", "/v2/apps/chain/a?force=true")
