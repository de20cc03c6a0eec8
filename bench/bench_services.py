"""End to end: deploy 100 instances of a container service on `dockyard up --agents 3`.

The service is `busybox httpd` in a MESOS container (image `busybox:bench`, built
here with `dockyard image build --busybox` into a directory that the agents use as
their `--docker-registry`), with a MESOS_HTTP health check on `$PORT0`. Times
POST /v2/apps to every instance running, healthy, and the deployment finished.
Target: all healthy in <= 20 s.

Baseline, same cluster and run: the same 100 `busybox httpd` instances as host
command tasks (no image), deployed first and deleted before the container app.
The ratio says what the image and runc add on this (shared, noisy) machine. A
third deploy repeats the containers with cpus 0.1 instead of 0.01, to show what
the task's CPU quota costs at container start (see `container_cpus_0_1`).

Where the time goes is read from each task's own timestamps (/v2/apps/{id}/tasks):
POST -> stagedAt (offers and placement), stagedAt -> startedAt (agent, executor,
container start), startedAt -> health firstSuccess (health check).

    .venv/bin/python -m bench.bench_services     # DOCKYARD_BENCH_SERVICE_INSTANCES=100,
                                                 # DOCKYARD_BENCH_SECURITY=auth (tls, insecure)
    .venv/bin/python -m bench services
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import httpx

from bench._up import REPO, Up, cpu_by_role, quantile

TARGET_SECONDS = 20.0
IMAGE = "busybox:bench"
BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"
# 100 x 0.01 cpus and 100 x 16 MiB fit 3 agents with room.
HEALTH = {"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 60,
          "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}
SERVE = "mkdir -p /tmp/www/$PORT0 && echo ok > /tmp/www/$PORT0/index.html && exec {httpd} httpd -f -p $PORT0 -h /tmp/www/$PORT0"


def container_app(count: int, cpus: float = 0.01) -> dict[str, Any]:
    return {"id": "/bench/container", "cmd": SERVE.format(httpd=""), "cpus": cpus, "mem": 16,
            "instances": count, "portDefinitions": [{"port": 0, "name": "http"}],
            "container": {"type": "MESOS", "docker": {"image": IMAGE}}, "healthChecks": [HEALTH]}


def host_app(count: int) -> dict[str, Any]:
    # in its sandbox: a host task runs as nobody, and /tmp/www may be another user's
    cmd = f"mkdir www && echo ok > www/index.html && exec {BUSYBOX} httpd -f -p $PORT0 -h www"
    return {"id": "/bench/host", "cmd": cmd, "cpus": 0.01, "mem": 16,
            "instances": count, "portDefinitions": [{"port": 0, "name": "http"}],
            "healthChecks": [HEALTH]}


def build_image(registry: Path) -> float:
    """Build busybox:bench into the registry directory; returns seconds it took."""
    started = time.monotonic()
    subprocess.run([sys.executable, str(REPO / "dockyard.py"), "image", "build", "--busybox",
                    "--tag", IMAGE, "--output", str(registry / f"{IMAGE}.tar")],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.monotonic() - started


@contextmanager
def registry_env(registry: Path) -> Iterator[None]:
    """Agents (and their executors) read DOCKYARD_DOCKER_REGISTRY from the environment."""
    before = os.environ.get("DOCKYARD_DOCKER_REGISTRY")
    os.environ["DOCKYARD_DOCKER_REGISTRY"] = str(registry)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DOCKYARD_DOCKER_REGISTRY", None)
        else:
            os.environ["DOCKYARD_DOCKER_REGISTRY"] = before


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def deploy(client: httpx.Client, app: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """POST the app, poll until every instance is healthy and the deployment is done."""
    app_id, count = app["id"], app["instances"]
    posted = time.time()
    started = time.monotonic()
    client.post("/v2/apps", json=app).raise_for_status()
    running_at = healthy_at = deployed_at = None
    state: dict[str, Any] = {}
    while time.monotonic() < started + timeout:
        state = client.get(f"/v2/apps/{app_id}").json()["app"]
        now = time.monotonic() - started
        if running_at is None and state["tasksRunning"] >= count:
            running_at = now
        if healthy_at is None and state["tasksHealthy"] >= count:
            healthy_at = now
        if healthy_at is not None and not state["deployments"]:
            deployed_at = now
            break
        time.sleep(0.1)
    tasks = client.get(f"/v2/apps/{app_id}/tasks").json()["tasks"]
    staged = [s - posted for t in tasks if (s := _epoch(t.get("stagedAt")))]
    start = [b - a for t in tasks if (a := _epoch(t.get("stagedAt"))) and (b := _epoch(t.get("startedAt")))]
    health = [h - b for t in tasks for r in t.get("healthCheckResults", [])
              if (b := _epoch(t.get("startedAt"))) and (h := _epoch(r.get("firstSuccess")))]

    def spread(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "p90": None, "max": None}
        return {"p50": round(quantile(values, 0.5), 2), "p90": round(quantile(values, 0.9), 2),
                "max": round(max(values), 2)}

    return {
        "all_running_seconds": _round(running_at), "all_healthy_seconds": _round(healthy_at),
        "deployment_finished_seconds": _round(deployed_at),
        "healthy_at_end": state.get("tasksHealthy"), "running_at_end": state.get("tasksRunning"),
        # Per task: POST -> staged (offers, placement, launch sent), staged -> running
        # (agent, executor, sandbox, container), running -> first healthy answer.
        "post_to_staged_s": spread(staged), "staged_to_running_s": spread(start),
        "running_to_healthy_s": spread(health),
    }


def delete(client: httpx.Client, app_id: str, timeout: float = 120.0) -> float:
    """Delete an app and wait until none of its tasks is left; returns seconds."""
    started = time.monotonic()
    client.delete(f"/v2/apps/{app_id}", params={"force": "true"}).raise_for_status()
    while time.monotonic() < started + timeout:
        if not any(t["appId"] == app_id for t in client.get("/v2/tasks").json()["tasks"]):
            break
        time.sleep(0.2)
    return round(time.monotonic() - started, 2)


def ports_taken(up: Up, per_agent: int = 40) -> list[int]:
    """Host ports at the start of each agent's range that something else already holds.

    Every `dockyard up` on a machine slices the same 31000-32999 range, so a second
    cluster's tasks can hold ports our agents will offer; an instance given one fails
    to bind and is retried with backoff. Reported so a slow run says why.
    """
    state = up.master_state()  # as the operator (client.json), over TLS when the cluster has it
    taken = []
    for agent in state["slaves"]:
        ranges = agent["resources"].get("ports", "").strip("[]")
        for part in filter(None, ranges.split(",")):
            begin, end = (int(x) for x in part.strip().split("-"))
            for port in range(begin, min(end, begin + per_agent - 1) + 1):
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        probe.bind(("0.0.0.0", port))
                    except OSError:
                        taken.append(port)
    return taken


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def run(instances: int | None = None) -> dict:
    """The whole benchmark (what `python -m bench services` calls): one JSON-able dict."""
    count = instances or int(os.environ.get("DOCKYARD_BENCH_SERVICE_INSTANCES", "100"))
    registry = Path(tempfile.mkdtemp(prefix="dockyard-bench-registry-"))
    try:
        build_seconds = build_image(registry)
        # 4 cpus per agent (12 on a 2-core machine): room for the cpus 0.1 run below.
        with registry_env(registry), Up(agents=3, resources="cpus:4") as up:
            client = up.client()  # client.json's credentials (and CA); closed with the cluster
            taken = ports_taken(up)
            security = up.security
            # CPU is sampled while the executors still live (an exited one is not counted).
            before = cpu_by_role(up.workdir)
            host = deploy(client, host_app(count))
            host["cpu_seconds_by_role"] = _delta(before, cpu_by_role(up.workdir))
            host["delete_seconds"] = delete(client, "/bench/host")
            before = cpu_by_role(up.workdir)
            container = deploy(client, container_app(count))
            container["cpu_seconds_by_role"] = _delta(before, cpu_by_role(up.workdir))
            container["delete_seconds"] = delete(client, "/bench/container")
            # Diagnostic: the same with cpus 0.1. `runc init` runs inside the task's cgroup,
            # so at cpus 0.01 (a CFS quota of 1 ms per 100 ms) starting one container
            # takes ~1.4 s of throttled wall time; at 0.1 it takes ~0.05 s.
            before = cpu_by_role(up.workdir)
            roomier = deploy(client, container_app(count, cpus=0.1))
            roomier["cpu_seconds_by_role"] = _delta(before, cpu_by_role(up.workdir))
            roomier["delete_seconds"] = delete(client, "/bench/container")
    finally:
        shutil.rmtree(registry, ignore_errors=True)
    healthy, baseline = container["all_healthy_seconds"], host["all_healthy_seconds"]
    return {
        "instances": count, "agents": 3, "security": security, "image": IMAGE, "image_build_seconds": round(build_seconds, 2),
        "container": container,
        "container_cpus_0_1": roomier,
        "host_baseline": host,
        "agent_ports_held_by_other_processes": taken,
        "ratio_container_to_host": round(healthy / baseline, 2) if healthy and baseline else None,
        "all_healthy_seconds": healthy,
        "load_average": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
        "targets": {"all_healthy<=20s": healthy is not None and healthy <= TARGET_SECONDS},
    }


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per role between two samples (executors that exited are not counted)."""
    return {role: round(after.get(role, 0.0) - before.get(role, 0.0), 2) for role in sorted(after)}


if __name__ == "__main__":
    import json

    print(json.dumps({"benchmark": "services", **run()}, indent=2))
