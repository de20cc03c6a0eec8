"""The web UI's apps page with 1,000 apps and 10,000 tasks: at the server and in headless Chromium.

The state is made in the scheduler's own store the way a scheduler leaves it: 1,000 apps
created through the service manager (10 groups of 100; 10 instances each, a health
check), then 10,000 task records, RUNNING and healthy, on 20 agents, and each app's
deployment finished. A scheduler process then loads that store as after a restart and
serves its API with the UI's routes (no master: nothing is launched or killed).

Measured in the same run, each the median of `ROUNDS` requests over loopback:
- `apps_page_ms`: GET /ui/apps, the whole answer (target <= 200 ms);
- `api_apps_tasks_ms`: GET /v2/apps?embed=apps.tasks, the API's answer with every task
  (the baseline: what a page fetching the JSON would start from);
- `apps_page_rendered_ms`: Chromium (Debian's `chromium` and `chromium-driver`) opening
  /ui/apps, from navigation start to two frames painted after the load event (target <= 1 s).

    .venv/bin/python -m bench ui       # DOCKYARD_BENCH_UI_APPS=1000, DOCKYARD_BENCH_UI_TASKS_PER_APP=10
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
APPS = int(os.environ.get("DOCKYARD_BENCH_UI_APPS", "1000"))
TASKS_PER_APP = int(os.environ.get("DOCKYARD_BENCH_UI_TASKS_PER_APP", "10"))
AGENTS = 20
ROUNDS = 9
SERVER_TARGET_MS = 200.0
RENDER_TARGET_MS = 1000.0
HEALTH = {"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0}


def populate(data_dir: Path, apps: int, tasks_per_app: int) -> int:
    """Create the apps and their task records in the store under `data_dir`; returns the tasks made."""
    from scheduler.context import SchedulerConfig
    from scheduler.core.config import TASKS_KEY
    from scheduler.lifecycle import build_context
    from scheduler.services.instances import new_task_id, owner_of
    from scheduler.services.app_state import APPS_KEY
    from scheduler.services.specs import parse_app
    from scheduler.tasks import State, TaskRecord

    os.environ.setdefault("DOCKYARD_STORE_FSYNC", "0")
    ctx = build_context(SchedulerConfig(data_dir=str(data_dir), master="127.0.0.1:1"))
    assert ctx.services is not None
    now = time.time()
    made = 0
    for index in range(apps):
        app = parse_app({"id": f"/bench/g{index // 100}/app{index}", "cmd": "sleep 3600", "cpus": 0.01, "mem": 16,
                         "instances": tasks_per_app, "labels": {"team": f"t{index % 7}", "tier": "web"},
                         "portDefinitions": [{"port": 0}], "healthChecks": [HEALTH]})
        state, _ = ctx.services.create(app)
        for number in range(tasks_per_app):
            agent = (index * tasks_per_app + number) % AGENTS
            record = TaskRecord(task_id=new_task_id(app.id), owner=owner_of(app.id), name=app.id,
                                state=State.RUNNING, agent_id=f"bench-S{agent}", hostname=f"agent{agent}",
                                ports=[31000 + number], created_at=now - 60, launched_at=now - 59,
                                started_at=now - 58, healthy=True,
                                history=[("LAUNCHED", now - 59), ("TASK_STAGING", now - 59), ("TASK_RUNNING", now - 58)])
            ctx.store.put(f"{TASKS_KEY}/{record.task_id}", record.to_json())
            state.instances[record.task_id] = app.version or ""
            made += 1
        state.deployment = None  # deployed: what a scheduler restarted after the rollout sees
        ctx.store.put(f"{APPS_KEY}/{app.id.strip('/').replace('/', ':')}", state.to_json())
    ctx.store.close()
    return made


def serve(data_dir: str, port: int) -> None:
    """The scheduler's app (API and UI) over the state in `data_dir`, on 127.0.0.1:`port`."""
    import uvicorn

    from scheduler.api.app import build_app
    from scheduler.context import SchedulerConfig
    from scheduler.lifecycle import build_context
    from scheduler.ui import ui_routes

    ctx = build_context(SchedulerConfig(data_dir=data_dir, master="127.0.0.1:1", port=port))
    app = build_app(ctx)
    if not any(str(getattr(route, "path", "")).startswith("/ui") for route in app.router.routes):
        app.router.routes.extend(ui_routes(ctx))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _timed(client: httpx.Client, path: str, rounds: int = ROUNDS) -> tuple[list[float], int]:
    """Milliseconds for each whole answer, and the size of the last."""
    samples, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path)
        response.raise_for_status()
        size = len(response.content)
        samples.append((time.perf_counter() - started) * 1000)
    return samples, size


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": round(statistics.median(ordered), 1), "min": round(ordered[0], 1),
            "max": round(ordered[-1], 1)}


RENDERED = """
const done = arguments[arguments.length - 1];
const painted = () => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now())));
if (document.readyState === 'complete') painted(); else addEventListener('load', painted);
"""


def _render_times(url: str, rounds: int) -> tuple[list[float], int]:
    """Chromium's time from navigation start to two frames after the load event, and the rows shown."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_script_timeout(30)
        samples, rows = [], 0
        for _ in range(rounds):
            driver.get("about:blank")
            driver.get(url)
            samples.append(float(driver.execute_async_script(RENDERED)))
            rows = int(driver.execute_script("return document.querySelectorAll('#apps-live tbody tr').length"))
        return samples, rows
    finally:
        driver.quit()


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-ui-") as scratch:
        data_dir = Path(scratch) / "scheduler"
        started = time.monotonic()
        tasks = populate(data_dir, APPS, TASKS_PER_APP)
        populated = time.monotonic() - started
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        server = subprocess.Popen([sys.executable, "-m", "bench.bench_ui", "serve", str(data_dir), str(port)],
                                  cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=60) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if client.get("/ping").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the server did not start: {server.stderr.read().decode()[-2000:]}")
                    time.sleep(0.2)
                _timed(client, "/ui/apps", 2)  # warm: templates compiled, caches filled
                page, page_bytes = _timed(client, "/ui/apps")
                api, api_bytes = _timed(client, "/v2/apps?embed=apps.tasks", 5)
            rendered, rows = _render_times(base + "/ui/apps", 5)
        finally:
            server.terminate()
            server.wait(20)
    page_ms, rendered_ms = _summary(page), _summary(rendered)
    return {
        "apps": APPS, "tasks": tasks, "populate_seconds": round(populated, 1),
        "apps_page_ms": page_ms, "apps_page_bytes": page_bytes,
        "api_apps_tasks_ms": _summary(api), "api_apps_tasks_bytes": api_bytes,
        "apps_page_rendered_ms": rendered_ms, "rows_rendered": rows,
        "page_vs_api": round(page_ms["median"] / _summary(api)["median"], 3),
        "targets": {"apps_page_ms": SERVER_TARGET_MS, "apps_page_rendered_ms": RENDER_TARGET_MS},
        "ok": page_ms["median"] <= SERVER_TARGET_MS and rendered_ms["median"] <= RENDER_TARGET_MS and rows == APPS,
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        import json

        print(json.dumps(run()))
