"""AppDefinition validation and normalised output (the `marathon` client must accept it)."""
import pytest
from marathon.models import MarathonApp

from scheduler.services.instances import container_info, health_check_info, task_request
from scheduler.services.specs import AppSpecError, parse_app


def test_defaults_are_filled_and_the_client_accepts_the_output():
    app = parse_app({"id": "//shop/web", "cmd": "httpd", "healthChecks": [{"protocol": "MESOS_HTTP"}],
                     "constraints": [["hostname", "UNIQUE"]], "unknownField": 1})
    out = app.out()
    assert out["id"] == "/shop/web" and out["cpus"] == 1.0 and out["mem"] == 128.0
    assert out["backoffFactor"] == 1.15 and out["maxLaunchDelaySeconds"] == 300
    assert out["upgradeStrategy"] == {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
    assert out["healthChecks"][0] == {"protocol": "MESOS_HTTP", "gracePeriodSeconds": 300, "intervalSeconds": 60,
                                      "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15,
                                      "portIndex": 0, "path": "/", "ignoreHttp1xx": False}
    assert out["labels"] == {} and out["portDefinitions"][0]["port"] == 0
    assert "unknownField" not in out
    parsed = MarathonApp.from_json(out)  # raises TypeError on any key it does not know
    assert parsed.id == "/shop/web"


@pytest.mark.parametrize("document, paths", [
    ({"id": "/x", "cmd": "run", "cpus": -1, "mem": "lots"}, {"/cpus", "/mem"}),
    ({"id": "/x", "cmd": "run", "upgradeStrategy": {"minimumHealthCapacity": 2}},
     {"/upgradeStrategy/minimumHealthCapacity"}),
    ({"id": "/x"}, {"/"}),
    ({"id": "/x", "cmd": "run", "args": ["b"]}, {"/"}),
    ({"id": "/Bad_Id", "cmd": "run"}, {"/id"}),
    ({"id": "/x", "cmd": "run", "healthChecks": [{"protocol": "FTP"}]}, {"/healthChecks(0)/protocol"}),
    ({"id": "/x", "cmd": "run", "constraints": [["rack", "NEAR", "a"]]}, {"/constraints(0)"}),
    ({"id": "/x", "cmd": "run", "killSelection": "RANDOM"}, {"/killSelection"}),
])
def test_validation_names_each_bad_field(document, paths):
    with pytest.raises(AppSpecError) as info:
        parse_app(document)
    assert {d["path"] for d in info.value.details} == paths


def test_partial_update_merges_over_the_current_definition():
    base = parse_app({"id": "/x", "cmd": "run", "instances": 2, "env": {"A": "1"}})
    app = parse_app({"instances": 5}, base=base, app_id="/x")
    assert (app.cmd, app.instances, app.env) == ("run", 5, {"A": "1"})
    assert app.config_equal(base) and not parse_app({"cmd": "rerun"}, base=base).config_equal(base)


def test_task_request_translation():
    app = parse_app({"id": "/shop/web", "cmd": "run", "cpus": 0.5, "mem": 64, "requirePorts": True,
                     "portDefinitions": [{"port": 8080, "name": "http"}, {"port": 0, "name": "admin"}],
                     "constraints": [["rack", "IS", "a"]], "taskKillGracePeriodSeconds": 7,
                     "container": {"type": "MESOS", "docker": {"image": "busybox:latest"},
                                   "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RO"}]},
                     "healthChecks": [{"protocol": "MESOS_TCP", "portIndex": 1, "gracePeriodSeconds": 5}]})
    app.version = "2026-01-01T00:00:00.000Z"
    request = task_request(app)
    assert request.owner == "app:/shop/web" and request.task_id.startswith("shop_web.instance-")
    assert request.ports == 2 and request.required_ports == [8080]
    assert request.labels["dockyard.portNames"] == "http,admin"
    assert request.env["MARATHON_APP_ID"] == "/shop/web" and request.kill_grace_seconds == 7
    assert request.command == {"shell": True, "value": "run"}
    assert container_info(app) == {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {
        "name": "busybox:latest"}, "cached": True}}, "volumes": [
        {"container_path": "/data", "host_path": "/srv", "mode": "RO"}]}
    check = health_check_info(app)
    assert check["type"] == "TCP" and check["tcp"] == {"port": 0, "port_index": 1}
    assert check["grace_period_seconds"] == 5 and check["consecutive_failures"] == 3
    assert request.constraints[0].describe() == "rack:IS:a"


def test_dependencies_resolve_against_the_apps_group():
    from scheduler.services.dependencies import dependency_ids

    app = parse_app({"id": "/shop/web/front", "cmd": "run", "dependencies": ["db", "../cache", "/infra/dns"]})
    assert dependency_ids(app) == ["/shop/web/db", "/shop/cache", "/infra/dns"]
    assert dependency_ids(parse_app({"id": "/solo", "cmd": "run", "dependencies": ["db"]})) == ["/db"]


def test_dependency_cycles_are_found() -> None:
    from scheduler.services.dependencies import find_cycle

    assert find_cycle({"/a": ["/b"], "/b": ["/c"], "/c": ["/a"]}) == ["/a", "/b", "/c", "/a"]
    assert find_cycle({"/a": ["/a"]}) == ["/a", "/a"]
    assert find_cycle({"/x": ["/a"], "/a": ["/b"], "/b": ["/a"]}) == ["/a", "/b", "/a"]
    assert find_cycle({"/web": ["/db", "/cache"], "/cache": ["/db"], "/db": []}) == []  # a diamond is fine
    assert find_cycle({"/web": ["/missing"]}) == []
