"""`make demo` is the main job: it must bring up a cluster, a container service and a job run."""
from __future__ import annotations

import subprocess
import sys

from tests.support.procs import REPO, free_port, port_open


def test_demo_runs_a_container_service_and_a_job(tmp_path) -> None:
    master, scheduler = free_port(), free_port()
    agent = free_port()
    while port_open(agent + 1):  # agent2 takes the next port
        agent = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "framework.local.demo", "--no-hold", "--work-dir", str(tmp_path / "demo"),
         "--master-port", str(master), "--agent-port", str(agent), "--scheduler-port", str(scheduler)],
        cwd=REPO, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    says = [line for line in result.stdout.splitlines() if "says:" in line]
    assert len(says) == 2, result.stdout
    assert all("hello from a busybox container" in line for line in says), result.stdout
    assert ": SUCCESS" in result.stdout
    # Stopping the demo stops every process it started.
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout
