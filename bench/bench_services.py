"""End to end: deploy 100 instances of a health-checked service on `dockyard up --agents 3`.

Times POST /v2/apps to every instance running and healthy (as the scheduler reports
through /v2/apps), and to the deployment being finished. Target: <= 20 s.

The service is a host command task (`sleep`) with a COMMAND health check run by
the executor: the embedded agents of one machine all offer the same port range,
so 100 port-binding servers on 3 agents would collide; and image-based services
need the container runtime, which this benchmark does not assume.

    .venv/bin/python -m bench services      # DOCKYARD_BENCH_SERVICE_INSTANCES=100
"""
from __future__ import annotations

import os
import time

import httpx

from bench._up import Up

TARGET_SECONDS = 20.0


def run(instances: int | None = None) -> dict:
    count = instances or int(os.environ.get("DOCKYARD_BENCH_SERVICE_INSTANCES", "100"))
    app = {"id": "/bench/web", "cmd": "exec sleep 3600", "cpus": 0.01, "mem": 16, "instances": count,
           "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                             "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 5,
                             "maxConsecutiveFailures": 3}]}
    with Up(agents=3) as up:
        client = httpx.Client(base_url=up.url, timeout=30)
        started = time.monotonic()
        response = client.post("/v2/apps", json=app)
        response.raise_for_status()
        running_at = healthy_at = deployed_at = None
        deadline = started + 120
        while time.monotonic() < deadline:
            state = client.get("/v2/apps//bench/web").json()["app"]
            now = time.monotonic() - started
            if running_at is None and state["tasksRunning"] >= count:
                running_at = now
            if healthy_at is None and state["tasksHealthy"] >= count:
                healthy_at = now
            if healthy_at is not None and not state["deployments"]:
                deployed_at = now
                break
            time.sleep(0.1)
        return {
            "instances": count, "agents": 3,
            "all_running_seconds": round(running_at, 2) if running_at is not None else None,
            "all_healthy_seconds": round(healthy_at, 2) if healthy_at is not None else None,
            "deployment_finished_seconds": round(deployed_at, 2) if deployed_at is not None else None,
            "load_average": round(os.getloadavg()[0], 2),
            "targets": {"all_healthy<=20s": healthy_at is not None and healthy_at <= TARGET_SECONDS},
        }


if __name__ == "__main__":
    import json

    print(json.dumps({"benchmark": "services", **run()}, indent=2))
