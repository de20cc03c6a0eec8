"""Shared by the job benchmarks: `dockyard up --agents N --no-scheduler` plus our own scheduler.

The scheduler is started separately (same code `dockyard up` would run) so the
benchmark can keep every finished run (`--job-history`) and read its timings.

Security as `up` has it (docs/security.md), chosen by `security=`:

* `"auth"` (`up`'s default on loopback): HTTP Basic on every API, executor tokens;
* `"tls"` (`up --tls`): the same and TLS on every connection;
* `"insecure"` (`up --insecure`): the open cluster.

Every agent's `--resources` and `--isolation` can be set with
`$DOCKYARD_BENCH_RESOURCES` and `$DOCKYARD_BENCH_ISOLATION` (to split a figure by cause).

The default is `$DOCKYARD_BENCH_SECURITY`, else `"auth"`. The scheduler we start gets the
flags `up` would give it (from the bundle `up` generated), and we call the cluster as
`WORK_DIR/client.json` says (the operator's principal and secret; the CA with TLS),
over one keep-alive `httpx.Client` per process and server (`up.client()`,
`up.master()`), so a TLS handshake is paid once per connection, not once per call.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/bench_x.py` too
    sys.path.insert(0, str(REPO))

from framework.security import client as client_settings  # noqa: E402
from framework.security.bundle import Bundle  # noqa: E402

MODES = ("auth", "tls", "insecure")
UP_FLAGS = {"auth": [], "tls": ["--tls"], "insecure": ["--insecure"]}


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


class ClusterExited(RuntimeError):
    """A process of the cluster under test has exited: waiting longer is pointless."""


def wait(what: str, probe, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except ClusterExited:
            raise
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
    """`dockyard up --agents N --no-scheduler [--tls | --insecure]` and a `dockyard scheduler` beside it."""

    def __init__(self, agents: int = 2, job_history: int = 1000, resources: str | None = None,
                 scheduler_args: tuple[str, ...] = (), security: str | None = None) -> None:
        security = security or os.environ.get("DOCKYARD_BENCH_SECURITY") or "auth"
        if security not in MODES:
            raise ValueError(f"security {security!r}: one of {', '.join(MODES)}")
        self.security = security
        self.workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        self.agents = agents
        self.job_history = job_history
        self.resources = resources or os.environ.get("DOCKYARD_BENCH_RESOURCES")  # every agent's
        self.isolation = os.environ.get("DOCKYARD_BENCH_ISOLATION")  # every agent's --isolation
        self.scheduler_args = scheduler_args
        self.procs: list[subprocess.Popen] = []
        self._clients: list[httpx.Client] = []
        self._master: httpx.Client | None = None
        self.settings: client_settings.ClientConfig | None = None
        self._pick_ports()

    def _pick_ports(self) -> None:
        ports = free_ports(self.agents + 1)
        self.master_port, self.agent_ports = ports[0], ports[1:]
        self.scheduler_port = free_ports(1)[0]
        scheme = "https" if self.security == "tls" else "http"
        self.url = f"{scheme}://127.0.0.1:{self.scheduler_port}"
        self.master_url = f"{scheme}://127.0.0.1:{self.master_port}"

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "cluster"

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
                self._pick_ports()
        raise AssertionError("unreachable")

    # -- clients (one keep-alive connection pool each; closed by __exit__) ---------------------
    def client_options(self) -> dict[str, Any]:
        """`httpx.Client` keyword arguments: client.json's credentials and, with TLS, its CA."""
        assert self.settings is not None, "not started"
        return self.settings.httpx_options() if self.security != "insecure" else {}

    def client(self, timeout: float = 30.0, **options: Any) -> httpx.Client:
        """A client of the scheduler's API (base_url set); reuse it: it keeps its connections.
        It asks for dockyard's run details (each task's host, attempts) beside Metronome's shapes."""
        headers = {"Dockyard-Detail": "true", **options.pop("headers", {})}
        client = httpx.Client(base_url=self.url, timeout=timeout, headers=headers,
                              **{**self.client_options(), **options})
        self._clients.append(client)
        return client

    def master(self) -> httpx.Client:
        """The master's API, as the operator (one client, kept)."""
        if self._master is None:
            self._master = httpx.Client(base_url=self.master_url, timeout=10, **self.client_options())
            self._clients.append(self._master)
        return self._master

    def master_state(self) -> dict[str, Any]:
        response = self.master().get("/state")
        response.raise_for_status()
        return response.json()

    # -- start ---------------------------------------------------------------------------
    def _start(self) -> "Up":
        argv = ["up", "--agents", str(self.agents), "--work-dir", str(self.cluster_dir),
                "--master-port", str(self.master_port), "--agent-port", str(self.agent_ports[0]),
                "--scheduler-port", str(self.scheduler_port),  # so client.json names our scheduler
                "--no-scheduler", *UP_FLAGS[self.security]]
        if self.resources:
            argv += ["--resources", self.resources]
        if self.isolation:
            argv += ["--isolation", self.isolation]
        # `up --insecure` writes client.json without making its work dir first (only the security
        # bundle makes it), so a fresh work dir must exist beforehand.
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(argv, "up.log")
        client_file = self.cluster_dir / "client.json"
        # `up` writes client.json after its bundle, before it starts the master.
        self.settings = wait("client.json", lambda: self._alive() and client_file.exists()
                             and client_settings.load(str(client_file)), timeout=60)
        if self.settings.url != self.url:
            raise RuntimeError(f"{client_file} names {self.settings.url}, not {self.url}")
        wait("agents", lambda: self._alive() and len(self.master_state()["slaves"]) >= self.agents, timeout=30)
        self.scheduler = self._spawn(["scheduler", "--master", f"127.0.0.1:{self.master_port}",
                                      "--port", str(self.scheduler_port), "--data-dir",
                                      str(self.workdir / "scheduler"), "--job-history",
                                      str(self.job_history), *self.scheduler_security(),
                                      *self.scheduler_args], "scheduler.log")
        probe = self.client(timeout=2)
        wait("scheduler", lambda: self._alive() and probe.get("/health").status_code == 200)
        return self

    def scheduler_security(self) -> list[str]:
        """The flags `up` gives its own scheduler (supervisor.Security.flags), from up's bundle."""
        if self.security == "insecure":
            return []
        bundle = Bundle(self.cluster_dir / "security")  # made by `up`: we only read it
        flags = bundle.scheduler_flags()
        if self.security == "tls":
            cert, key = bundle.directory / "cluster.pem", bundle.directory / "cluster.key"  # supervisor's name
            if not (cert.exists() and key.exists()):
                raise RuntimeError(f"`up --tls` left no {cert} and {key} (see {self.workdir / 'up.log'})")
            flags += bundle.tls_flags(cert, key)
        return flags

    def _alive(self) -> bool:
        if any(p.poll() is not None for p in self.procs):
            raise ClusterExited(f"a cluster process exited (see {self.workdir})")
        return True

    def cluster_resources(self) -> dict[str, float]:
        state = self.master_state()
        total: dict[str, float] = {}
        for agent in state["slaves"]:
            for name in ("cpus", "mem"):
                total[name] = total.get(name, 0.0) + float(agent["resources"].get(name, 0))
        return total

    def __exit__(self, *exc: object) -> None:
        """Stop everything; the work dir (logs) stays when something failed or $DOCKYARD_BENCH_KEEP is set."""
        for client in self._clients:
            client.close()
        self._clients, self._master = [], None
        for process in reversed(self.procs):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.procs):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        failed = bool(exc and exc[0] is not None) or any(p.returncode not in (0, -signal.SIGTERM) for p in self.procs)
        if self.procs and not failed and not os.environ.get("DOCKYARD_BENCH_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)


def cpu_by_role(root: Path, reaped: bool = False) -> dict[str, float]:
    """CPU seconds (user+system) used so far by each dockyard role whose command line mentions `root`.

    Executors' command lines do not name the work dir, so they are matched by their
    MESOS_DIRECTORY environment instead. An exited process is not counted; with
    `reaped`, `<role>_reaped` adds what each role's exited and reaped children used
    (an agent's executors that have finished, an executor's tasks).
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
            if reaped:
                key = f"{role}_reaped"
                totals[key] = totals.get(key, 0.0) + (int(fields[13]) + int(fields[14])) / ticks
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
