"""The router: what a hop through HAProxy costs, and how fast instances enter and leave it.

On `dockyard up --agents 1` with our scheduler and `dockyard router` (real HAProxy),
an HTTP app of small Python servers (host command tasks, an HTTP health check every
second) on a fixed service port:

* latency: sequential GETs over one keep-alive connection, straight to one instance
  and through the router's service port, in alternating blocks in the same run;
  p50 and p99 of each and their ratios (target: p50 through the router at most 1.3x).
  The instance answers `/` at once (about 0.1-0.2 ms here), so the ratio is nearly all
  HAProxy's extra loopback hop; `bare_haproxy_p50_ratio` is the same through an HAProxy
  with nothing but one frontend and that instance, in the same alternating blocks: the
  least any HAProxy hop costs here (`router_over_bare_haproxy_p50`: what the router's
  configuration adds to it). `latency_of_a_1ms_request` repeats it on `/work`,
  which sleeps 1 ms first, for the ratio a service doing some work sees;
* healthy to traffic: the app scaled up by one, three times, under a steady client
  through the router; from the new instance's first passing health check (its
  `healthCheckResults[0].firstSuccess`) to the first answer it gives through the
  router (target: at most 1 s);
* a rolling upgrade of 10 instances, then a scale from 10 to 1, under about 100
  requests a second through the router: failed requests (target 0), and for each
  instance replaced or removed, from its kill to its leaving rotation (target: before
  the kill). The scheduler drains an instance first (it marks it draining, the router
  puts its server in HAProxy's DRAIN state and reports it out of rotation, then the
  scheduler kills it), so the figure is how long before its kill each instance stopped
  getting requests: its server's state polled from HAProxy's runtime API every few
  milliseconds, the kill as the scheduler's event stream announced it (the first
  TASK_KILLING or TASK_KILLED). The app's service port is 0: the scheduler assigns it.

    .venv/bin/python -m bench router
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
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
# `$DOCKYARD_BENCH_ROUTER_DRAIN_SECONDS=0` turns drain before kill off (the app's dockyard.drainSeconds),
# for the figures without it.
DRAIN = ({"dockyard.drainSeconds": os.environ["DOCKYARD_BENCH_ROUTER_DRAIN_SECONDS"]}
         if os.environ.get("DOCKYARD_BENCH_ROUTER_DRAIN_SECONDS") else {})

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
h.ThreadingHTTPServer(("", int(os.environ["PORT0"])), H).serve_forever()  # the router reaches it at the agent address, health checks at 127.0.0.1
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
    """The benchmark's app; `service_port` 0: the scheduler assigns one. 0.1 CPU each: the one
    instance left by the scale-down serves the whole load (at 0.01 its CPU quota, 1 ms every
    100 ms, held each request about 100 ms)."""
    return {"id": "/bench/router", "cmd": f"exec {task_python()} -c '{SERVER}'", "cpus": 0.1, "mem": 32,
            "instances": instances, "env": {"VERSION": version}, "backoffSeconds": 0.2,
            "portDefinitions": [{"port": service_port}], "healthChecks": [HEALTH],
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.2},
            "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http", **DRAIN}}


def _poll_rotation(socket_path: str, stop: Any, out: Any) -> None:
    """When each server left HAProxy's rotation ("ip:port" -> the first time it was seen not UP),
    polled every 2 ms; run in a process of its own, so the client under measurement does not
    share an interpreter lock with it."""
    from scheduler.router.runtime import RuntimeApi

    runtime = RuntimeApi(socket_path, timeout=2)
    serving: set[str] = set()
    left: dict[str, float] = {}
    while not stop.is_set():
        try:
            now_serving = {s.address for s in runtime.stats() if s.status in ("UP", "no check")}
        except Exception:  # HAProxy reloading: look again
            now_serving = serving
        now = time.time()
        for address in serving - now_serving:
            left.setdefault(address, now)  # the first time: a later instance may get its port
        serving = now_serving
        stop.wait(0.002)
    out.put(left)


def retried(work_dir: Path) -> dict[str, int]:
    """HAProxy's connection retries and redispatches so far (every backend of the current worker):
    a request sent to an instance that is gone is retried, a second later, on another."""
    import csv
    import io

    from scheduler.router.runtime import RuntimeApi

    text = RuntimeApi(work_dir / "haproxy.sock", timeout=5).command("show stat").lstrip("# ")
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r.get("svname") == "BACKEND"]
    return {"retries": sum(int(r.get("wretr") or 0) for r in rows),
            "redispatches": sum(int(r.get("wredis") or 0) for r in rows)}


class Rotation:
    """When each server left HAProxy's rotation (polled from the runtime API), and when the
    scheduler announced each task's kill (its event stream): per task, how long before its
    kill it stopped getting requests (negative: after)."""

    def __init__(self, up: Up, work_dir: Path) -> None:
        context = multiprocessing.get_context("fork")
        self.stop, self.out = context.Event(), context.Queue()
        self.poller = context.Process(target=_poll_rotation, args=(str(work_dir / "haproxy.sock"), self.stop,
                                                                   self.out), daemon=True)
        self.events = httpx.Client(base_url=up.url, timeout=httpx.Timeout(10, read=60), **up.client_options())
        self.left: dict[str, float] = {}  # "ip:port" -> when it first left rotation
        self.killed: dict[str, float] = {}  # task id -> when its kill was announced
        self.stopping = threading.Event()
        self.follower = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        try:
            with self.events.stream("GET", "/v2/events", params={"event_type": "status_update_event"},
                                    headers={"Accept": "text/event-stream"}) as response:
                for line in response.iter_lines():
                    if self.stopping.is_set():
                        return
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event["taskStatus"] in ("TASK_KILLING", "TASK_KILLED"):
                            self.killed.setdefault(event["taskId"], epoch(event["timestamp"]))
        except httpx.HTTPError:
            pass

    def __enter__(self) -> "Rotation":
        self.poller.start()
        self.follower.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.left = self.out.get(timeout=30)
        self.poller.join(10)
        self.stopping.set()
        self.events.close()

    def before_kill(self, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """Of `tasks` that were killed: seconds from leaving rotation to the kill (min, median, max)."""
        margins = [self.killed[t["id"]] - self.left[f"{t['ipAddresses'][0]['ipAddress']}:{t['ports'][0]}"]
                   for t in tasks if t["id"] in self.killed
                   and f"{t['ipAddresses'][0]['ipAddress']}:{t['ports'][0]}" in self.left]
        return {"instances": len(margins), "min": round(min(margins), 3) if margins else None,
                "median": round(quantile(margins, 0.5), 3) if margins else None,
                "max": round(max(margins), 3) if margins else None}


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


def latencies(port: int, count: int, path: str = "/", host: str = "127.0.0.1") -> list[float]:
    """Seconds per GET, sequential, over one keep-alive connection."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
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
            "failures_sample": (load.failures + [f"not the app: {b[:40]!r}" for b in foreign])[:3],
            "request_ms": {"p50": round(quantile(load.durations, 0.5) * 1000, 1),
                           "max": round(max(load.durations, default=0.0) * 1000, 1)}}


