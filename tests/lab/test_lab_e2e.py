"""The real cluster in a lab: services through a partition, as docs/lab.md's drill runs it.

A partitioned node's agent is lost after the master's ping timeout and its
instance turns TASK_UNREACHABLE. With `inactiveAfterSeconds: 0` a replacement
starts at once on a node that has none (`["hostname", "UNIQUE"]`). What the heal
does depends on `expungeAfterSeconds`, as in Marathon: back before it, the
original counts again and the app, one over, kills its youngest instance (the
replacement); back after it (`0`: at once), the original was expunged and is
killed, the replacement stays. With as many instances as agents the
replacement has nowhere to go and waits for the heal (slow test). `lab down`
then leaves nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from framework.local.agent import machine
from framework.local.lab import network
from tests.support.procs import REPO, dockyard, wait_for
from tests.support.security import Endpoint

from .conftest import Lab, assert_clean, serves

# Agents are declared lost 5 s after they go silent (Mesos' default is 75 s).
FAST_DRILLS = "--agent-ping-interval 1 --agent-ping-timeout 5"
DRILL = json.loads((REPO / "examples" / "lab-web.json").read_text())  # docs/lab.md's service
APP_ID = DRILL["id"]
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


def wait_spread(api: Endpoint, count: int) -> list[dict]:
    """`count` running instances on `count` nodes; what the app and the queue say if not."""
    try:
        return wait_for(lambda: spread_over(api, count), timeout=90,
                        what=f"{count} instances on {count} nodes")  # type: ignore[return-value]
    except TimeoutError as error:
        app = api.json("GET", f"/v2/apps{APP_ID}?embed=app.tasks")[1]
        queue = api.json("GET", "/v2/queue?embed=lastUnusedOffers")[1]
        raise AssertionError(f"{error}\napp: {json.dumps(app)[:3000]}\nqueue: {json.dumps(queue)[:3000]}") from None



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


def start_service(lab: Lab, agents: int, python: str, instances: int,
                  strategy: dict | None = None) -> tuple[Endpoint, Endpoint, dict[str, dict]]:
    """docs/lab.md's service (`python`: one its task user, nobody, may run) on `agents` nodes."""
    lab.up("--agents", str(agents), "--master-args", FAST_DRILLS, timeout=240)
    report = lab.status()
    nodes = {node["name"]: node for node in report["nodes"]}
    api, master = lab.scheduler_api(), lab.master_api()
    assert (api.url, master.url) == (report["urls"]["scheduler"], report["urls"]["master"])
    wait_for(lambda: len(active_agents(master)) == agents, timeout=60, what="agents")
    share = machine.share(lab.dir, agents)  # the nodes share one machine
    for agent in master.get_json("/state")["slaves"]:
        assert agent["resources"]["cpus"] == pytest.approx(float(share["cpus"])), agent["resources"]
        assert agent["resources"]["mem"] == pytest.approx(float(share["mem"])), agent["resources"]
    service = {**DRILL, "cmd": DRILL["cmd"].replace("python3", python), "instances": instances}
    if strategy is not None:
        service["unreachableStrategy"] = strategy
    status, body = api.json("POST", "/v2/apps", service)
    assert status == 201, body
    return api, master, nodes


def node_of_an_instance(lab: Lab) -> str:
    """As the drill finds it: the host of the first instance `dockyard task list --json` shows."""
    listed = subprocess.run(dockyard("task", "list", APP_ID, "--json"), capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DOCKYARD_CONFIG": str(lab.dir / "client.json")})
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)[0]["host"]


def by_host(tasks: list[dict]) -> dict[str, str]:
    return {task["host"]: task["id"] for task in tasks}


