"""The router: what a hop through HAProxy costs, and how fast instances enter and leave it.

On `dockyard up --agents 1` with our scheduler and `dockyard router` (real HAProxy),
an HTTP app of small Python servers (host command tasks, an HTTP health check every
second) on a fixed service port:

* latency: sequential GETs over one keep-alive connection, straight to one instance
  and through the router's service port, in alternating blocks in the same run;
  p50 and p99 of each and their ratios (target: p50 through the router at most 1.3x).
  The instance answers `/` at once (about 0.1-0.2 ms here), so the ratio is nearly all
  HAProxy's extra loopback hop; `latency_of_a_1ms_request` repeats it on `/work`, which
  sleeps 1 ms first, for the ratio a service doing some work sees;
* healthy to traffic: the app scaled up by one, three times, under a steady client
  through the router; from the new instance's first passing health check (its
  `healthCheckResults[0].firstSuccess`) to the first answer it gives through the
  router (target: at most 1 s);
* a rolling upgrade of 10 instances, then a scale from 10 to 1, under about 100
  requests a second through the router: failed requests (target 0). The scheduler
  does not drain an instance in the router before killing it yet, so what keeps
  this at 0 is HAProxy retrying a refused connection on another instance.

    .venv/bin/python -m bench router
"""
from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import httpx

from bench._up import REPO, Up, free_ports, quantile, wait
from tests.router.load import SteadyLoad

LATENCY_BLOCKS = 10
LATENCY_BLOCK_REQUESTS = 200
TARGET_P50_RATIO = 1.3
TARGET_HEALTHY_TO_TRAFFIC_S = 1.0
ROLLING_INSTANCES = 10
LOAD_RATE = 100.0

# One write per answer with Nagle off, as a real server does: headers and body in two small
# writes would meet the client's delayed ACK and cost the direct path 40 ms.
SERVER = """import os, http.server as h
import time
BODY = (os.environ["PORT0"] + " " + os.environ.get("VERSION", "")).encode()
class H(h.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    disable_nagle_algorithm = True
    def do_GET(self):
        if self.path == "/work":
            time.sleep(0.001)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
h.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT0"])), H).serve_forever()
"""
HEALTH = {"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1,
          "timeoutSeconds": 2, "maxConsecutiveFailures": 3, "delaySeconds": 0}


def task_python() -> str:
    """A Python the task user (nobody) may run: the venv's may live under root's private home."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            if os.geteuid() != 0 or subprocess.run([candidate, "-c", ""], user="nobody",
                                                   capture_output=True).returncode == 0:
                return candidate
        except OSError:
            continue
    raise RuntimeError("no Python that user nobody may run")


def app(service_port: int, instances: int, version: str = "v1") -> dict[str, Any]:
    return {"id": "/bench/router", "cmd": f"exec {task_python()} -c '{SERVER}'", "cpus": 0.01, "mem": 32,
            "instances": instances, "env": {"VERSION": version}, "backoffSeconds": 0.2,
            "portDefinitions": [{"port": service_port}], "healthChecks": [HEALTH],
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.2},
            "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http"}}


class Router:
    """`python -m scheduler.router` (what `dockyard router` runs) beside the cluster."""

    def __init__(self, up: Up, http_port: int) -> None:
        self.work_dir = up.workdir / "router"
        self.log = open(up.workdir / "router.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scheduler.router", "--config", str(up.cluster_dir / "client.json"),
             "--work-dir", str(self.work_dir), "--http-port", str(http_port)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True)

    def status(self) -> dict[str, Any]:
        from scheduler.router.status import router_status

        if self.process.poll() is not None:
            raise RuntimeError(f"the router exited (see {self.log.name})")
        try:
            return router_status(self.work_dir)
        except (FileNotFoundError, ValueError):
            return {}

    def serving(self) -> set[int]:
        backends = self.status().get("backends", [])
        return {s["port"] for b in backends for s in b["servers"] if s["wanted"] == "ready"}

    def stop(self) -> None:
        from scheduler.router.haproxy import HAProxy

        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        HAProxy(self.work_dir).stop()
        self.log.close()


def healthy_tasks(client: httpx.Client) -> list[dict[str, Any]]:
    tasks = client.get("/v2/apps/bench/router/tasks").json()["tasks"]
    return [t for t in tasks if t["state"] == "TASK_RUNNING" and t["healthCheckResults"]
            and t["healthCheckResults"][0]["alive"]]


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def latencies(port: int, count: int, path: str = "/") -> list[float]:
    """Seconds per GET, sequential, over one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            out.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status} from port {port}")
    finally:
        connection.close()
    return out


def failed(load: SteadyLoad) -> dict[str, Any]:
    """Requests sent and failed; a 200 whose body is not our app's (a port an instance left,
    already another process's) counts as failed too."""
    foreign = [body for status, body in load.answers if status == 200 and not body.split(" ", 1)[0].isdigit()]
    return {"requests": load.total, "failed": len(load.failures) + sum(load.answers[(200, b)] for b in foreign),
            "failures_sample": (load.failures + [f"not the app: {b[:40]!r}" for b in foreign])[:3]}


