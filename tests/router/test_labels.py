"""marathon-lb's labels, checked as the scheduler checks them at deploy time."""
from __future__ import annotations

import pytest

from scheduler.router.labels import read_ports, route_claims, route_clashes, router_ports, validate_router_labels


def app(labels: dict, ports: list[int] | None = None, **extra) -> dict:
    return {"id": "/shop/web", "labels": labels,
            "portDefinitions": [{"port": p} for p in (ports if ports is not None else [10101])], **extra}


def paths(problems: list[tuple[str, str]]) -> list[str]:
    return [path for path, _ in problems]


def test_good_labels_pass_and_are_read():
    good = app({"HAPROXY_GROUP": "external,internal", "HAPROXY_0_VHOST": "Shop.Example.com, www.example.com",
                "HAPROXY_0_PATH": "/api /v1/", "HAPROXY_1_MODE": "TCP", "HAPROXY_1_PORT": "15432",
                "HAPROXY_1_ENABLED": "yes", "HAPROXY_0_BACKEND_HEAD": "free\ntext # ignored, never written"},
               ports=[10101, 0])
    assert validate_router_labels(good) == []
    first, second = read_ports(good)[0]
    assert first.vhosts == ("shop.example.com", "www.example.com") and first.paths == ("/api", "/v1/")
    assert first.mode == "http" and first.bind_port == 10101 and first.groups == {"external", "internal"}
    assert second.mode == "tcp" and second.bind_port == 15432 and second.enabled
    assert router_ports(good) == [10101, 15432]


@pytest.mark.parametrize("labels, path, words", [
    ({"HAPROXY_0_VHOST": "my host.example.com"}, "/labels/HAPROXY_0_VHOST", "not a host name"),
    ({"HAPROXY_0_VHOST": "a..b"}, "/labels/HAPROXY_0_VHOST", "not a host name"),
    ({"HAPROXY_0_MODE": "udp"}, "/labels/HAPROXY_0_MODE", "http or tcp"),
    ({"HAPROXY_0_PORT": "0"}, "/labels/HAPROXY_0_PORT", "1 to 65535"),
    ({"HAPROXY_0_PORT": "65536"}, "/labels/HAPROXY_0_PORT", "1 to 65535"),
    ({"HAPROXY_0_PORT": "eighty"}, "/labels/HAPROXY_0_PORT", "1 to 65535"),
    ({"HAPROXY_0_PATH": "api"}, "/labels/HAPROXY_0_PATH", "starts with '/'"),
    ({"HAPROXY_0_ENABLED": "maybe"}, "/labels/HAPROXY_0_ENABLED", "true or false"),
    ({"HAPROXY_GROUP": "ext ernal"}, "/labels/HAPROXY_GROUP", "group name"),
    ({"HAPROXY_0_MODE": "tcp", "HAPROXY_0_VHOST": "a.example"}, "/labels/HAPROXY_0_MODE", "needs http"),
    ({"HAPROXY_3_VHOST": "a.example"}, "/labels/HAPROXY_3_VHOST", "has 1 port"),
])
def test_bad_values_are_refused_naming_the_label(labels, path, words):
    problems = validate_router_labels(app({"HAPROXY_GROUP": "external", **labels}))
    assert path in paths(problems), problems
    assert any(words in message for p, message in problems if p == path), problems


@pytest.mark.parametrize("value", [
    "a.example\n  server evil 10.0.0.1:22",
    "a.example # comment",
    'a.example" "b',
    "a.example' 'b",
    "/api\\x",
    "a.example\r",
])
def test_values_that_would_inject_config_are_refused(value):
    for key in ("HAPROXY_0_VHOST", "HAPROXY_0_PATH", "HAPROXY_GROUP", "HAPROXY_0_MODE", "HAPROXY_0_PORT"):
        problems = validate_router_labels(app({key: value}))
        assert problems and problems[0][0] == f"/labels/{key}", (key, problems)
        assert "HAProxy's configuration" in problems[0][1]
        # and the port it concerns is left out of what the router serves
        assert read_ports(app({key: value}))[0] == []


def test_a_port_another_app_binds_is_refused():
    taken = {15432: "/db", 10101: "/shop/web"}
    problems = validate_router_labels(app({"HAPROXY_0_PORT": "15432"}), taken_ports=taken)
    assert problems == [("/labels/HAPROXY_0_PORT", "port 15432 is taken by app /db")]
    assert validate_router_labels(app({"HAPROXY_0_PORT": "10101"}), taken_ports=taken) == []


def test_two_ports_of_one_app_on_one_router_port_are_refused():
    problems = validate_router_labels(app({"HAPROXY_1_PORT": "10101"}, ports=[10101, 0]))
    assert paths(problems) == ["/labels/HAPROXY_1_PORT"]


def test_a_virtual_host_and_path_another_app_of_the_group_has_are_refused():
    def other(labels: dict, app_id: str = "/blog") -> dict:
        return {app_id: route_claims({**app(labels), "id": app_id})}

    taken = other({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.test,www.test", "HAPROXY_0_PATH": "/api"})
    mine = app({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "WWW.test", "HAPROXY_0_PATH": "/api"})
    assert route_clashes(mine, taken) == [
        ("/labels/HAPROXY_0_VHOST", "host www.test and path /api already go to app /blog (HAPROXY_0_VHOST)")]
    # another path, another group, a disabled port or an update of the owner itself: no clash
    assert route_clashes(app({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "www.test",
                              "HAPROXY_0_PATH": "/web"}), taken) == []
    assert route_clashes(app({"HAPROXY_GROUP": "internal", "HAPROXY_0_VHOST": "www.test",
                              "HAPROXY_0_PATH": "/api"}), taken) == []
    assert route_clashes(app({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "www.test", "HAPROXY_0_PATH": "/api",
                              "HAPROXY_0_ENABLED": "false"}), taken) == []
    assert route_clashes({**mine, "id": "/blog"}, taken) == []
    # a path alone on any host, and two ports of one app on one route
    paths_only = other({"HAPROXY_0_PATH": "/shop"}, "/shop")
    assert paths(route_clashes(app({"HAPROXY_0_PATH": "/shop"}), paths_only)) == ["/labels/HAPROXY_0_PATH"]
    assert paths(route_clashes(app({"HAPROXY_0_VHOST": "a.test", "HAPROXY_1_VHOST": "a.test"}, ports=[10101, 10102]),
                               {})) == ["/labels/HAPROXY_1_VHOST"]


def test_mode_follows_marathon_lb_defaults():
    http_checked = app({}, healthChecks=[{"protocol": "MESOS_HTTP", "portIndex": 0, "path": "/"}])
    assert read_ports(http_checked)[0][0].mode == "http"
    assert read_ports(app({}))[0][0].mode == "tcp"
    assert read_ports(app({"HAPROXY_0_PATH": "/x"}))[0][0].mode == "http"


def test_an_app_definition_object_is_read_through_its_json():
    from scheduler.services.specs import AppDefinition

    definition = AppDefinition.model_validate({"id": "/a", "cmd": "true", "labels": {"HAPROXY_0_MODE": "smtp"},
                                               "portDefinitions": [{"port": 0}]})
    assert paths(validate_router_labels(definition)) == ["/labels/HAPROXY_0_MODE"]
