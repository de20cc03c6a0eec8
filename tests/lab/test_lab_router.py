"""The lab's router: a real `dockyard router` and HAProxy on the control node, next to the
master and scheduler, reading the apps as the lab's other clients do (client.json's operator
and CA, over TLS).

An app of two instances, one on each agent node, in the router's group with a virtual host, is
reached from the host at the control node's address: on its service port and on the shared HTTP
port (:80) by its `Host`. One instance crashes (its process SIGKILLed in its node): it leaves
rotation, and every request meanwhile is answered by the other (HAProxy retries a refused
connection on another server); its replacement joins. A crash of the control node (`lab kill
control`) stops the router with the rest, `lab start control` brings it back serving. `lab down`
then leaves nothing, HAProxy included.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import cast

import pytest

from framework.local.lab import network
from framework.security import client as client_settings
from tests.support.procs import dockyard, wait_for
from tests.support.security import Endpoint

from .conftest import Lab, assert_clean

pytestmark = [pytest.mark.root]

VHOST = "shop.lab.test"
MARKER = "http.server"  # the app's command, to find its processes in a node
HEALTH = {"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30,
          "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 0}


def shop(python: str) -> dict:
    """Two instances, one per node; each answers its own task id."""
    return {"id": "/shop", "instances": 2, "cpus": 0.1, "mem": 48,
            "cmd": f"mkdir -p www && echo $MESOS_TASK_ID > www/index.html && "
                   f"exec {python} -m {MARKER} $PORT0 --directory www",
            "constraints": [["hostname", "UNIQUE"]], "portDefinitions": [{"port": 0, "name": "http"}],
            "healthChecks": [HEALTH],
            "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": VHOST}}


def get(ip: str, port: int, host: str | None = None, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """One request from the host to ip:port on a new connection: (status, body)."""
    connection = http.client.HTTPConnection(ip, port, timeout=5)
    headers = {"Host": host} if host else {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace").strip()
    finally:
        connection.close()


def running(api: Endpoint) -> dict[str, dict]:
    """Running and healthy instances by task id."""
    status, body = api.json("GET", "/v2/apps/shop/tasks")
    assert status == 200, body
    return {task["id"]: task for task in body["tasks"] if task.get("state") == "TASK_RUNNING"
            and all(check.get("alive") for check in task.get("healthCheckResults") or [{}])}


def answered(ip: str, port: int, host: str | None, requests: int = 12,
             failures: list[str] | None = None) -> set[str]:
    """Which instances answered `requests` requests; a failure is added to `failures`, or raised."""
    bodies = set()
    for _ in range(requests):
        try:
            status, body = get(ip, port, host)
            if status != 200:
                raise ValueError(f"HTTP {status}: {body[:200]}")
        except (OSError, http.client.HTTPException, ValueError) as error:
            if failures is None:
                raise
            failures.append(f"{host or port}: {error}")
            continue
        bodies.add(body)
    return bodies


def router_status(lab: Lab) -> dict:
    """`dockyard router status --json` of the control node's router, from the host."""
    done = subprocess.run(dockyard("router", "status", "--work-dir", str(lab.dir / "control" / "router"), "--json"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def served(lab: Lab) -> set[str]:
    """The task ids the router has servers for."""
    return {server["task"] for backend in router_status(lab)["backends"] for server in backend["servers"]}


def two_healthy(api: Endpoint) -> dict[str, dict] | None:
    found = running(api)
    return found if len(found) == 2 else None


def instance_pid(netns: str) -> int | None:
    """The app's server process (`python -m http.server`) in a node."""
    for pid in network.netns_pids(netns):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[1:3] == ["-m", MARKER]:
            return pid
    return None


def test_the_router_on_the_control_node_serves_an_app_and_follows_a_crash(lab: Lab, task_python: str) -> None:
    lab.up("--agents", "2", timeout=240)
    report = lab.status()
    nodes = {node["name"]: node for node in report["nodes"]}
    control = nodes["control"]
    ip = control["ip"]
    router = next(role for role in control["roles"] if role["role"] == "router")
    assert router["healthy"] and router["address"] == f"{ip}:80", router
    # Its stats page (on the control node's address) asks for the credentials the router uses.
    auth = client_settings.load(str(lab.dir / "client.json")).auth
    assert get(ip, 9090)[0] == 401
    assert get(ip, 9090, auth=auth)[0] == 200
    assert router_status(lab)["haproxy"]["running"]

    api = lab.scheduler_api()
    status, app = api.json("POST", "/v2/apps", shop(task_python))
    assert status == 201, app
    service_port = app["portDefinitions"][0]["port"]
    assert 10000 <= service_port < 20000, app
    tasks = cast(dict[str, dict], wait_for(lambda: two_healthy(api), timeout=90, what="two healthy instances"))
    assert {task["host"] for task in tasks.values()} == {"agent1", "agent2"}

    # From the host, at the control node's address: the service port and the virtual host, each
    # spread over both instances (round robin).
    wanted = set(tasks)
    wait_for(lambda: answered(ip, service_port, None) == wanted, timeout=30, interval=0.2,
             what="both instances through the service port")
    wait_for(lambda: answered(ip, 80, VHOST) == wanted, timeout=30, interval=0.2,
             what="both instances through the virtual host")
    assert get(ip, 80, "other.lab.test")[0] == 404
    assert served(lab) == wanted

    victim, task = sorted(tasks.items())[0]
    pid = instance_pid(nodes[task["host"]]["netns"])
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # It leaves rotation; meanwhile and after, every request is answered, never by the victim.
    failures: list[str] = []

    def left() -> bool:
        bodies = answered(ip, service_port, None, 4, failures) | answered(ip, 80, VHOST, 4, failures)
        return victim not in served(lab) and victim not in bodies

    wait_for(left, timeout=30, interval=0.1, what="the crashed instance out of rotation")
    for _ in range(3):
        assert victim not in answered(ip, service_port, None, 12, failures) | answered(ip, 80, VHOST, 12, failures)
    assert failures == []
    # Its replacement joins once healthy.
    replaced = set(cast(dict[str, dict], wait_for(lambda: two_healthy(api), timeout=60, what="a healthy replacement")))
    assert victim not in replaced
    wait_for(lambda: answered(ip, service_port, None) == replaced, timeout=30, interval=0.2,
             what="the replacement in rotation")

    # A crash of the control node takes the router and its HAProxy with the master and the scheduler;
    # `lab start control` brings them back, and the router serves the instances that ran on meanwhile.
    lab.run("kill", "control")
    assert network.netns_pids(control["netns"]) == []
    with pytest.raises(OSError):
        get(ip, service_port)
    lab.run("start", "control", timeout=180)
    wait_for(lambda: answered(ip, 80, VHOST) == replaced, timeout=60, interval=0.2,
             what="the instances through the restarted router")

    lab.run("down")
    assert_clean(lab)  # HAProxy too: its command line names the lab's directory
