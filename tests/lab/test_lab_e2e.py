"""The real cluster in a lab: a UNIQUE-hostname service through a partition.

Four agents, three instances with `["hostname", "UNIQUE"]`: when one instance's
node is cut off, the master loses the agent and the scheduler must place the
replacement on the one agent that has no instance yet. After the heal the
stale instance on the healed node must go (Mesos kills the tasks of a framework
that is not PARTITION_AWARE when its agent re-registers; a PARTITION_AWARE
framework kills the excess itself), leaving exactly three instances on three
nodes. With three agents the lost instance cannot be placed elsewhere: it is
reported and comes back on the healed node (slow test). `lab down` then leaves
nothing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from framework.local.lab import network
from tests.support.procs import wait_for
from tests.support.security import Endpoint

from .conftest import Lab, assert_clean, serves

# Agents are declared lost 5 s after they go silent (Mesos' default is 75 s).
FAST_DRILLS = "--agent-ping-interval 1 --agent-ping-timeout 5"
APP_ID = "/lab-web"
MARKER = "http.server"   # the service's command, to find its processes in a node

pytestmark = [
    pytest.mark.root,
]


def running(api: Endpoint) -> list[dict]:
    status, body = api.json("GET", f"/v2/apps{APP_ID}/tasks")
    assert status == 200, body
    return [task for task in body["tasks"] if task.get("state") == "TASK_RUNNING"]


def hosts(tasks: list[dict]) -> set[str]:
    return {task["host"] for task in tasks}


def running_on(api: Endpoint, wanted: set[str]) -> list[dict] | None:
    """The running tasks when there is exactly one on each host of `wanted`."""
    tasks = running(api)
    return tasks if len(tasks) == len(wanted) and hosts(tasks) == wanted else None


def spread_over(api: Endpoint, count: int) -> list[dict] | None:
    tasks = running(api)
    return tasks if len(tasks) == count and len(hosts(tasks)) == count else None



def service_processes(netns: str) -> list[int]:
    """PIDs of the service's processes inside one node."""
    found = []
    for pid in network.netns_pids(netns):
        try:
            if MARKER in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(pid)
        except OSError:
            continue
    return found


def wait_instances(netns: str, count: int, what: str, timeout: float = 60) -> None:
    """Wait until `count` service processes run in the node; say how many did if not."""
    seen: list[int] = []

    def check() -> bool:
        seen[:] = service_processes(netns)
        return len(seen) == count

    try:
        wait_for(check, timeout=timeout, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}: {len(seen)} running after {timeout}s "
                             f"(pids {seen})") from None


def active_agents(master: Endpoint) -> set[str]:
    state = master.get_json("/state")
    return {agent["hostname"] for agent in state["slaves"] if agent.get("active", True)}


def start_service(lab: Lab, agents: int, python: str) -> tuple[Endpoint, Endpoint, dict[str, dict]]:
    """The service on `agents` nodes, run by `python` (one its task user, nobody, may run)."""
    lab.up("--agents", str(agents), "--master-args", FAST_DRILLS, timeout=240)
    report = lab.status()
    nodes = {node["name"]: node for node in report["nodes"]}
    api, master = lab.scheduler_api(), lab.master_api()
    assert (api.url, master.url) == (report["urls"]["scheduler"], report["urls"]["master"])
    wait_for(lambda: len(active_agents(master)) == agents, timeout=60, what="agents")
    status, body = api.json("POST", "/v2/apps", {
        "id": APP_ID, "cmd": f"exec {python} -m {MARKER} $PORT0", "cpus": 0.1, "mem": 64,
        "instances": 3, "constraints": [["hostname", "UNIQUE"]],
        "portDefinitions": [{"port": 0}],
    })
    assert status == 201, body
    return api, master, nodes


def test_partitioned_instance_is_replaced_on_a_free_node_then_healed(lab: Lab, task_python: str) -> None:
    api, master, nodes = start_service(lab, agents=4, python=task_python)
    first = wait_for(lambda: spread_over(api, 3), timeout=90, what="3 instances on 3 nodes")
    # The service answers from the host at each node's own address and port.
    for task in first:
        wait_for(lambda: serves(nodes[task["host"]]["ip"], task["ports"][0]), timeout=30,
                 what=f"instance on {task['host']}")
    victim = first[0]["host"]
    spare = (set(nodes) - {"control"} - hosts(first)).pop()
    assert service_processes(nodes[spare]["netns"]) == []

    lab.run("partition", victim)
    wait_for(lambda: victim not in active_agents(master), timeout=60, what="agent lost")
    moved_to = hosts(first) - {victim} | {spare}
    replaced = wait_for(lambda: running_on(api, moved_to), timeout=120,
                        what=f"the instance on {victim} replaced on {spare}")
    moved = next(task for task in replaced if task["host"] == spare)
    wait_for(lambda: serves(nodes[spare]["ip"], moved["ports"][0]), timeout=30,
             what="replacement serving")
    assert service_processes(nodes[victim]["netns"]), "a partition does not stop the node"

    lab.run("heal", victim)
    wait_for(lambda: victim in active_agents(master), timeout=60, what="agent back")
    # The stale instance on the healed node goes; three instances stay where they are.
    wait_instances(nodes[victim]["netns"], 0, f"the stale instance on {victim} killed "
                   "after the heal")
    assert running_on(api, moved_to)

    status, _ = api.json("DELETE", f"/v2/apps{APP_ID}")
    assert status in (200, 202)
    wait_for(lambda: api.json("GET", f"/v2/apps{APP_ID}")[0] == 404, timeout=60,
             what="app deleted")
    lab.run("down")
    assert_clean(lab)


@pytest.mark.slow
def test_with_three_agents_the_lost_instance_waits_for_the_heal(lab: Lab, task_python: str) -> None:
    api, master, nodes = start_service(lab, agents=3, python=task_python)
    first = wait_for(lambda: spread_over(api, 3), timeout=90, what="3 instances on 3 nodes")
    victim = first[0]["host"]
    lab.run("partition", victim)
    wait_for(lambda: victim not in active_agents(master), timeout=60, what="agent lost")
    # UNIQUE leaves nowhere else to go: two instances, never two on one node.
    wait_for(lambda: running_on(api, hosts(first) - {victim}), timeout=60,
             what="the lost instance reported")
    lab.run("heal", victim)
    wait_for(lambda: running_on(api, hosts(first)), timeout=120,
             what=f"an instance back on {victim}")
    wait_instances(nodes[victim]["netns"], 1, f"exactly one instance on {victim}")
    lab.run("down")
    assert_clean(lab)
