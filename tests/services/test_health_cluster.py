"""busybox httpd services with HTTP health checks, end to end.

These run as host command tasks (`busybox httpd`), not in an image: the health
check, replacement and rolling-upgrade behaviour under test does not depend on
the container.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests.support.procs import wait_for

BUSYBOX = "/usr/bin/busybox"
pytestmark = pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox is not installed")


def httpd_app(app_id: str, root: Path, instances: int = 1, **extra) -> dict:
    """Each instance serves root/<port>/ (so a test can break one)."""
    cmd = (f"mkdir -p {root}/$PORT0 && echo ok > {root}/$PORT0/index.html "
           f"&& exec {BUSYBOX} httpd -f -p 127.0.0.1:$PORT0 -h {root}/$PORT0")
    # One agent: the embedded agents share this host's network and offer the same port range,
    # so two httpd instances on different agents could be given the same port.
    return {"id": app_id, "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": instances,
            "constraints": [["hostname", "IS", "agent0"]],
            "backoffSeconds": 0.2, "portDefinitions": [{"port": 0, "name": "http"}],
            "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/index.html", "portIndex": 0,
                              "gracePeriodSeconds": 5, "intervalSeconds": 1, "timeoutSeconds": 1,
                              "maxConsecutiveFailures": 2}], **extra}


def httpd_pid(port: int) -> int:
    """The host pid of the httpd serving `port` (tasks may run in their own pid namespace, so
    the task's own `$$` is not a host pid)."""
    wanted = f"127.0.0.1:{port}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"httpd" in b" ".join(argv) and wanted.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no httpd on {wanted}")


def healthy_tasks(marathon, app_id: str) -> list[dict]:
    return [t for t in marathon.app(app_id)["tasks"]
            if t["state"] == "TASK_RUNNING" and t["healthCheckResults"] and t["healthCheckResults"][0]["alive"]]


def test_killed_and_unhealthy_instances_are_replaced(marathon, tmp_path: Path) -> None:
    marathon.call("POST", "/v2/apps", httpd_app("/httpd", tmp_path, 2))
    first = wait_for(lambda: (h := healthy_tasks(marathon, "/httpd")) and len(h) == 2 and h, timeout=30,
                     what="2 healthy httpd instances")
    # kill one process outright: the instance fails and is replaced
    victim = first[0]
    os.kill(httpd_pid(victim["ports"][0]), signal.SIGKILL)
    try:
        wait_for(lambda: (h := healthy_tasks(marathon, "/httpd")) and len(h) == 2
                 and victim["id"] not in {t["id"] for t in h}, timeout=30, what="the killed instance replaced")
    except TimeoutError:
        raise AssertionError(f"{marathon.app('/httpd')}\n{marathon.call('GET', '/v2/queue')}") from None
    failure = marathon.app("/httpd")["lastTaskFailure"]
    assert failure["taskId"] == victim["id"] and failure["state"] == "TASK_FAILED"
    # make one unhealthy: its page disappears, checks fail twice, it is killed and replaced
    sick = healthy_tasks(marathon, "/httpd")[0]
    (tmp_path / str(sick["ports"][0]) / "index.html").unlink()
    wait_for(lambda: (h := healthy_tasks(marathon, "/httpd")) and len(h) == 2
             and sick["id"] not in {t["id"] for t in h}, timeout=30, what="the unhealthy instance replaced")
    assert marathon.app("/httpd")["lastTaskFailure"]["taskId"] == sick["id"]
    marathon.call("DELETE", "/v2/apps/httpd?force=true")


def test_rolling_upgrade_keeps_half_healthy(marathon, tmp_path: Path) -> None:
    spec = httpd_app("/rolling", tmp_path, 4, upgradeStrategy={"minimumHealthCapacity": 0.5,
                                                              "maximumOverCapacity": 0.0})
    marathon.call("POST", "/v2/apps", spec)
    wait_for(lambda: len(healthy_tasks(marathon, "/rolling")) == 4, timeout=40, what="4 healthy")
    before = {t["id"] for t in marathon.app("/rolling")["tasks"]}
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(len(healthy_tasks(marathon, "/rolling")))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marathon.call("PUT", "/v2/apps/rolling", {"env": {"GENERATION": "2"}})
    app = marathon.wait_deployed("/rolling", timeout=60)
    done.set()
    sampler.join(10)
    assert not before & {t["id"] for t in app["tasks"]}  # every instance was replaced
    assert len(samples) > 10 and min(samples) >= 2, samples
    marathon.call("DELETE", "/v2/apps/rolling?force=true")
