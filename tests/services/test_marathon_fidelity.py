"""`/v2` answers as Marathon's own (GroupsResource, TasksResource, QueueResource, SystemResource,
AppValidation, the app `check`), on a real cluster and scheduler process.

Each test names the Marathon behaviour it holds dockyard to; each failed before dockyard
followed it (a group create that created nothing, a dropped `check`, validation Marathon does
that dockyard did not, `/ping` always text, per-task text lines, unknown `wipe`, a queue delay
that could not be reset, no `/v2/pods` answer)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess

# Marathon's own system-test group (tests/system/groups/sleep-group.json in mesosphere/marathon).
SLEEP_GROUP = {
    "apps": [], "dependencies": [], "id": "/sleep-group",
    "groups": [{"apps": [{"cmd": "sleep 1000", "cpus": 0.01, "dependencies": [], "disk": 0,
                          "id": "/sleep-group/sleep/goodnight-1", "instances": 1, "mem": 32},
                         {"cmd": "sleep 1000", "cpus": 0.01, "dependencies": [], "disk": 0,
                          "id": "/sleep-group/sleep/goodnight-2", "instances": 1, "mem": 32}],
                "dependencies": [], "groups": [], "id": "/sleep-group/sleep"}],
}
GOODNIGHT = ("/sleep-group/sleep/goodnight-1", "/sleep-group/sleep/goodnight-2")


def running(marathon, app_id: str) -> int:
    return sum(1 for t in marathon.call("GET", f"/v2/apps/{app_id.strip('/')}/tasks")["tasks"]
               if t["state"] == "TASK_RUNNING")


def deployment_gone(marathon, deployment_id: str, timeout: float = 60) -> None:
    wait_for(lambda: deployment_id not in {d["id"] for d in marathon.call("GET", "/v2/deployments")},
             timeout=timeout, what=f"deployment {deployment_id} done")


def test_sleep_group_is_deployed_scaled_and_deleted_as_one_deployment(marathon) -> None:
    """Marathon's test_launch_and_scale_group: nested groups deploy in one deployment, `scaleBy`
    multiplies every app's instances (rounded up), DELETE takes the group and its apps."""
    status, headers, raw = marathon.api.call("POST", "/v2/groups", SLEEP_GROUP)
    created = json.loads(raw)
    assert status == 201 and created["deploymentId"] and created["version"], created
    assert headers["marathon-deployment-id"] == created["deploymentId"] and headers["location"] == "/sleep-group"
    [deployment] = [d for d in marathon.call("GET", "/v2/deployments") if d["id"] == created["deploymentId"]]
    assert deployment["affectedApps"] == list(GOODNIGHT)
    assert [a["action"] for a in deployment["steps"][0]["actions"]] == ["StartApplication"] * 2
    deployment_gone(marathon, created["deploymentId"])
    group = marathon.call("GET", "/v2/groups/sleep-group/sleep")
    assert [a["id"] for a in group["apps"]] == list(GOODNIGHT) and group["version"] == created["version"]
    assert all(running(marathon, app_id) == 1 for app_id in GOODNIGHT)
    assert marathon.status("POST", "/v2/groups", SLEEP_GROUP) == (
        409, {"message": "Group /sleep-group is already created. Use PUT to change this group."})

    marathon.call("PUT", "/v2/apps/sleep-group/sleep/goodnight-1", {"instances": 2})
    marathon.wait_deployed(GOODNIGHT[0])
    scaled = marathon.call("PUT", "/v2/groups/sleep-group/sleep", {"scaleBy": 1.5})
    deployment_gone(marathon, scaled["deploymentId"])
    assert [running(marathon, a) for a in GOODNIGHT] == [3, 2]  # ceil(2 x 1.5), ceil(1 x 1.5)
    versions = marathon.call("GET", "/v2/groups/sleep-group/versions")  # newest first
    assert versions.index(scaled["version"]) < versions.index(created["version"]), versions

    deleted = marathon.call("DELETE", "/v2/groups/sleep-group")
    assert deleted["deploymentId"] and deleted["version"]
    wait_for(lambda: marathon.status("GET", "/v2/groups/sleep-group")[0] == 404, timeout=30, what="group gone")
    wait_for(lambda: not [t for t in marathon.call("GET", "/v2/tasks")["tasks"] if t["appId"] in GOODNIGHT],
             timeout=60, what="the group's tasks ended")
    assert marathon.status("GET", "/v2/apps/sleep-group/sleep/goodnight-1")[0] == 404