BARE_HAPROXY = """global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend bare
  bind 127.0.0.1:{port}
  default_backend instance
backend instance
  server one {host}:{instance_port}
"""


class BareHAProxy:
    """HAProxy with nothing but a frontend and the one instance (one thread, no header
    rewriting, no retries): the least any HAProxy hop costs here, measured beside the router
    so that its ratio shows how much of the router's is HAProxy's own."""

    def __init__(self, instance: tuple[str, int]) -> None:
        self.instance = instance
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "BareHAProxy":
        self.dir = tempfile.TemporaryDirectory(prefix="bench-bare-haproxy-")
        config = Path(self.dir.name) / "haproxy.cfg"
        host, instance_port = self.instance
        config.write_text(BARE_HAPROXY.format(port=self.port, host=host, instance_port=instance_port))
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        try:
            wait("the bare HAProxy", lambda: latencies(self.port, 1), timeout=10)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)
        self.dir.cleanup()


def measure_latency(instance: tuple[str, int], router_port: int, path: str = "/", blocks: int = LATENCY_BLOCKS
                    ) -> dict[str, Any]:
    """Direct (to the instance's address and port), routed, and through a bare HAProxy
    (`BareHAProxy`) GETs of `path` in alternating blocks: p50/p99 of each, ratios, and what
    the hop adds at the median."""
    direct: list[float] = []
    routed: list[float] = []
    bare: list[float] = []
    host, direct_port = instance
    with BareHAProxy(instance) as floor:
        for port, address in ((direct_port, host), (router_port, "127.0.0.1"), (floor.port, "127.0.0.1")):
            latencies(port, 50, path, address)  # warm every path
        for _ in range(blocks):
            direct += latencies(direct_port, LATENCY_BLOCK_REQUESTS, path, host)
            routed += latencies(router_port, LATENCY_BLOCK_REQUESTS, path)
            bare += latencies(floor.port, LATENCY_BLOCK_REQUESTS, path)

    def ms(values: list[float], q: float) -> float:
        return round(quantile(values, q) * 1000, 3)
    return {"path": path, "requests_each": len(direct),
            "direct_ms": {"p50": ms(direct, 0.5), "p99": ms(direct, 0.99)},
            "router_ms": {"p50": ms(routed, 0.5), "p99": ms(routed, 0.99)},
            "bare_haproxy_ms": {"p50": ms(bare, 0.5), "p99": ms(bare, 0.99)},
            "added_p50_ms": round((quantile(routed, 0.5) - quantile(direct, 0.5)) * 1000, 3),
            "p50_ratio": round(quantile(routed, 0.5) / quantile(direct, 0.5), 3),
            "p99_ratio": round(quantile(routed, 0.99) / quantile(direct, 0.99), 3),
            "bare_haproxy_p50_ratio": round(quantile(bare, 0.5) / quantile(direct, 0.5), 3),
            "router_over_bare_haproxy_p50": round(quantile(routed, 0.5) / quantile(bare, 0.5), 3)}


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
    http_port = free_ports(1)[0]
    # Host ports of our own, away from 31000+ where other clusters on this machine run tasks.
    begin = random.randrange(21000, 29800, 200)
    with Up(agents=1, resources=f"cpus:8;mem:8192;ports:[{begin}-{begin + 199}]") as up:
        client = up.client()
        router = Router(up, http_port)
        try:
            wait("the router", lambda: router.status().get("haproxy", {}).get("running"), timeout=30)
            created = client.post("/v2/apps", json=app(0, 3))
            created.raise_for_status()
            service_port = created.json()["portDefinitions"][0]["port"]
            tasks = deployed(client, 3)
            wait("3 instances in the router", lambda: router.serving() == {t["ports"][0] for t in tasks}, 30)
            instance = (tasks[0]["ipAddresses"][0]["ipAddress"], tasks[0]["ports"][0])
            latency = measure_latency(instance, service_port)
            latency_1ms = measure_latency(instance, service_port, "/work", blocks=3)
            delays = healthy_to_traffic(client, service_port, start=3)

            client.put("/v2/apps/bench/router", json={"instances": ROLLING_INSTANCES}).raise_for_status()
            deployed(client, ROLLING_INSTANCES)
            wait("10 instances in the router", lambda: len(router.serving()) == ROLLING_INSTANCES, 30)
            old = deployed(client, ROLLING_INSTANCES)
            before = retried(router.work_dir)
            with SteadyLoad(service_port) as rolling, Rotation(up, router.work_dir) as rolled:
                started = time.monotonic()
                client.put("/v2/apps/bench/router", json=app(0, ROLLING_INSTANCES, "v2")).raise_for_status()
                new = deployed(client, ROLLING_INSTANCES, version="v2")
                rolling_seconds = time.monotonic() - started
                wait("every replaced instance's kill", lambda: all(t["id"] in rolled.killed for t in old), 30)
            middle = retried(router.work_dir)
            with SteadyLoad(service_port) as scale_down, Rotation(up, router.work_dir) as scaled:
                started = time.monotonic()
                time.sleep(1.0)
                client.put("/v2/apps/bench/router", json={"instances": 1}).raise_for_status()
                kept = deployed(client, 1)
                wait("1 instance in the router", lambda: len(router.serving()) == 1, 30)
                time.sleep(1.0)
                scale_seconds = time.monotonic() - started
            removed = [t for t in new if t["id"] != kept[0]["id"]]
            after = retried(router.work_dir)
            counts = router.status().get("counts", {})
        finally:
            router.stop()
    return {
        "security": up.security, "latency": latency,
        "latency_of_a_1ms_request": latency_1ms,
        "healthy_to_traffic_s": delays, "healthy_to_traffic_max_s": max(delays),
        "rolling_upgrade": {"instances": ROLLING_INSTANCES, "seconds": round(rolling_seconds, 1),
                            **failed(rolling), "haproxy": {k: middle[k] - before[k] for k in before},
                            "out_of_rotation_before_kill_s": rolled.before_kill(old)},
        "scale_down_10_to_1": {"seconds": round(scale_seconds, 1), **failed(scale_down), "haproxy": {k: after[k] - middle[k] for k in middle},
                               "out_of_rotation_before_kill_s": scaled.before_kill(removed)},
        "router_counts": counts,
        "load_average": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
        "targets": {f"p50_ratio<={TARGET_P50_RATIO}": latency["p50_ratio"] <= TARGET_P50_RATIO,
                    f"healthy_to_traffic<={TARGET_HEALTHY_TO_TRAFFIC_S}s":
                        max(delays) <= TARGET_HEALTHY_TO_TRAFFIC_S,
                    "rolling_upgrade_failed==0": failed(rolling)["failed"] == 0,
                    "scale_down_failed==0": failed(scale_down)["failed"] == 0,
                    "out_of_rotation_before_kill": all(
                        (m["min"] or 0) > 0 and m["instances"] == want for m, want in
                        ((rolled.before_kill(old), ROLLING_INSTANCES), (scaled.before_kill(removed), len(removed))))},
    }


if __name__ == "__main__":
    print(json.dumps({"benchmark": "router", **run()}, indent=2))
