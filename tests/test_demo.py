"""`make demo` is the main job: it must bring up a cluster, a container service and a job run."""
from __future__ import annotations

import subprocess
import sys

from tests.local.test_up import consecutive_free_ports
from tests.support.procs import REPO, free_port, port_open


def test_demo_runs_a_container_service_and_a_job(tmp_path) -> None:
    master, scheduler = free_port(), free_port()
    agent = consecutive_free_ports(2)  # agent2 takes the next port
    result = subprocess.run(
        [sys.executable, "-m", "framework.local.cluster.demo", "--no-hold", "--work-dir", str(tmp_path / "demo"),
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


def test_demo_piped_into_tee_then_ctrl_c_leaves_nothing(tmp_path) -> None:
    """`make demo 2>&1 | tee log`, then Ctrl-C: `tee` is gone before the demo reports that it stops
    the cluster, and the cluster must stop all the same."""
    import os
    import signal
    import time

    master, scheduler = free_port(), free_port()
    agent = consecutive_free_ports(2)  # agent2 takes the next port
    work = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "framework.local.cluster.demo", "--work-dir", str(work), "--master-port", str(master),
         "--agent-port", str(agent), "--scheduler-port", str(scheduler)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:
            seen.append(line.decode(errors="replace"))
            if "the cluster stays up" in seen[-1]:
                break
        assert "the cluster stays up" in seen[-1], "".join(seen)
        demo.stdout.close()  # tee died of the Ctrl-C first
        os.kill(demo.pid, signal.SIGINT)
        demo.wait(90)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            leftover = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.strip()
            if not leftover:
                break
            time.sleep(0.5)
        assert leftover == "", f"left running: {leftover}"
        assert not port_open(master) and not port_open(scheduler)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