def test_group_update_makes_the_group_what_it_names_and_rolls_back(marathon) -> None:
    """GroupConversion's structural update: the apps (and groups) a PUT names are the group's,
    the others go; `{"version": v}` brings the group back as it was."""
    sleeper = {"cmd": "sleep 1000", "cpus": 0.01, "mem": 32, "instances": 1}
    first = marathon.call("PUT", "/v2/groups/shop", {"apps": [{**sleeper, "id": "web"}, {**sleeper, "id": "db"}]})
    deployment_gone(marathon, first["deploymentId"])
    second = marathon.call("PUT", "/v2/groups/shop", {"apps": [{**sleeper, "id": "web", "cmd": "sleep 1001"}],
                                                      "groups": [{"id": "cache", "apps": [{**sleeper, "id": "redis"}]}]})
    deployment_gone(marathon, second["deploymentId"])
    shop = marathon.call("GET", "/v2/groups/shop")
    assert [a["id"] for a in shop["apps"]] == ["/shop/web"] and shop["apps"][0]["cmd"] == "sleep 1001"
    assert [g["id"] for g in shop["groups"]] == ["/shop/cache"]
    assert marathon.status("GET", "/v2/apps/shop/db")[0] == 404
    only_groups = marathon.call("GET", "/v2/groups/shop?embed=group.groups")
    assert "apps" not in only_groups and [g["id"] for g in only_groups["groups"]] == ["/shop/cache"]

    back = marathon.call("PUT", "/v2/groups/shop", {"version": first["version"]})
    deployment_gone(marathon, back["deploymentId"])
    shop = marathon.call("GET", "/v2/groups/shop")
    assert sorted(a["id"] for a in shop["apps"]) == ["/shop/db", "/shop/web"] and shop["groups"] == []
    assert marathon.app("/shop/web")["cmd"] == "sleep 1000"
    # an empty group exists on its own, and stays once its apps are gone (Marathon's tree)
    assert marathon.status("POST", "/v2/groups", {"id": "/vacant"})[0] == 201
    assert marathon.call("GET", "/v2/groups/vacant")["apps"] == []
    marathon.call("DELETE", "/v2/apps/shop/db?force=true")
    wait_for(lambda: marathon.status("GET", "/v2/apps/shop/db")[0] == 404, timeout=30, what="db gone")
    assert marathon.status("GET", "/v2/groups/shop")[0] == 200


