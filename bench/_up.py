"""Shared by the job benchmarks: `dockyard up --agents N --no-scheduler` plus our own scheduler.

The scheduler is started separately (same code `dockyard up` would run) so the
benchmark can keep every finished run (`--job-history`) and read its timings.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_ports(count: int) -> list[int]:
    """`count` consecutive free ports (agents take agent-port, +1, ...)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65000:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return list(range(base, base + count))
    raise RuntimeError("no free port range")


def wait(what: str, probe, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as error:  # not up yet
            last = error
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what} ({last})")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Up:
    """`dockyard up --agents N --no-scheduler` and a `dockyard scheduler` beside it."""

    def __init__(self, agents: int = 2, job_history: int = 1000, resources: str | None = None,
                 scheduler_args: tuple[str, ...] = ()) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        ports = free_ports(agents + 1)
        self.master_port, self.agent_ports = ports[0], ports[1:]
        self.scheduler_port = free_ports(1)[0]
        self.agents = agents
        self.job_history = job_history
        self.resources = resources
        self.scheduler_args = scheduler_args
        self.procs: list[subprocess.Popen] = []
        self.url = f"http://127.0.0.1:{self.scheduler_port}"

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        out = open(self.workdir / log, "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen([sys.executable, str(REPO / "dockyard.py"), *argv], stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(process)
        return process

    def __enter__(self) -> "Up":
        """Start; on a port race with another process on this shared machine, retry on new ports."""
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError:
                self.__exit__()
                self.procs = []
                if attempt == 2:
                    raise
                ports = free_ports(self.agents + 1)
                self.master_port, self.agent_ports = ports[0], ports[1:]
                self.scheduler_port = free_ports(1)[0]
                self.url = f"http://127.0.0.1:{self.scheduler_port}"
        raise AssertionError("unreachable")

    def _start(self) -> "Up":
        argv = ["up", "--agents", str(self.agents), "--work-dir", str(self.workdir / "cluster"),
                "--master-port", str(self.master_port), "--agent-port", str(self.agent_ports[0]),
                "--no-scheduler"]
        if self.resources:
            argv += ["--resources", self.resources]
        self._spawn(argv, "up.log")
        master = f"http://127.0.0.1:{self.master_port}"
        wait("agents", lambda: self._alive() and len(json.loads(urllib.request.urlopen(f"{master}/state", timeout=2).read())
                                   ["slaves"]) >= self.agents, timeout=30)
        self.scheduler = self._spawn(["scheduler", "--master", f"127.0.0.1:{self.master_port}",
                                      "--port", str(self.scheduler_port), "--data-dir",
                                      str(self.workdir / "scheduler"), "--job-history",
                                      str(self.job_history), *self.scheduler_args], "scheduler.log")
        wait("scheduler", lambda: self._alive() and httpx.get(f"{self.url}/health", timeout=2).status_code == 200)
        return self

    def _alive(self) -> bool:
        if any(p.poll() is not None for p in self.procs):
            raise RuntimeError(f"a cluster process exited (see {self.workdir})")
        return True

    def cluster_resources(self) -> dict[str, float]:
        state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.master_port}/state",
                                                  timeout=5).read())
        total: dict[str, float] = {}
        for agent in state["slaves"]:
            for name in ("cpus", "mem"):
                total[name] = total.get(name, 0.0) + float(agent["resources"].get(name, 0))
        return total

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.procs):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.procs):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def cpu_by_role(root: Path) -> dict[str, float]:
    """CPU seconds (user+system) used so far by each dockyard role whose command line mentions `root`.

    Executors' command lines do not name the work dir, so they are matched by their
    MESOS_DIRECTORY environment instead.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "dockyard.py" not in cmdline:
                continue
            role = next((r for r in ("scheduler", "master", "agent", "executor") if f"dockyard.py {r}" in cmdline), None)
            if role is None:
                continue
            if str(root) not in cmdline:
                environ = (entry / "environ").read_bytes().decode(errors="replace")
                if str(root) not in environ:
                    continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            totals[role] = totals.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return totals


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(int(round(q * (len(ordered) - 1))), len(ordered) - 1)
    return ordered[index]


def histogram_quantile(metrics_text: str, name: str, q: float) -> float | None:
    """Prometheus-style quantile from a histogram's cumulative buckets (linear in a bucket)."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    buckets.sort()
    rank = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return previous_le
            width = count - previous_count
            return previous_le + (le - previous_le) * ((rank - previous_count) / width if width else 0)
        previous_le, previous_count = le, count
    return None
