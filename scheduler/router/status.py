"""What a router serves: written by the router (status.json in its work directory) after
every pass, read back by `router_status` with each server's live state from HAProxy.

`router_status(work_dir)` is what `dockyard router status` prints: frontends,
routes, backends and each server (slot, task, address, the state the router asked
for, and HAProxy's own: UP, MAINT, DRAIN, DOWN, with its current sessions), plus
problems (apps or ports left out, and why) and the last error (a refused
configuration and where it was kept).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduler.router.haproxy import socket_dir
from scheduler.router.runtime import HAProxyError, RuntimeApi, show_proc
from scheduler.router.settings import Counters, RouterSettings

if TYPE_CHECKING:
    from scheduler.router.model import Layout

FILE = "status.json"


def describe(layout: "Layout | None") -> dict[str, Any]:
    """A layout as JSON: frontends, routes, backends with their slots."""
    if layout is None:
        return {"frontends": [], "routes": [], "backends": []}
    model = layout.model
    return {
        "frontends": [{"name": f.name, "port": f.port, "mode": f.mode, "backend": f.backend}
                      for f in model.frontends],
        "routes": [{"backend": r.backend, "vhosts": list(r.vhosts), "paths": list(r.paths)} for r in model.routes],
        "backends": [{"name": b.name, "app": b.app_id, "portIndex": b.port_index, "mode": b.mode,
                      "slots": len(layout.slots.get(b.name, ())),
                      "servers": [{"slot": slot.name, "task": slot.server.task_id, "address": slot.server.address,
                                   "port": slot.server.port, "wanted": slot.server.state}
                                  for slot in layout.slots.get(b.name, ()) if slot.server is not None]}
                     for b in model.backends],
    }


def write(work_dir: Path, layout: "Layout | None", counters: Counters, settings: RouterSettings,
          scheduler_url: str, rejected: str | None) -> None:
    document = {
        "updatedAt": time.time(), "pid": os.getpid(), "scheduler": scheduler_url, "group": settings.group,
        "bindIp": settings.bind_ip, "httpPort": settings.http_port,
        "statsPort": settings.stats_port or None, "eventStream": counters.stream,
        **describe(layout),
        "problems": list(counters.problems), "lastError": counters.last_error, "rejectedConfig": rejected,
        "lastChange": counters.last_change,
        "counts": {"syncs": counters.syncs, "runtimeUpdates": counters.runtime_updates,
                   "reloads": counters.reloads, "failedApplies": counters.failed_applies},
    }
    path = Path(work_dir) / FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1))
    os.replace(temporary, path)


def router_status(work_dir: Path | str) -> dict[str, Any]:
    """The router's last status with HAProxy's live view merged in (`haproxy` of each server,
    `haproxy.running` overall); raises FileNotFoundError when no router ever ran there."""
    work_dir = Path(work_dir)
    document = json.loads((work_dir / FILE).read_text())
    live: dict[tuple[str, str], Any] = {}
    try:
        sockets = socket_dir(work_dir.resolve())
        processes = show_proc(sockets / "master.sock", timeout=2.0)
        live = {(s.backend, s.server): s for s in RuntimeApi(sockets / "haproxy.sock", timeout=2.0).stats()}
        document["haproxy"] = {"running": True, "master": processes.master, "workers": list(processes.workers),
                               "oldWorkers": list(processes.old_workers), "reloads": processes.reloads,
                               "failedReloads": processes.failed}
    except HAProxyError as error:
        document["haproxy"] = {"running": False, "error": str(error)}
    for backend in document.get("backends", []):
        for server in backend.get("servers", []):
            stat = live.get((backend["name"], server["slot"]))
            if stat is not None:
                server["haproxy"] = "UP" if stat.status == "no check" else stat.status  # no health check of its own
                server["sessions"] = stat.sessions
    return document
