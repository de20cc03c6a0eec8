"""The real-process pieces of the router's cluster tests: small HTTP and TCP servers run as
host command tasks, `python -m scheduler.router` as a process, the scheduler's event stream,
and the waits the tests share (their fixtures are in conftest.py)."""
from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import httpx

from framework.security import client as client_settings
from tests.support.procs import Process, wait_for
from tests.support.scheduler import SchedulerProcess

# GET / answers the instance's host port (GET /slow/S after S seconds); GET /health answers 200
# while the file `health` exists
# (relative paths: a task user may not reach its sandbox by its absolute path under root's tmp).
SERVER = """import os, time, http.server as h
PORT = os.environ["PORT0"]
class H(h.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(float(self.path[6:]))
        ok = self.path != "/health" or os.path.exists("health")
        body = (PORT if ok else "sick").encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
h.ThreadingHTTPServer(("127.0.0.1", int(PORT)), H).serve_forever()
"""
WEB = "touch health && exec {python} -c '" + SERVER + "'"
ECHO_COMMAND = ("exec {python} -c 'import os, socketserver as s; s.TCPServer.allow_reuse_address = True; "
        "H = type(\"H\", (s.StreamRequestHandler,), "
        "{{\"handle\": lambda self: self.wfile.write(os.environ[\"PORT0\"].encode() + b\":\" + self.rfile.readline())}}); "
        "s.ThreadingTCPServer((\"127.0.0.1\", int(os.environ[\"PORT0\"])), H).serve_forever()'")
HEALTH = {"protocol": "MESOS_HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30,
          "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 0, "delaySeconds": 0}  # 0: never killed


def web_app(app_id: str, service_port: int, instances: int = 3, **labels: str) -> dict:
    """An HTTP app of `instances` on `service_port` (0: one the scheduler assigns), in the router's group."""
    return {"id": app_id, "cmd": WEB.format(python=PYTHON), "cpus": 0.05, "mem": 32, "instances": instances,
            "backoffSeconds": 0.2, "portDefinitions": [{"port": service_port, "name": "http"}],
            "healthChecks": [HEALTH], "labels": {"HAPROXY_GROUP": "external", **labels}}


PYTHON = sys.executable  # replaced by the task_python fixture's answer (tasks run as nobody)


def echo_command() -> str:
    """A TCP server answering each line with its host port and the line."""
    return ECHO_COMMAND.format(python=PYTHON)


class RouterProcess:
    """`python -m scheduler.router` (what `dockyard router` runs) as the scheduler's operator."""

    def __init__(self, scheduler: SchedulerProcess, work_dir: Path, http_port: int) -> None:
        self.scheduler = scheduler
        self.work_dir = work_dir
        self.http_port = http_port
        self.process: Process | None = None

    def start(self) -> "RouterProcess":
        argv = [sys.executable, "-m", "scheduler.router", "--config", str(self.scheduler.client_file),
                "--work-dir", str(self.work_dir), "--http-port", str(self.http_port), "--log-level", "debug"]
        self.process = Process(argv, self.work_dir.parent / "router.log")
        wait_for(lambda: self.status().get("pid") == self.process.pid and self.status()["haproxy"]["running"],
                 timeout=30, what="the router synced and HAProxy running")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def status(self) -> dict[str, Any]:
        from scheduler.router.status import router_status

        try:
            return router_status(self.work_dir)
        except (FileNotFoundError, ValueError):
            return {}

    def backend(self, app_id: str, index: int = 0) -> dict | None:
        return next((b for b in self.status().get("backends", []) if b["app"] == app_id
                     and b["portIndex"] == index), None)

    def serving(self, app_id: str) -> dict[str, int]:
        """task id -> host port of each instance HAProxy sends traffic to."""
        backend = self.backend(app_id) or {"servers": []}
        return {s["task"]: s["port"] for s in backend["servers"]
                if s["wanted"] == "ready" and s.get("haproxy") != "MAINT"}

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        try:
            return wait_for(condition, timeout=timeout, what=what)
        except TimeoutError:
            log = self.process.output()[-4000:] if self.process else ""
            raise AssertionError(f"timed out waiting for {what}\nstatus: {json.dumps(self.status())[:3000]}\n"
                                 f"router log: {log}\nscheduler log: {self.scheduler.process.output()[-3000:]}")


def deploy(scheduler: SchedulerProcess, app: dict, healthy: int | None = None) -> list[dict]:
    """POST the app and wait for `healthy` (default: all) healthy instances; their tasks."""
    scheduler.call("POST", "/v2/apps", app)
    want = app["instances"] if healthy is None else healthy

    def healthy_tasks() -> list[dict]:
        tasks = scheduler.call("GET", f"/v2/apps{app['id']}/tasks")["tasks"]
        return [t for t in tasks if t["state"] == "TASK_RUNNING"
                and (not app.get("healthChecks") or any(r["alive"] for r in t["healthCheckResults"]))]
    return scheduler.wait_until(healthy_tasks, lambda tasks: len(tasks) >= want, f"{app['id']} healthy", 90)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def pid_serving(port: int) -> int:
    """The pid of the task process listening on 127.0.0.1:`port`."""
    wanted = f"{port:04X}"
    inodes = {line.split()[9] for path in ("/proc/net/tcp",) for line in Path(path).read_text().splitlines()[1:]
              if line.split()[1].endswith(f":{wanted}") and line.split()[3] == "0A"}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if fd.readlink().name in {f"socket:[{inode}]" for inode in inodes}:
                    return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class EventLog:
    """The scheduler's `/v2/events` of some types, collected by a thread as they come (each with
    `receivedAt`, this machine's time)."""

    def __init__(self, scheduler: SchedulerProcess, *types: str) -> None:
        settings = client_settings.load(str(scheduler.client_file))
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=60), **settings.httpx_options())
        self.url = f"{settings.url.rstrip('/')}/v2/events"
        self.types = ",".join(("event_stream_attached", *types))
        self.seen: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        try:
            with self.client.stream("GET", self.url, params={"event_type": self.types},
                                    headers={"Accept": "text/event-stream"}) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        self.seen.append({**json.loads(line[5:]), "receivedAt": time.time()})
        except httpx.HTTPError:
            pass

    def __enter__(self) -> "EventLog":
        self.thread.start()
        wait_for(lambda: any(e["eventType"] == "event_stream_attached" for e in self.seen), timeout=10,
                 what="the event stream attached")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["eventType"] == event_type]
