"""Service ports as Marathon assigns them, through the API of a real scheduler: each app port
asking for 0 gets a port of `--local-port-min`..`--local-port-max` that it keeps across
updates and restarts; a port another app holds is refused (422 naming it and its owner);
a deleted app's ports go back to the pool; `requirePorts` makes the service ports the
host ports. The ports show wherever the app does (apps, tasks, groups, deployments, events),
and a task's `ipAddresses` hold its agent's IP, also right after a restart."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.router.cluster import EventLog
from tests.services.conftest import Marathon
from tests.support.procs import dockyard, wait_for, worker_ports


def ports_of(app: dict) -> list[int]:
    return [p["port"] for p in app["portDefinitions"]]


def sleeper(app_id: str, ports: list[int], instances: int = 1, **extra: Any) -> dict:
    return {"id": app_id, "cmd": "sleep 600", "cpus": 0.05, "mem": 16, "instances": instances,
            "portDefinitions": [{"port": p} for p in ports], **extra}


def test_zeros_get_stable_unique_ports_shown_in_every_answer(marathon: Marathon) -> None:
    with EventLog(marathon, "api_post_event", "deployment_info") as events:
        created = marathon.call("POST", "/v2/apps", sleeper("/ports/a", [0, 0]))
        given = ports_of(created)
        assert len(set(given)) == 2 and all(10000 <= p < 20000 for p in given), given
        app = marathon.wait_deployed("/ports/a")
        assert ports_of(app) == given
        assert [t["servicePorts"] for t in app["tasks"]] == [given]
        assert [t["servicePorts"] for t in marathon.call("GET", "/v2/tasks")["tasks"]
                if t["appId"] == "/ports/a"] == [given]
        group = marathon.call("GET", "/v2/groups/ports")
        assert [ports_of(a) for a in group["apps"]] == [given]
        wait_for(lambda: events.of("deployment_info") and events.of("api_post_event"), timeout=10,
                 what="the deployment's events")
        assert ports_of(events.of("api_post_event")[0]["appDefinition"]) == given
        assert ports_of(events.of("deployment_info")[0]["plan"]["target"]["apps"][0]) == given

    # an update posting zeros again keeps them; a port more gets the next free one
    marathon.call("PUT", "/v2/apps/ports/a", {"portDefinitions": [{"port": 0}] * 3})
    updated = ports_of(marathon.wait_deployed("/ports/a"))
    assert updated[:2] == given and updated[2] not in given
    listed = [ports_of(a) for a in marathon.call("GET", "/v2/apps")["apps"] if a["id"] == "/ports/a"]
    assert listed == [updated]

    # a fixed port another app holds: 422 naming the field, the port and its owner
    status, body = marathon.status("POST", "/v2/apps", sleeper("/ports/b", [0, given[1]]))
    assert status == 422 and body["message"] == "Object is not valid", body
    assert body["details"] == [{"path": "/portDefinitions(1)/port", "errors": [
        f"Requested service port {given[1]} conflicts with a service port in app /ports/a"]}]
    assert marathon.status("GET", "/v2/apps/ports/b")[0] == 404

    # a container's portMappings get theirs in servicePort
    mapped = marathon.call("POST", "/v2/apps", {
        "id": "/ports/mapped", "cmd": "sleep 600", "cpus": 0.05, "mem": 16, "instances": 0,
        "container": {"type": "MESOS", "portMappings": [{"containerPort": 80, "hostPort": 0}]}})
    (service,) = [m["servicePort"] for m in mapped["container"]["portMappings"]]
    assert service and service not in updated

    # two apps of one group change get distinct ports
    marathon.call("POST", "/v2/groups", {"id": "/ports/g", "apps": [sleeper("x", [0], 0), sleeper("y", [0], 0)]})
    in_group = {a["id"]: ports_of(a) for a in marathon.call("GET", "/v2/groups/ports/g")["apps"]}
    assert len({p for ports in in_group.values() for p in ports} | set(updated) | {service}) == 6, in_group

    # deleting an app frees its ports for others
    marathon.call("DELETE", "/v2/apps/ports/a")
    wait_for(lambda: marathon.status("GET", "/v2/apps/ports/a")[0] == 404, timeout=30, what="/ports/a deleted")
    assert ports_of(marathon.call("POST", "/v2/apps", sleeper("/ports/b", [given[1]], 0))) == [given[1]]


def test_the_flags_bound_the_ports_which_outlive_a_restart_and_requireports_makes_them_host_ports(
        cluster, tmp_path: Path) -> None:
    low = int(worker_ports("ports:[31290-31293]").split("[")[1].split("-")[0])  # the agent's top ports
    flags = ["--local-port-min", str(low), "--local-port-max", str(low + 3)]
    first = Marathon.start(cluster, tmp_path, *flags, log_name="first.log")
    try:
        # its new instance needs the old one's host ports: the old one goes first
        first.call("POST", "/v2/apps", sleeper("/held", [0, 0], requirePorts=True, upgradeStrategy={
            "minimumHealthCapacity": 0, "maximumOverCapacity": 0}))
        app = first.wait_deployed("/held", timeout=60)
        assert ports_of(app) == [low, low + 1]
        assert [t["ports"] for t in app["tasks"]] == [[low, low + 1]]  # requirePorts: the host ports too
    finally:
        first.process.stop()
    second = Marathon.start(cluster, tmp_path, *flags, log_name="second.log")
    try:
        held = second.app("/held")
        assert ports_of(held) == [low, low + 1]
        # the agent's IP, known at once (kept in the store), though no offer may have come yet
        assert [t["ipAddresses"] for t in held["tasks"]] == [[{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]]
        second.call("PUT", "/v2/apps/held", {"portDefinitions": [{"port": 0}, {"port": 0}], "cmd": "sleep 601"})
        assert ports_of(second.wait_deployed("/held", timeout=60)) == [low, low + 1]
        assert ports_of(second.call("POST", "/v2/apps", sleeper("/next", [0], 0))) == [low + 2]
        status, body = second.status("POST", "/v2/apps", sleeper("/none-left", [0], 0))
        assert status == 409 and f"{low}-{low + 3}" in body["message"], body
        second.call("DELETE", "/v2/apps/held")
        wait_for(lambda: second.status("GET", "/v2/apps/held")[0] == 404, timeout=30, what="/held deleted")
        assert ports_of(second.call("POST", "/v2/apps", sleeper("/none-left", [0], 0))) == [low]
    finally:
        for app in second.call("GET", "/v2/apps")["apps"]:
            second.status("DELETE", f"/v2/apps{app['id']}?force=true")
        wait_for(lambda: not second.call("GET", "/v2/tasks")["tasks"], timeout=60, what="every task ended")
        second.process.stop()


def test_a_range_without_ports_is_refused_at_start() -> None:
    done = subprocess.run(dockyard("scheduler", "--local-port-min", "20000", "--local-port-max", "10000"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--local-port-min" in done.stderr, done.stderr
