"""The real cluster in a lab: a UNIQUE-hostname service survives a partition.

Four agents, three instances with `["hostname", "UNIQUE"]`: when one instance's
node is cut off, the master loses the agent and the scheduler must place the
replacement on the one agent that has no instance yet (with three agents it
could not be placed until the heal; see the second test). After the heal the
service is back to exactly three instances on three different nodes, and
`lab down` leaves nothing.
"""
from __future__ import annotations

import importlib.util
import json
import urllib.error
import urllib.request

import pytest

from tests.support.procs import wait_for

from .conftest import Lab, assert_clean

# Agents are declared lost 5 s after they go silent (Mesos' default is 75 s).
FAST_DRILLS = "--agent-ping-interval 1 --agent-ping-timeout 5"
APP_ID = "/lab-web"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(importlib.util.find_spec("scheduler.api.marathon") is None,
                       reason="the scheduler's Marathon API (scheduler/api/marathon.py) "
                              "is not in this checkout yet"),
]


def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def running(api: str) -> list[dict]:
    status, body = call("GET", f"{api}/v2/apps{APP_ID}/tasks")
    assert status == 200, body
    return [task for task in body["tasks"] if task.get("state", "TASK_RUNNING") == "TASK_RUNNING"]


def serves(ip: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def agents_in_master(api_master: str) -> set[str]:
    with urllib.request.urlopen(f"{api_master}/state", timeout=3) as response:
        state = json.loads(response.read())
    return {agent["hostname"] for agent in state["slaves"] if agent.get("active", True)}


def start_service(lab: Lab, agents: int) -> tuple[str, str, dict[str, str]]:
    lab.up("--agents", str(agents), "--master-args", FAST_DRILLS, timeout=240)
    report = lab.status()
    ips = {node["name"]: node["ip"] for node in report["nodes"]}
    api, master = report["urls"]["scheduler"], report["urls"]["master"]
    wait_for(lambda: len(agents_in_master(master)) == agents, timeout=60, what="agents")
    status, body = call("POST", f"{api}/v2/apps", {
        "id": APP_ID, "cmd": "exec python3 -m http.server $PORT0", "cpus": 0.1, "mem": 64,
        "instances": 3, "constraints": [["hostname", "UNIQUE"]],
        "portDefinitions": [{"port": 0}],
    })
    assert status == 201, body
    return api, master, ips


def spread(tasks: list[dict]) -> set[str]:
    return {task["host"] for task in tasks}


def test_partitioned_instance_is_replaced_on_a_free_node_then_healed(lab: Lab) -> None:
    api, master, ips = start_service(lab, agents=4)
    first = wait_for(lambda: (t := running(api)) if len(spread(t)) == 3 else None,
                     timeout=90, what="3 instances on 3 nodes")
    # The service answers from the host at each node's own address and port.
    for task in first:
        wait_for(lambda: serves(ips[task["host"]], task["ports"][0]), timeout=30,
                 what=f"instance on {task['host']}")
    victim = first[0]["host"]
    spare = (set(ips) - {"control"} - spread(first)).pop()

    lab.run("partition", victim)
    wait_for(lambda: victim not in agents_in_master(master), timeout=60, what="agent lost")
    replaced = wait_for(lambda: (t := running(api)) if spread(t) == spread(first) - {victim}
                        | {spare} and len(t) == 3 else None, timeout=120,
                        what=f"instance of {victim} replaced on {spare}")
    moved = next(task for task in replaced if task["host"] == spare)
    wait_for(lambda: serves(ips[spare], moved["ports"][0]), timeout=30, what="replacement")

    lab.run("heal", victim)
    wait_for(lambda: victim in agents_in_master(master), timeout=60, what="agent back")
    # Back to exactly three, on three nodes: the healed node's stale instance is
    # not kept as a fourth.
    wait_for(lambda: len(t := running(api)) == 3 and len(spread(t)) == 3, timeout=90,
             what="three instances after heal")
    status, _ = call("DELETE", f"{api}/v2/apps{APP_ID}")
    assert status in (200, 202)
    wait_for(lambda: call("GET", f"{api}/v2/apps{APP_ID}")[0] == 404, timeout=60,
             what="app deleted")
    lab.run("down")
    assert_clean(lab)


def test_with_three_agents_the_lost_instance_waits_for_the_heal(lab: Lab) -> None:
    api, master, ips = start_service(lab, agents=3)
    first = wait_for(lambda: (t := running(api)) if len(spread(t)) == 3 else None,
                     timeout=90, what="3 instances on 3 nodes")
    victim = first[0]["host"]
    lab.run("partition", victim)
    wait_for(lambda: victim not in agents_in_master(master), timeout=60, what="agent lost")
    # UNIQUE leaves nowhere else to go: two instances, never two on one node.
    wait_for(lambda: spread(t := running(api)) == spread(first) - {victim} and len(t) == 2,
             timeout=60, what="instance reported lost")
    lab.run("heal", victim)
    wait_for(lambda: len(t := running(api)) == 3 and spread(t) == spread(first), timeout=120,
             what=f"instance back on {victim}")
    lab.run("down")
    assert_clean(lab)
