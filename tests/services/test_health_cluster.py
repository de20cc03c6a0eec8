"""busybox httpd services with HTTP health checks, end to end, in containers.

Each instance runs `httpd` as a MESOS container from the busybox image the
services conftest builds (the agents read it from a directory), under runc, on
the host network with its Mesos port. The page lives in the container's own
root filesystem (`/www`): a test breaks one instance by removing the page
through `/proc/<httpd pid>/root`, which touches that container and no other.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests.services.conftest import IMAGE
from tests.support.procs import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root (runc, cgroups, mounts)")

PAGE = "/www/index.html"


def httpd_app(app_id: str, instances: int = 1, **extra) -> dict:
    """busybox httpd in the test-built image, serving its own /www on 127.0.0.1:$PORT0."""
    cmd = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 127.0.0.1:$PORT0 -h /www"
    return {"id": app_id, "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": instances,
            "container": {"type": "MESOS", "docker": {"image": IMAGE}},
            "backoffSeconds": 0.2, "portDefinitions": [{"port": 0, "name": "http"}],
            "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/index.html", "portIndex": 0,
                              "gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 2,
                              "maxConsecutiveFailures": 2}], **extra}


def httpd_pid(port: int) -> int:
    """The host pid of the httpd serving 127.0.0.1:`port` (the init of its container)."""
    wanted = f"127.0.0.1:{port}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"httpd") and wanted in argv:
            return int(entry.name)
    raise AssertionError(f"no httpd on 127.0.0.1:{port}")


def healthy_tasks(marathon, app_id: str) -> list[dict]:
    return [t for t in marathon.app(app_id)["tasks"]
            if t["state"] == "TASK_RUNNING" and t["healthCheckResults"] and t["healthCheckResults"][0]["alive"]]


def wait_healthy(marathon, app_id: str, count: int, what: str, timeout: float = 90,
                 without: set[str] = frozenset()) -> list[dict]:
    """`count` healthy instances, none of them in `without`; on timeout the app and the log say why."""
    def look() -> list[dict]:
        return healthy_tasks(marathon, app_id)

    return marathon.wait_until(look, lambda h: len(h) == count and not without & {t["id"] for t in h},
                               what, timeout)


def test_killed_and_unhealthy_container_instances_are_replaced(marathon) -> None:
    marathon.call("POST", "/v2/apps", httpd_app("/httpd", 2, constraints=[["hostname", "IS", "agent0"]]))
    first = wait_healthy(marathon, "/httpd", 2, "2 healthy httpd containers")
    assert len({t["ports"][0] for t in first}) == 2

    # kill one container's process outright: the instance fails and is replaced
    victim = first[0]
    os.kill(httpd_pid(victim["ports"][0]), signal.SIGKILL)
    wait_healthy(marathon, "/httpd", 2, "the killed instance replaced", without={victim["id"]})
    failure = marathon.wait_until(lambda: marathon.app("/httpd").get("lastTaskFailure") or {},
                                  lambda f: f.get("taskId") == victim["id"], "the kill as lastTaskFailure")
    assert failure["state"] == "TASK_FAILED" and "SIGKILL" in failure["message"], failure
    assert "HEALTH_CHECK" not in failure["message"], failure  # not a health-check kill (regression)

    # make one unhealthy: its page disappears inside its container, two checks fail, the
    # executor kills it (as TASK_KILLED) and the scheduler replaces it
    sick = healthy_tasks(marathon, "/httpd")[0]
    other = next(t for t in healthy_tasks(marathon, "/httpd") if t["id"] != sick["id"])
    Path(f"/proc/{httpd_pid(sick['ports'][0])}/root{PAGE}").unlink()
    failure = marathon.wait_until(lambda: marathon.app("/httpd").get("lastTaskFailure") or {},
                                  lambda f: f.get("taskId") == sick["id"], "the unhealthy instance killed",
                                  timeout=90)
    assert failure["state"] == "TASK_KILLED" and "unhealthy" in failure["message"], failure
    after = wait_healthy(marathon, "/httpd", 2, "the unhealthy instance replaced", without={sick["id"]})
    assert other["id"] in {t["id"] for t in after}  # the healthy neighbour was left alone
    marathon.call("DELETE", "/v2/apps/httpd?force=true")


def test_rolling_upgrade_of_containers_keeps_half_healthy(marathon) -> None:
    spec = httpd_app("/rolling", 4, upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0})
    marathon.call("POST", "/v2/apps", spec)
    wait_healthy(marathon, "/rolling", 4, "4 healthy containers")
    before = {t["id"] for t in marathon.app("/rolling")["tasks"]}
    samples: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                samples.append(len(healthy_tasks(marathon, "/rolling")))
            except Exception as error:  # a failed look must fail the test, not vanish
                errors.append(error)
            done.wait(0.1)  # pacing only: every sample is an assertion below

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marathon.call("PUT", "/v2/apps/rolling", {"env": {"GENERATION": "2"}})
    try:
        app = marathon.wait_deployed("/rolling", timeout=180)
    finally:
        done.set()
        sampler.join(15)
    assert not errors, errors
    assert not before & {t["id"] for t in app["tasks"]}  # every instance was replaced
    assert len(samples) > 10 and min(samples) >= 2, samples
    assert min(samples) < 4, samples  # the sampler saw the upgrade happen, not only its ends
    marathon.call("DELETE", "/v2/apps/rolling?force=true")


def test_unique_hostname_holds_across_agents_for_container_instances(marathon, cluster) -> None:
    agents = len(cluster.agents)
    marathon.call("POST", "/v2/apps", httpd_app("/uniq", agents, constraints=[["hostname", "UNIQUE"]]))
    healthy = wait_healthy(marathon, "/uniq", agents, f"{agents} healthy containers, one per agent")
    assert len({t["host"] for t in healthy}) == agents
    # one more cannot go anywhere: it waits, refused by the constraint, and nothing moves
    marathon.call("PUT", "/v2/apps/uniq", {"instances": agents + 1})

    def refused() -> dict:
        items = [q for q in marathon.call("GET", "/v2/queue")["queue"] if q["app"]["id"] == "/uniq"]
        return items[0] if items else {}

    item = marathon.wait_until(refused, lambda q: any(
        r["reason"] == "UnfulfilledConstraint" and r["declined"] >= 1
        for r in q.get("processedOffersSummary", {}).get("rejectSummaryLastOffers", [])),
        "the extra instance refused by UNIQUE")
    assert item["count"] == 1
    tasks = marathon.app("/uniq")["tasks"]
    placed = [t for t in tasks if t["host"]]
    assert len(placed) == agents and len({t["host"] for t in placed}) == agents, tasks
    assert [t["state"] for t in tasks if not t["host"]] == ["TASK_STAGING"], tasks  # waits, unplaced
    marathon.call("DELETE", "/v2/apps/uniq?force=true")
    wait_for(lambda: marathon.status("GET", "/v2/apps/uniq")[0] == 404, timeout=60, what="/uniq removed")


def test_command_check_of_a_container_task_runs_inside_its_container(marathon) -> None:
    """A COMMAND check sees the container's root filesystem and pid namespace, as in Mesos:
    the marker exists only in the container's rootfs, and pid 1 there is the container's
    init, whose command line names the task's httpd."""
    marker = "/dockyard-check-marker"
    assert not os.path.exists(marker)  # on the host the check would fail
    spec = httpd_app("/cmdcheck", 1, constraints=[["hostname", "IS", "agent2"]])
    spec["cmd"] = f"touch {marker} && {spec['cmd']}"
    spec["healthChecks"] = [{"protocol": "COMMAND",
                             "command": {"value": f"test -f {marker} && grep -q httpd /proc/1/cmdline"},
                             "gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 5,
                             "maxConsecutiveFailures": 2}]
    marathon.call("POST", "/v2/apps", spec)
    task = wait_healthy(marathon, "/cmdcheck", 1, "the COMMAND check passing inside the container")[0]
    # remove the marker inside that container only: the check fails there, the task is replaced
    Path(f"/proc/{httpd_pid(task['ports'][0])}/root{marker}").unlink()
    failure = marathon.wait_until(lambda: marathon.app("/cmdcheck").get("lastTaskFailure") or {},
                                  lambda f: f.get("taskId") == task["id"], "the COMMAND check failing", timeout=90)
    assert failure["state"] == "TASK_KILLED" and "command exited 1" in failure["message"], failure
    wait_healthy(marathon, "/cmdcheck", 1, "a replacement passing its check", without={task["id"]})
    marathon.call("DELETE", "/v2/apps/cmdcheck?force=true")
