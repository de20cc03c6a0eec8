"""The executor driver's status updates: updates/s and client CPU per update.

A warm executor sends three updates per task (STARTING, RUNNING, FINISHED), one
thread per task. Side by side in one run, against the same uvicorn server (the
agent's server stack, answering 202 after `--agent-ms` of simulated work):

* baseline: what the driver did before, a new TCP connection per update and one
  lock around all of them (it capped a warm executor at ~75 updates/s);
* driver: `MesosExecutorDriver` as it is (keep-alive pool, per-task order only).

    .venv/bin/python -m bench executor_driver     # or: -m bench.bench_executor_driver --tasks 100

Prints one JSON document; `ratio` = driver / baseline updates per second.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

from framework.mesos.executor import DRIVER_RUNNING, EXECUTOR_PATH, MesosExecutorDriver

SERVER = """
import asyncio, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
DELAY = float(sys.argv[2]) / 1000
async def call(request):
    await request.body()
    if DELAY:
        await asyncio.sleep(DELAY)
    return Response(status_code=202)
app = Starlette(routes=[Route("/api/v1/executor", call, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
STATES = ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED")


class BaselineDriver(MesosExecutorDriver):
    """The driver's former `_post`: a connection per call, all calls behind one lock."""

    _serial = threading.Lock()

    def _post(self, body: dict) -> None:
        body = dict(body, executor_id=self.executor_id, framework_id=self.framework_id)
        with self._serial:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
            try:
                conn.request("POST", EXECUTOR_PATH, body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json", "Accept": "application/json"})
                conn.getresponse().read()
            finally:
                conn.close()


def measure(cls: type[MesosExecutorDriver], env: dict[str, str], tasks: int) -> dict:
    driver = cls(object(), env=env)
    driver._subscribed, driver._status = True, DRIVER_RUNNING  # as after SUBSCRIBED

    def task(index: int) -> None:
        for state in STATES:
            driver.sendStatusUpdate({"task_id": {"value": f"t{index}"}, "state": state})

    threads = [threading.Thread(target=task, args=(i,)) for i in range(tasks)]
    wall, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    driver.stop()
    updates = tasks * len(STATES)
    return {"updates_per_s": round(updates / wall, 1), "cpu_ms_per_update": round(cpu / updates * 1000, 3)}


def run(tasks: int = 100, agent_ms: float = 10.0, rounds: int = 2) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(agent_ms)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("stub agent did not start")
                time.sleep(0.05)
        env = {"MESOS_AGENT_ENDPOINT": f"127.0.0.1:{port}", "MESOS_FRAMEWORK_ID": "F", "MESOS_EXECUTOR_ID": "e"}
        baseline, driver = [], []
        for _ in range(rounds):  # interleaved, so machine noise hits both sides alike
            baseline.append(measure(BaselineDriver, env, tasks))
            driver.append(measure(MesosExecutorDriver, env, tasks))
    finally:
        server.terminate()
        server.wait()
    best = lambda results: max(results, key=lambda r: r["updates_per_s"])  # noqa: E731
    return {"tasks": tasks, "updates_per_task": len(STATES), "agent_ms": agent_ms,
            "baseline": best(baseline), "driver": best(driver),
            "ratio": round(best(driver)["updates_per_s"] / best(baseline)["updates_per_s"], 2),
            "machine_load_1m": round(os.getloadavg()[0], 2)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--agent-ms", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(run(args.tasks, args.agent_ms)))
