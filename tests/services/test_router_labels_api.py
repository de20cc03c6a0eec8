"""The router's labels (marathon-lb's HAPROXY_*) and the drain label are checked when an app is
deployed: a bad value is a 422 naming the label, nothing is stored and nothing starts (the
router would have had to leave the port out). Apps, updates and group changes alike."""
from __future__ import annotations

import pytest

from tests.services.conftest import Marathon


def app(app_id: str, labels: dict[str, str], ports: list[int] | None = None) -> dict:
    return {"id": app_id, "cmd": "sleep 600", "cpus": 0.05, "mem": 16, "instances": 0,
            "portDefinitions": [{"port": p} for p in (ports if ports is not None else [0])],
            "labels": {"HAPROXY_GROUP": "external", **labels}}


def refused(marathon: Marathon, method: str, path: str, body: dict) -> list[dict]:
    status, answer = marathon.status(method, path, body)
    assert status == 422 and answer["message"] == "Object is not valid", (status, answer)
    return answer["details"]


@pytest.mark.parametrize("labels, label, words", [
    ({"HAPROXY_0_VHOST": "my host.example.com"}, "HAPROXY_0_VHOST", "not a host name"),
    ({"HAPROXY_0_MODE": "udp"}, "HAPROXY_0_MODE", "http or tcp"),
    ({"HAPROXY_0_PORT": "70000"}, "HAPROXY_0_PORT", "1 to 65535"),
    ({"HAPROXY_0_PORT": "0"}, "HAPROXY_0_PORT", "1 to 65535"),
    ({"HAPROXY_0_VHOST": "web.test\n  server x 203.0.113.9:22"}, "HAPROXY_0_VHOST", "newlines"),
    ({"HAPROXY_0_PATH": "/a#b"}, "HAPROXY_0_PATH", "'#'"),
    ({"HAPROXY_GROUP": "ext'ernal"}, "HAPROXY_GROUP", "quotes"),
    ({"dockyard.drainSeconds": "forever"}, "dockyard.drainSeconds", "number of seconds"),
])
def test_a_bad_label_is_refused_naming_it(marathon: Marathon, labels: dict, label: str, words: str) -> None:
    details = refused(marathon, "POST", "/v2/apps", app("/labelled", labels))
    assert [d["path"] for d in details] == [f"/labels/{label}"], details
    assert words in details[0]["errors"][0], details
    assert marathon.status("GET", "/v2/apps/labelled")[0] == 404


def test_a_router_port_taken_by_another_app_and_injection_through_the_id(marathon: Marathon) -> None:
    owner = marathon.call("POST", "/v2/apps", app("/owner", {"HAPROXY_0_PORT": "18081"}))
    service = owner["portDefinitions"][0]["port"]
    for port, holder in ((service, "/owner"), (18081, "/owner")):  # its service port, its router port
        details = refused(marathon, "POST", "/v2/apps", app("/thief", {"HAPROXY_0_PORT": str(port)}))
        assert details == [{"path": "/labels/HAPROXY_0_PORT", "errors": [f"port {port} is taken by app {holder}"]}]
    # nor may a service port be one another app's router binds
    details = refused(marathon, "POST", "/v2/apps", app("/thief", {}, ports=[18081]))
    assert details == [{"path": "/portDefinitions(0)/port",
                        "errors": ["Requested service port 18081 conflicts with the router port of app /owner"]}]
    status, answer = marathon.status("POST", "/v2/apps", app("/bad#id", {}))
    assert status == 422 and answer["details"][0]["path"] == "/id", answer


def test_a_virtual_host_another_app_of_the_group_routes_is_refused_naming_it(marathon: Marathon) -> None:
    marathon.call("POST", "/v2/apps", app("/site", {"HAPROXY_0_VHOST": "site.test"}))
    details = refused(marathon, "POST", "/v2/apps", app("/copy", {"HAPROXY_0_VHOST": "site.test"}))
    assert details == [{"path": "/labels/HAPROXY_0_VHOST",
                        "errors": ["host site.test and path / already go to app /site (HAPROXY_0_VHOST)"]}]
    assert marathon.status("GET", "/v2/apps/copy")[0] == 404
    # the owner may change its own app, and another path on the host is another route
    marathon.call("PUT", "/v2/apps/site", {"labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "site.test"}})
    marathon.call("POST", "/v2/apps", app("/copy", {"HAPROXY_0_VHOST": "site.test", "HAPROXY_0_PATH": "/copy"}))
    # once the owner is gone, the route is free
    marathon.call("DELETE", "/v2/apps/site")
    marathon.call("POST", "/v2/apps", app("/site2", {"HAPROXY_0_VHOST": "site.test"}))


def test_updates_and_group_changes_are_checked_too(marathon: Marathon) -> None:
    marathon.call("POST", "/v2/apps", app("/kept", {"HAPROXY_0_VHOST": "kept.test"}))
    details = refused(marathon, "PUT", "/v2/apps/kept", {"labels": {"HAPROXY_0_VHOST": "kept test"}})
    assert [d["path"] for d in details] == ["/labels/HAPROXY_0_VHOST"]
    assert marathon.app("/kept")["labels"]["HAPROXY_0_VHOST"] == "kept.test"  # unchanged
    details = refused(marathon, "POST", "/v2/groups", {"id": "/shop", "apps": [
        {**app("good", {}), "id": "good"}, {**app("bad", {"HAPROXY_0_MODE": "udp"}), "id": "bad"}]})
    assert [d["path"] for d in details] == ["/apps(/shop/bad)/labels/HAPROXY_0_MODE"], details
    assert marathon.status("GET", "/v2/apps/shop/good")[0] == 404  # the whole change was refused