def test_app_check_results_reach_the_task_as_mesos_check_status(marathon, task_dir: Path) -> None:
    """Marathon 1.6's app `check`: kept in the app, run as a Mesos check next to the task, its
    result (Mesos's check_status) shown as the task's `checkResult`; it never kills."""
    flag = task_dir / "check-ok"
    command = {"id": "/checked/cmd", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1,
               "check": {"exec": {"command": {"shell": f"test -f {flag}"}}, "intervalSeconds": 1,
                         "timeoutSeconds": 5, "delaySeconds": 0}}
    assert marathon.status("POST", "/v2/apps", command)[0] == 201
    assert marathon.app("/checked/cmd")["check"] == {"exec": {"command": {"shell": f"test -f {flag}"}},
                                                     "intervalSeconds": 1, "timeoutSeconds": 5, "delaySeconds": 0}

    def result() -> dict:
        tasks = marathon.call("GET", "/v2/apps/checked/cmd/tasks")["tasks"]
        return tasks[0].get("checkResult", {}) if tasks else {}
    assert wait_for(result, timeout=40, what="a first check result") == {"command": {"exitCode": 1}}
    task_id = marathon.call("GET", "/v2/apps/checked/cmd/tasks")["tasks"][0]["id"]
    flag.write_text("")
    wait_for(lambda: result() == {"command": {"exitCode": 0}}, timeout=20, what="the check passing")
    assert [t["id"] for t in marathon.call("GET", "/v2/apps/checked/cmd/tasks")["tasks"]] == [task_id]

    http = {"id": "/checked/http", "cpus": 0.1, "mem": 32, "instances": 1, "portDefinitions": [{"port": 0}],
            "cmd": "mkdir www && echo ok > www/index.html && exec busybox httpd -f -p $PORT0 -h www",
            "check": {"http": {"portIndex": 0, "path": "/index.html"}, "intervalSeconds": 1, "delaySeconds": 0}}
    assert marathon.status("POST", "/v2/apps", http)[0] == 201
    wait_for(lambda: [t.get("checkResult") for t in marathon.call("GET", "/v2/apps/checked/http/tasks")["tasks"]]
             == [{"http": {"statusCode": 200}}], timeout=40, what="the HTTP check answered 200")


PORT_INDEX = "Health check port indices must address an element of the ports array or container port mappings."
INVALID = [
    ({"portDefinitions": [], "healthChecks": [{"protocol": "HTTP"}]}, "/healthChecks(0)", PORT_INDEX),
    ({"healthChecks": [{"protocol": "TCP", "portIndex": 1}]}, "/healthChecks(0)", PORT_INDEX),
    ({"healthChecks": [{"protocol": "MESOS_HTTP"}, {"protocol": "MESOS_TCP"}]}, "/",
     "AppDefinition can contain at most one Mesos health check"),
    ({"readinessChecks": [{"portName": "web"}]}, "/readinessChecks(0)/portName",
     "No port definition reference for portName web"),
    ({"portDefinitions": [{"port": 0, "name": "web"}],
      "readinessChecks": [{"portName": "web", "intervalSeconds": 5, "timeoutSeconds": 5}]},
     "/readinessChecks(0)/timeoutSeconds", "got 5, expected less than 5"),
    ({"portDefinitions": [{"port": 0, "name": "a"}, {"port": 0, "name": "a"}]}, "/portDefinitions",
     "Port names must be unique."),
    ({"labels": {"MARATHON_SINGLE_INSTANCE_APP": "true"}, "instances": 2}, "/",
     "Single instance app may only have one instance"),
    ({"check": {"tcp": {"portIndex": 3}}}, "/check",
     "Check port indices must address an element of the ports array or container port mappings."),
    ({"networks": [{"mode": "host"}], "container": {"type": "MESOS", "docker": {"image": "busybox:test"},
                                                    "portMappings": [{"containerPort": 80}]}},
     "/", "portMappings are not allowed with host-networking"),
]


@pytest.mark.parametrize(("extra", "path", "error"), INVALID, ids=[i[1] + " " + i[2][:30] for i in INVALID])
def test_validation_marathon_does_answers_its_422(marathon, extra: dict, path: str, error: str) -> None:
    status, body = marathon.status("POST", "/v2/apps", {"id": "/refused", "cmd": "sleep 600", "cpus": 0.1,
                                                        "mem": 32, **extra})
    assert status == 422 and body["message"] == "Object is not valid", body
    assert {"path": path, "errors": [error]} in body["details"], body
    assert marathon.status("GET", "/v2/apps/refused")[0] == 404


def test_a_rollback_version_goes_with_nothing_but_the_id(marathon) -> None:
    marathon.call("POST", "/v2/apps", {"id": "/versioned", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                       "instances": 0})
    version = marathon.app("/versioned")["version"]
    status, body = marathon.status("PUT", "/v2/apps/versioned", {"version": version, "cmd": "sleep 601"})
    assert status == 422 and body["details"] == [
        {"path": "/", "errors": ["The 'version' field may only be combined with the 'id' field."]}]
    assert marathon.status("PUT", "/v2/apps/versioned?force=true", {"id": "/versioned", "version": version})[0] == 200