def test_an_instance_back_before_expunge_is_kept_and_its_replacement_goes(lab: Lab, task_python: str) -> None:
    api, master, nodes = start_service(lab, agents=3, python=task_python, instances=2)
    first = wait_spread(api, 2)
    for task in first:
        wait_for(lambda: serves(nodes[task["host"]]["ip"], task["ports"][0]), timeout=30,
                 what=f"instance on {task['host']}")
    victim = node_of_an_instance(lab)
    assert victim in hosts(first)
    spare = (set(nodes) - {"control"} - hosts(first)).pop()
    # A second service on the same node, with Marathon's default unreachableStrategy (300 s, 600 s).
    steady = {"id": "/steady", "cmd": f"exec {task_python} -m {MARKER} $PORT0", "cpus": 0.1, "mem": 32,
              "constraints": [["hostname", "LIKE", victim]], "portDefinitions": [{"port": 0}]}
    assert api.json("POST", "/v2/apps", steady)[0] == 201
    before = wait_for(lambda: [t["id"] for t in api.json("GET", "/v2/apps/steady/tasks")[1]["tasks"]
                               if t["state"] == "TASK_RUNNING"], timeout=60, what="/steady running")

    lab.run("partition", victim)
    wait_for(lambda: victim not in active_agents(master), timeout=60, what="agent lost")
    moved_to = hosts(first) - {victim} | {spare}
    wait_for(lambda: running_on(api, moved_to), timeout=120, what=f"the instance on {victim} replaced on {spare}")
    states = {t["host"]: t["state"] for t in api.json("GET", f"/v2/apps{APP_ID}/tasks")[1]["tasks"]}
    assert states[victim] == "TASK_UNREACHABLE", states
    assert service_processes(nodes[victim]["netns"]), "a partition does not stop the node"
    steady_tasks = api.json("GET", "/v2/apps/steady/tasks")[1]["tasks"]
    assert [(t["id"], t["state"]) for t in steady_tasks] == [(before[0], "TASK_UNREACHABLE")], \
        "within inactiveAfterSeconds an unreachable instance still counts: no replacement"

    lab.run("heal", victim)
    wait_for(lambda: victim in active_agents(master), timeout=60, what="agent back")
    # Back within expungeAfterSeconds: the original counts again, the youngest (the replacement) goes.
    wait_instances(nodes[spare]["netns"], 0, f"the replacement on {spare} stopped after the heal")
    back = wait_for(lambda: running_on(api, hosts(first)), timeout=60, what="the original instances")
    assert by_host(back) == by_host(first), "the originals stay; nothing new was started"
    assert service_processes(nodes[victim]["netns"]), f"the original on {victim} runs on"
    wait_for(lambda: [t["id"] for t in api.json("GET", "/v2/apps/steady/tasks")[1]["tasks"]
                      if t["state"] == "TASK_RUNNING"] == before, timeout=60, what="/steady's instance back, the same")
    lab.run("down")
    assert_clean(lab)


def test_an_instance_back_after_expunge_is_killed_and_its_replacement_stays(lab: Lab, task_python: str) -> None:
    api, master, nodes = start_service(lab, agents=4, python=task_python, instances=3,
                                       strategy={"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    first = wait_spread(api, 3)
    victim = first[0]["host"]
    spare = (set(nodes) - {"control"} - hosts(first)).pop()
    assert service_processes(nodes[spare]["netns"]) == []

    lab.run("partition", victim)
    wait_for(lambda: victim not in active_agents(master), timeout=60, what="agent lost")
    moved_to = hosts(first) - {victim} | {spare}
    replaced = wait_for(lambda: running_on(api, moved_to), timeout=120,
                        what=f"the instance on {victim} replaced on {spare}")
    moved = next(task for task in replaced if task["host"] == spare)
    wait_for(lambda: serves(nodes[spare]["ip"], moved["ports"][0]), timeout=30, what="replacement serving")

    lab.run("heal", victim)
    wait_for(lambda: victim in active_agents(master), timeout=60, what="agent back")
    # Expunged: the original is killed when it comes back; three instances stay where they are.
    wait_instances(nodes[victim]["netns"], 0, f"the expunged instance on {victim} killed after the heal")
    assert by_host(running_on(api, moved_to) or []) == by_host(replaced)

    status, _ = api.json("DELETE", f"/v2/apps{APP_ID}")
    assert status in (200, 202)
    wait_for(lambda: api.json("GET", f"/v2/apps{APP_ID}")[0] == 404, timeout=60, what="app deleted")
    lab.run("down")
    assert_clean(lab)


@pytest.mark.slow
def test_with_as_many_instances_as_agents_the_replacement_waits_for_the_heal(lab: Lab, task_python: str) -> None:
    api, master, nodes = start_service(lab, agents=3, python=task_python, instances=3)
    first = wait_spread(api, 3)
    victim = first[0]["host"]
    lab.run("partition", victim)
    wait_for(lambda: victim not in active_agents(master), timeout=60, what="agent lost")
    # UNIQUE leaves nowhere else to go: two instances, never two on one node; one waits.
    wait_for(lambda: running_on(api, hosts(first) - {victim}), timeout=60, what="the lost instance reported")
    wait_for(lambda: api.json("GET", "/v2/queue")[1]["queue"], timeout=30, what="the replacement queued")
    lab.run("heal", victim)
    back = wait_for(lambda: running_on(api, hosts(first)), timeout=120, what=f"the instance back on {victim}")
    assert by_host(back) == by_host(first), "the original counts again; no replacement was needed"
    assert service_processes(nodes[victim]["netns"]), f"the original on {victim} runs on"
    wait_for(lambda: not api.json("GET", "/v2/queue")[1]["queue"], timeout=30, what="nothing left queued")
    lab.run("down")
    assert_clean(lab)