def measure_latency(direct_port: int, router_port: int, path: str = "/", blocks: int = LATENCY_BLOCKS
                    ) -> dict[str, Any]:
    """Direct and routed GETs of `path` in alternating blocks: p50/p99 of each, ratios, and
    what the hop adds at the median."""
    direct: list[float] = []
    routed: list[float] = []
    latencies(direct_port, 50, path), latencies(router_port, 50, path)  # warm both paths
    for _ in range(blocks):
        direct += latencies(direct_port, LATENCY_BLOCK_REQUESTS, path)
        routed += latencies(router_port, LATENCY_BLOCK_REQUESTS, path)

    def ms(values: list[float], q: float) -> float:
        return round(quantile(values, q) * 1000, 3)
    return {"path": path, "requests_each": len(direct),
            "direct_ms": {"p50": ms(direct, 0.5), "p99": ms(direct, 0.99)},
            "router_ms": {"p50": ms(routed, 0.5), "p99": ms(routed, 0.99)},
            "added_p50_ms": round((quantile(routed, 0.5) - quantile(direct, 0.5)) * 1000, 3),
            "p50_ratio": round(quantile(routed, 0.5) / quantile(direct, 0.5), 3),
            "p99_ratio": round(quantile(routed, 0.99) / quantile(direct, 0.99), 3)}


def healthy_to_traffic(client: httpx.Client, service_port: int, start: int, times: int = 3) -> list[float]:
    """Scale up by one, `times` times; for each new instance, first healthy -> first answer via the router."""
    delays = []
    with SteadyLoad(service_port, rate=200) as load:
        for count in range(start + 1, start + 1 + times):
            before = {t["id"] for t in healthy_tasks(client)}
            client.put("/v2/apps/bench/router", json={"instances": count}).raise_for_status()
            new = wait("the new instance healthy", lambda: [t for t in healthy_tasks(client) if t["id"] not in before],
                       timeout=60)[0]
            port = new["ports"][0]
            seen = wait("the new instance answering through the router",
                        lambda: min((at for body, at in load.first_seen.items() if body.split(" ", 1)[0] == str(port)),
                                    default=None), 30)
            delays.append(round(seen - epoch(new["healthCheckResults"][0]["firstSuccess"]), 3))
    return delays


def deployed(client: httpx.Client, count: int, version: str | None = None) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        app_now = client.get("/v2/apps/bench/router").json()["app"]
        tasks = healthy_tasks(client)
        if app_now["deployments"] or len(tasks) != count:
            return None
        if version and any(t["version"] != app_now["version"] for t in tasks):
            return None
        return tasks
    return wait(f"{count} healthy instances, deployment finished", done, timeout=180)


def run() -> dict[str, Any]:
    """The whole benchmark (what `python -m bench router` calls): one JSON-able dict."""
    service_port, http_port = free_ports(1)[0], free_ports(1)[0]
    # Host ports of our own, away from 31000+ where other clusters on this machine run tasks.
    begin = random.randrange(21000, 29800, 200)
    with Up(agents=1, resources=f"cpus:8;mem:8192;ports:[{begin}-{begin + 199}]") as up:
        client = up.client()
        router = Router(up, http_port)
        try:
            wait("the router", lambda: router.status().get("haproxy", {}).get("running"), timeout=30)
            client.post("/v2/apps", json=app(service_port, 3)).raise_for_status()
            tasks = deployed(client, 3)
            wait("3 instances in the router", lambda: router.serving() == {t["ports"][0] for t in tasks}, 30)
            latency = measure_latency(tasks[0]["ports"][0], service_port)
            latency_1ms = measure_latency(tasks[0]["ports"][0], service_port, "/work", blocks=3)
            delays = healthy_to_traffic(client, service_port, start=3)

            client.put("/v2/apps/bench/router", json={"instances": ROLLING_INSTANCES}).raise_for_status()
            deployed(client, ROLLING_INSTANCES)
            wait("10 instances in the router", lambda: len(router.serving()) == ROLLING_INSTANCES, 30)
            with SteadyLoad(service_port) as rolling:
                started = time.monotonic()
                client.put("/v2/apps/bench/router", json=app(service_port, ROLLING_INSTANCES, "v2")
                           ).raise_for_status()
                deployed(client, ROLLING_INSTANCES, version="v2")
                rolling_seconds = time.monotonic() - started
            with SteadyLoad(service_port) as scale_down:
                time.sleep(1.0)
                client.put("/v2/apps/bench/router", json={"instances": 1}).raise_for_status()
                deployed(client, 1)
                wait("1 instance in the router", lambda: len(router.serving()) == 1, 30)
                time.sleep(1.0)
            counts = router.status().get("counts", {})
        finally:
            router.stop()
    return {
        "security": up.security, "latency": latency,
        "latency_of_a_1ms_request": latency_1ms,
        "healthy_to_traffic_s": delays, "healthy_to_traffic_max_s": max(delays),
        "rolling_upgrade": {"instances": ROLLING_INSTANCES, "seconds": round(rolling_seconds, 1),
                            **failed(rolling)},
        "scale_down_10_to_1": failed(scale_down),
        "router_counts": counts,
        "load_average": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
        "targets": {f"p50_ratio<={TARGET_P50_RATIO}": latency["p50_ratio"] <= TARGET_P50_RATIO,
                    f"healthy_to_traffic<={TARGET_HEALTHY_TO_TRAFFIC_S}s":
                        max(delays) <= TARGET_HEALTHY_TO_TRAFFIC_S,
                    "rolling_upgrade_failed==0": failed(rolling)["failed"] == 0,
                    "scale_down_failed==0": failed(scale_down)["failed"] == 0},
    }


if __name__ == "__main__":
    import json

    print(json.dumps({"benchmark": "router", **run()}, indent=2))