@pytest.mark.parametrize(("accept", "status", "body", "media"), [
    (None, 200, b"pong", "text/plain"),
    ("application/json", 200, b'"pong"', "application/json"),
    ("text/html", 200, b"pong", "text/html"),
    ("text/csv, application/json;q=0.5", 200, b"pong", "text/plain"),
    ("image/png", 204, b"", None),
])
def test_ping_answers_as_the_client_accepts(marathon, accept: str | None, status: int, body: bytes,
                                            media: str | None) -> None:
    """Marathon 1.5+'s SystemResource.ping: JSON to whom asks for JSON, text otherwise, 204 when
    neither is acceptable; open to anyone."""
    got, headers, raw = marathon.as_(None).call("GET", "/ping", headers={"Accept": accept} if accept else {})
    assert (got, raw) == (status, body)
    assert (headers.get("content-type") or "").split(";")[0] == (media or "")


def test_app_tasks_as_text_and_tasks_delete_with_scale_and_wipe(marathon) -> None:
    marathon.call("POST", "/v2/apps", {"id": "/texted", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                       "instances": 2, "portDefinitions": [{"port": 0}, {"port": 0}]})
    app = marathon.wait_deployed("/texted")
    service_ports = [p["port"] for p in app["portDefinitions"]]
    status, headers, raw = marathon.api.call("GET", "/v2/apps/texted/tasks", headers={"Accept": "text/plain"})
    assert status == 200 and headers["content-type"].startswith("text/plain")
    # EndpointsHelper.appsToEndpointString: a line per service port, every running task's host:port
    lines = raw.decode().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [["texted", str(p)] for p in service_ports]
    for index, line in enumerate(lines):
        assert sorted(line.split("\t")[2:-1]) == sorted(f"{t['host']}:{t['ports'][index]}" for t in app["tasks"])
        assert line.endswith("\t")

    status, body = marathon.status("POST", "/v2/tasks/delete?scale=true&wipe=true", {"ids": []})
    assert (status, body["message"]) == (400, "You cannot use scale and wipe at the same time.")
    status, body = marathon.status("POST", "/v2/tasks/delete", {"ids": ["nonsense"]})
    assert (status, body["message"]) == (400, "Invalid task id 'nonsense'.")
    assert body["details"] == [{"path": "/ids(0)", "errors": ["Invalid task id 'nonsense'."]}]
    first, second = app["tasks"]
    gone = "texted.instance-00000000-0000-0000-0000-000000000000"
    status, body = marathon.status("POST", "/v2/tasks/delete?wipe=true", {"ids": [first["id"], gone]})
    assert status == 200 and [t["id"] for t in body["tasks"]] == [first["id"]]  # an unknown id is ignored
    wait_for(lambda: first["id"] not in {t["id"] for t in marathon.app("/texted")["tasks"]}
             and running(marathon, "/texted") == 2, timeout=40, what="the wiped task replaced")
    scaled = marathon.call("POST", "/v2/tasks/delete?scale=true", {"ids": [second["id"]]})
    deployment_gone(marathon, scaled["deploymentId"])
    assert marathon.app("/texted")["instances"] == 1


