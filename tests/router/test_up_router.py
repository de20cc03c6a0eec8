"""`dockyard up --router`: the router runs beside the scheduler, follows its apps, serves its stats
page to the cluster's operator only, and stops with the cluster (its HAProxy too)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from framework.security import client as client_settings
from tests.router.load import get
from tests.local.test_up import consecutive_free_ports
from tests.local.test_up_lifecycle import down
from tests.support.procs import Process, dockyard, free_port, port_open, wait_for


def test_up_runs_the_router_and_down_stops_it(tmp_path: Path) -> None:
    work = tmp_path / "cluster"
    master, agent, scheduler, http, stats = free_port(), consecutive_free_ports(1), free_port(), free_port(), free_port()
    up = Process(dockyard("up", "--agents", "1", "--work-dir", str(work), "--master-port", str(master),
                          "--agent-port", str(agent), "--scheduler-port", str(scheduler),
                          "--resources", "cpus:1;mem:512;disk:100;ports:[21300-21310]", "--router",
                          "--router-http-port", str(http), "--router-stats-port", str(stats)),
                 tmp_path / "up.log", env={"COLUMNS": "200"})
    try:
        wait_for(lambda: "cluster up" in up.output(), 90, what="`up` to say the cluster is up")
        assert f"http://127.0.0.1:{http} (stats http://127.0.0.1:{stats}/)" in up.output()
        # the stats page asks for the credentials the router uses itself (client.json's operator)
        assert get(stats, "/;csv")[0] == 401
        status, page = get(stats, "/;csv", auth=client_settings.load(str(work / "client.json")).auth)
        assert status == 200 and "dockyard_stats" in page
        status = subprocess.run(dockyard("router", "status", "--work-dir", str(work / "router"), "--json"),
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert isinstance(json.loads(status.stdout), dict)
        haproxy = [int(p) for p in subprocess.run(["pgrep", "-f", str(work / "router")], capture_output=True,
                                                  text=True).stdout.split()]
        assert haproxy, "no HAProxy runs for the router"
    finally:
        stopped = down(work)
        up.stop()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "router" in stopped.stdout
    wait_for(lambda: not port_open(stats) and not port_open(http), 20, what="the router's ports to close")