def test_a_queued_apps_launch_delay_is_reset(marathon) -> None:
    """QueueResource.resetDelay: an app in the launch queue starts its backoff over (204); one
    that is not there answers Marathon's 404."""
    marathon.call("POST", "/v2/apps", {"id": "/crashy", "cmd": "exit 1", "cpus": 0.1, "mem": 32, "instances": 1,
                                       "backoffSeconds": 120, "maxLaunchDelaySeconds": 300})

    def delayed() -> dict | None:
        queue = [q for q in marathon.call("GET", "/v2/queue")["queue"] if q["app"]["id"] == "/crashy"]
        return queue[0] if queue and queue[0]["delay"]["timeLeftSeconds"] > 60 else None
    wait_for(delayed, timeout=40, what="the crashing app delayed in the queue")
    failures = marathon.app("/crashy")["lastTaskFailure"]["taskId"]
    status, _, raw = marathon.api.call("DELETE", "/v2/queue/crashy/delay")
    assert (status, raw) == (204, b"")
    # launched again at once, not in two minutes
    wait_for(lambda: (f := marathon.app("/crashy").get("lastTaskFailure")) and f["taskId"] != failures,
             timeout=30, what="a new attempt after the reset")
    marathon.call("PUT", "/v2/apps/crashy?force=true", {"cmd": "sleep 600"})
    marathon.wait_deployed("/crashy", timeout=60)
    assert marathon.status("DELETE", "/v2/queue/crashy/delay") == (
        404, {"message": "Application /crashy not found in tasks queue."})


def test_pods_answer_as_a_marathon_without_pods(marathon) -> None:
    """A client probes pod support with `HEAD /v2/pods` (PodsResource.capability): 404 says none."""
    assert marathon.api.call("HEAD", "/v2/pods")[0] == 404
    for method, path in (("GET", "/v2/pods"), ("POST", "/v2/pods"), ("GET", "/v2/pods/web::status"),
                         ("DELETE", "/v2/pods/web")):
        assert marathon.status(method, path, {} if method == "POST" else None) == (
            404, {"message": "HTTP 404 Not Found"})
    assert marathon.as_(None).call("GET", "/v2/pods")[0] == 401  # behind the gate like the rest of /v2
    assert marathon.call("GET", "/v2/plugins") == {"plugins": []}  # PluginsResource: none loaded


def test_abdication_stops_a_lone_scheduler_as_marathon_does(cluster: Cluster, tmp_path: Path) -> None:
    """LeaderResource.delete: the leader says so and exits (code 3, as on any loss of leadership);
    whatever supervises it starts it again."""
    with SchedulerProcess.start(cluster, tmp_path / "abdicating") as scheduler:
        assert scheduler.status("DELETE", "/v2/leader?backup=file:///tmp/b")[0] == 400
        assert scheduler.status("DELETE", "/v2/leader") == (200, {"message": "Leadership abdicated"})
        wait_for(lambda: not scheduler.process.alive(), timeout=15, what="the scheduler to exit")
        assert scheduler.process.popen.returncode == 3


def test_groups_their_versions_and_a_group_deployment_survive_a_restart(cluster: Cluster, tmp_path: Path) -> None:
    """The tree (an empty group too), its kept versions and a group change's deployment, still
    running, are the store's: a new scheduler process answers them as the old one did."""
    from tests.services.conftest import Marathon

    first = Marathon.start(cluster, tmp_path, log_name="first.log")
    try:
        assert first.status("POST", "/v2/groups", {"id": "/kept/empty"})[0] == 201
        stuck = {"cmd": "sleep 600", "cpus": 0.1, "mem": 32, "constraints": [["rack", "IS", "nowhere"]]}
        held = first.call("POST", "/v2/groups", {"id": "/held", "apps": [{**stuck, "id": "a"}, {**stuck, "id": "b"}]})
        versions = first.call("GET", "/v2/groups/held/versions")
    finally:
        first.process.stop()
    second = Marathon.start(cluster, tmp_path, log_name="second.log")
    try:
        assert second.call("GET", "/v2/groups/kept/empty")["apps"] == []
        assert second.call("GET", "/v2/groups/held/versions") == versions
        [deployment] = second.call("GET", "/v2/deployments")
        assert deployment["id"] == held["deploymentId"] and deployment["affectedApps"] == ["/held/a", "/held/b"]
        second.call("DELETE", f"/v2/deployments/{held['deploymentId']}")  # rolls back both: removes them
        wait_for(lambda: second.status("GET", "/v2/apps/held/a")[0] == 404
                 and second.status("GET", "/v2/apps/held/b")[0] == 404, timeout=30, what="rolled back")
        second.call("DELETE", "/v2/groups?force=true")
    finally:
        second.process.stop()
