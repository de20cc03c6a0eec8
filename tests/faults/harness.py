"""A whole dockyard deployment as real processes, and the faults we inflict on it.

Why: the HA promise ("any one process may die at any moment and nothing is
lost") is only believable when every piece is a real process that a test can
`kill -9`: ZooKeeper, masters contending in it, agents whose executors outlive
them, and several schedulers electing a leader. `Deployment` starts all of
that on loopback; `Faults` kills things in a loop; `check_*` functions state
the invariants that must hold after every fault and at the end.

Used by tests/ha (one fault at a time), tests/faults (the loop) and
bench/bench_failover.py (timings).
"""
from __future__ import annotations

import json
import os
import random
import signal
import ssl
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from framework.security.bundle import Identity
from tests.support import security
from tests.support.cluster import Cluster
from tests.support.procs import Process, dockyard, free_port, wait_for
from tests.support.security import Endpoint
from tests.support.zookeeper import ZooKeeper

SMALL_AGENT = "cpus:4;mem:4096;disk:10000;ports:[31000-31200]"


# -- HTTP ------------------------------------------------------------------------------------

def call(url: str, method: str = "GET", body: Any = None, timeout: float = 10.0, *,
         identity: Identity | None = None, context: ssl.SSLContext | None = None) -> tuple[int, Any, dict]:
    """(status, JSON or text, headers with lower-case names); connection errors raise OSError."""
    # Dockyard-Detail: runs with their tasks' attempts and messages, as the CLI reads them
    status, headers, raw = security.call(method, url, identity, body, headers={"Dockyard-Detail": "true"},
                                         context=context, timeout=timeout)
    try:
        payload = json.loads(raw) if raw.strip() else None
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, payload, headers


# -- processes ---------------------------------------------------------------------------------

@dataclass
class SchedulerProcess:
    """One HA scheduler of a deployment; `api` is its API as the cluster's operator."""

    index: int
    api: Endpoint
    workdir: Path
    process: Process | None = None

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def address(self) -> str:
        return self.api.address

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def call(self, path: str, method: str = "GET", body: Any = None,
             timeout: float = 10.0) -> tuple[int, Any, dict]:
        """(status, JSON or text, lower-case headers) of one call as the operator."""
        return call(self.url + path, method, body, timeout, identity=self.api.identity, context=self.api.context)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def health(self) -> dict | None:
        try:
            return call(self.url + "/health", timeout=2, context=self.api.context)[1]
        except OSError:
            return None


@dataclass
class Deployment:
    """ZooKeeper + masters (contending in ZooKeeper when >1) + agents + HA schedulers, secured as a
    test cluster is (tests/support/cluster.py): with `netns=True` the masters and agents serve
    network addresses, so TLS is on too; `api`, `SchedulerProcess.call` act as the operator."""

    workdir: Path
    zk: ZooKeeper
    masters: int = 1
    agents: int = 2
    schedulers: int = 2
    resources: str = SMALL_AGENT
    agent_ping_timeout: float = 75.0
    agent_ping_interval: float = 5.0
    scheduler_args: tuple[str, ...] = ()
    netns: bool = False  # each agent in its own network namespace: `partition` cuts its link
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.restarted: Counter = Counter()  # what `supervise` had to bring back
        self.workdir = Path(self.workdir)
        self.scheduler_zk = self.zk.url(f"/dockyard-{self.tag}")
        self.net: NetnsNetwork | None = None
        self.nodes: list[NetnsNode] = []
        ip, agent_net = "127.0.0.1", None
        self.mesos_zk = self.zk.url(f"/mesos-{self.tag}")
        if self.netns:
            # Masters and ZooKeeper on the bridge's host address, reachable from the agents'
            # namespaces (127.0.0.1 inside a namespace is its own loopback).
            self.net = NetnsNetwork().create()
            self.nodes = [self.net.add_node() for _ in range(self.agents)]
            ip = self.net.host_ip
            self.mesos_zk = f"zk://{ip}:{self.zk.port}/mesos-{self.tag}"
            agent_net = lambda index: (self.nodes[index].node_ip, self.nodes[index].argv([]))  # noqa: E731
        self.cluster = Cluster(self.workdir / "cluster", self.agents, masters=self.masters,
                               zk_url=self.mesos_zk, resources=self.resources, ip=ip, agent_net=agent_net,
                               master_args=["--agent-ping-timeout", str(self.agent_ping_timeout),
                                            "--agent-ping-interval", str(self.agent_ping_interval)])
        self.scheds = [SchedulerProcess(i, Endpoint(f"{self.cluster.scheme}://127.0.0.1:{free_port()}",
                                                    self.cluster.operator, self.cluster.ssl_context),
                                        self.workdir / f"scheduler{i}")
                       for i in range(self.schedulers)]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "Deployment":
        try:
            self.cluster.start()
            for sched in self.scheds:
                self.start_scheduler(sched.index)
            self.wait_leader()
        except BaseException:
            self.stop()
            raise
        return self

    def start_scheduler(self, index: int) -> SchedulerProcess:
        sched = self.scheds[index]
        sched.workdir.mkdir(parents=True, exist_ok=True)
        argv = dockyard("scheduler", "--master", self.cluster.master_uri, "--ip", "127.0.0.1",
                        "--port", str(sched.port), "--data-dir", str(sched.workdir / "data"),
                        "--zk", self.scheduler_zk, *self.cluster.security_flags("scheduler"),
                        *self.scheduler_args)
        sched.process = Process(argv, self.workdir / f"scheduler{index}.log")
        def joined() -> bool:  # serving, and in the election (it knows who leads)
            if not sched.alive():
                return True
            return sched.call("/v2/leader", timeout=2)[0] == 200
        wait_for(joined, timeout=30, what=f"scheduler {index} serving and in the election")
        if not sched.alive():
            raise RuntimeError(f"scheduler {index} exited:\n{sched.process.output()[-3000:]}")
        return sched

    def stop(self) -> None:
        for node in self.nodes:
            node.heal()  # a cut agent must reach its master to say goodbye
        for sched in self.scheds:
            if sched.process is not None:
                sched.process.stop()
        self.cluster.stop()
        if self.net is not None:
            self.net.remove()

    def __enter__(self) -> "Deployment":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- schedulers ------------------------------------------------------------------------

    def leader_address(self) -> str | None:
        """What the live schedulers say `/v2/leader` is (None when they do not agree yet)."""
        answers = set()
        for sched in self.scheds:
            if not sched.alive():
                continue
            try:
                status, payload, _ = sched.call("/v2/leader", timeout=2)
            except OSError:
                return None
            answers.add(payload.get("leader") if status == 200 else None)
        return answers.pop() if len(answers) == 1 else None

    def leader(self) -> SchedulerProcess | None:
        """The scheduler that says it leads and has reconciled every task."""
        for sched in self.scheds:
            if sched.alive():
                health = sched.health() or {}
                if health.get("role") == "leader" and health.get("subscribed") and health.get("reconciled"):
                    return sched
        return None

    def wait_leader(self, timeout: float = 60.0, other_than: int | None = None) -> SchedulerProcess:
        def ready() -> SchedulerProcess | None:
            sched = self.leader()
            return sched if sched is not None and sched.index != other_than else None
        return wait_for(ready, timeout=timeout, interval=0.05, what="a reconciled leading scheduler")

    def follower(self) -> SchedulerProcess:
        leader = self.wait_leader()
        return next(s for s in self.scheds if s.alive() and s.index != leader.index)

    def api(self, method: str, path: str, body: Any = None, via: SchedulerProcess | None = None,
            timeout: float = 10.0) -> tuple[int, Any]:
        """Call the scheduler API through `via` (default: any live scheduler, retried briefly
        while leadership moves)."""
        deadline = time.monotonic() + 30
        while True:
            target = via or next((s for s in self.scheds if s.alive()), None)
            try:
                status, payload, _ = target.call(path, method, body, timeout=timeout)
                if status != 503 or via is not None or time.monotonic() > deadline:
                    return status, payload
            except OSError:
                if via is not None or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def kill_scheduler(self, index: int) -> None:
        sched = self.scheds[index]
        if sched.process is not None:
            sched.process.kill9()
            sched.process.stop()

    # -- masters ----------------------------------------------------------------------------

    def leading_master(self) -> int | None:
        leader = self.cluster.leader()
        for index, port in enumerate(self.cluster.master_ports):
            if leader == f"{self.cluster.ip}:{port}":
                return index
        return None

    def master_state(self) -> dict:
        return self.cluster.state(self.wait_leading_master())

    def wait_leading_master(self, other_than: int | None = None, timeout: float = 30.0) -> int:
        def found() -> tuple[int] | None:  # a tuple: master 0 must count as found
            index = self.leading_master()
            return (index,) if index is not None and index != other_than else None
        return wait_for(found, timeout=timeout, what="a leading master")[0]

    def active_agents(self) -> set[str]:
        """Hostnames of the agents the leading master counts as active."""
        return {a["hostname"] for a in self.master_state().get("slaves", []) if a.get("active", True)}

    def kill_master(self, index: int) -> None:
        self.cluster.kill_master(index)

    # -- agents and executors ------------------------------------------------------------------

    def agent_state(self, index: int) -> dict:
        return self.cluster.agent_api(index).get_json("/state")

    def kill_agent(self, index: int) -> None:
        self.cluster.kill_agent(index)

    def start_agent(self, index: int) -> None:
        self.cluster.start_agent(index)

    def executor_pids(self) -> dict[int, dict[str, str]]:
        """Live executor processes of this deployment: pid -> their MESOS_* environment."""
        found = {}
        for pid, env in our_processes(self.workdir):
            if "MESOS_EXECUTOR_ID" in env and "MESOS_TASK_ID" not in env:
                if _is_executor(pid):
                    found[pid] = env
        return found

    def kill_executor(self, rng: random.Random) -> str | None:
        """`kill -9` one executor; returns once its agent has noticed (it no longer lists it),
        so that the invariants checked next see the consequences, not the state before."""
        pids = self.executor_pids()
        if not pids:
            return None
        pid = rng.choice(sorted(pids))
        os.kill(pid, signal.SIGKILL)
        directory = pids[pid].get("MESOS_DIRECTORY", "")
        wait_for(lambda: directory not in live_executor_dirs(self), timeout=30,
                 what=f"the agent to notice executor {pid} died")
        return pids[pid]["MESOS_EXECUTOR_ID"]

    def supervise(self) -> list[str]:
        """Restart what exited on its own, as systemd would: a master or a scheduler that lost
        its ZooKeeper session exits by design (someone else may lead now)."""
        restarted = []
        for index, process in enumerate(self.cluster.masters):
            if process is not None and not process.alive():
                process.stop()
                self.cluster.start_master(index)
                restarted.append(f"master {index}")
        for sched in self.scheds:
            if sched.process is not None and not sched.alive():
                sched.process.stop()
                self.start_scheduler(sched.index)
                restarted.append(f"scheduler {sched.index}")
        for index, process in enumerate(self.cluster.agents):
            if process is not None and not process.alive():
                process.stop()
                self.cluster.start_agent(index)
                restarted.append(f"agent {index}")
        self.restarted.update(restarted)
        return restarted

    def logs(self) -> str:
        parts = [self.cluster.logs()]
        for sched in self.scheds:
            if sched.process is not None:
                parts.append(f"--- scheduler{sched.index} ---\n{sched.process.output()[-4000:]}")
        return "\n".join(parts)


def _is_executor(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"executor" in cmdline and b"--cleanup" not in cmdline


def our_processes(workdir: Path) -> Iterable[tuple[int, dict[str, str]]]:
    """Processes whose Mesos environment points into `workdir` (executors and their tasks)."""
    root = str(Path(workdir).resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        where = env.get("MESOS_DIRECTORY") or env.get("DOCKYARD_WORK_DIR") or ""
        if where.startswith(root):
            yield int(entry), env


# -- invariants ---------------------------------------------------------------------------------

def running_tasks_by_agent(deployment: Deployment) -> dict[str, list[str]]:
    """task id -> the agents (by hostname) whose /state says it is live there."""
    where: dict[str, list[str]] = {}
    for index, process in enumerate(deployment.cluster.agents):
        if process is None or not process.alive():
            continue
        try:
            state = deployment.agent_state(index)
        except OSError:
            continue
        for framework in state.get("frameworks", []):
            for executor in framework.get("executors", []):
                for task in executor.get("tasks", []):
                    if task.get("state") in ("TASK_RUNNING", "TASK_STARTING", "TASK_STAGING"):
                        where.setdefault(task["id"], []).append(state.get("hostname", str(index)))
    return where


def check_no_task_twice(deployment: Deployment) -> list[str]:
    """No task id live on two agents at once."""
    return [f"task {task} live on {agents}" for task, agents in running_tasks_by_agent(deployment).items()
            if len(agents) > 1]


def check_apps_converged(deployment: Deployment, apps: dict[str, int]) -> list[str]:
    """Every app has exactly its instance count running, once each (no extra, none missing)."""
    problems = []
    running = running_tasks_by_agent(deployment)
    for app_id, instances in apps.items():
        status, payload = deployment.api("GET", f"/v2/apps/{app_id.strip('/')}/tasks")
        if status != 200:
            problems.append(f"app {app_id}: GET tasks answered {status}")
            continue
        tasks = [t for t in payload.get("tasks", []) if t.get("state") == "TASK_RUNNING"]
        live = [t for t in tasks if t["id"] in running]
        if len(live) != instances:
            problems.append(f"app {app_id}: {len(live)} of {instances} instances running "
                            f"({len(tasks)} reported)")
    return problems


def check_runs(deployment: Deployment, runs: Iterable[tuple[str, str]], markers: Path) -> tuple[list[str], dict]:
    """Each run finished; a successful run's side effect happened exactly once per instance."""
    problems: list[str] = []
    counts: Counter = Counter()
    for job_id, run_id in runs:
        status, run = deployment.api("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
        if status != 200:
            problems.append(f"run {job_id}/{run_id}: GET answered {status}")
            continue
        counts[run["status"]] += 1
        if run["status"] not in ("SUCCESS", "FAILED"):
            problems.append(f"run {job_id}/{run_id} is {run['status']}")
            continue
        lines = (markers / run_id).read_text().split() if (markers / run_id).exists() else []
        if run["status"] == "SUCCESS" and len(lines) != run.get("instances", 1):
            problems.append(f"run {job_id}/{run_id} SUCCESS but its work was done {len(lines)} times "
                            f"(by attempts {', '.join(lines) or 'none'}; {_attempts(run)})")
    return problems, dict(counts)


def _attempts(run: dict) -> str:
    """How the run recorded each attempt: what a duplicate's cause is read from."""
    return "; ".join(f"attempt {t.get('attempt')} {t.get('status')}"
                     + (f" ({t['message']})" if t.get("message") else "") for t in run.get("tasks") or [])


def live_executor_dirs(deployment: Deployment) -> list[str]:
    """Sandboxes of the executors the live agents say are live."""
    live_dirs = []
    for index, process in enumerate(deployment.cluster.agents):
        if process is None or not process.alive():
            continue
        try:
            state = deployment.agent_state(index)
        except OSError:
            continue
        for framework in state.get("frameworks", []):
            live_dirs += [e["directory"] for e in framework.get("executors", [])]
    return live_dirs


def _under(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def check_no_orphans(deployment: Deployment) -> list[str]:
    """Every executor/task process of ours belongs to an executor some agent knows as live."""
    live_dirs = live_executor_dirs(deployment)
    problems = []
    for pid, env in our_processes(deployment.workdir):
        where = env.get("MESOS_DIRECTORY", "")
        if where and not _under(where, live_dirs):
            problems.append(f"pid {pid} ({env.get('MESOS_EXECUTOR_ID')}) runs for no live executor")
    return problems


def check_no_orphan_containers(deployment: Deployment) -> list[str]:
    """Every task container (its record, and so its cgroup, overlay and runtime state) belongs
    to a live executor, and no task cgroup of an agent is without a container record."""
    from executor.containers.records import work_tag
    from tests.support import leaks

    live_dirs = live_executor_dirs(deployment)
    cgroups = leaks._cgroup_children()  # listed before the records: a new container records itself first
    problems = []
    for index in range(len(deployment.cluster.agents)):
        work = deployment.cluster.workdir / f"agent{index}"
        containers = work / "containers"
        names = set()
        for directory in sorted(containers.iterdir()) if containers.is_dir() else []:
            names.add(directory.name)
            try:
                record = json.loads((directory / "state.json").read_text())
            except (OSError, ValueError):
                continue  # being written or removed
            if not _under(record.get("sandbox", ""), live_dirs):
                problems.append(f"container {directory.name} on agent{index} outlives its executor")
        prefix = f"dy-{work_tag(work)}-"
        problems += [f"cgroup {c} has no container" for c in cgroups
                     if c.name.startswith(prefix) and c.name not in names]
    return problems


def leftovers(workdir: Path) -> list[str]:
    """After everything stopped: processes, and cgroups, mounts or containers (tests/support/leaks.py)."""
    from tests.support import leaks

    found = [f"process {pid}" for pid, _ in our_processes(workdir)]
    return found + leaks.leftovers(leaks.work_dirs_under(workdir))


# -- the fault loop ---------------------------------------------------------------------------------

FAULTS = ("scheduler", "master", "agent", "executor", "zookeeper")
# "partition" (needs `Deployment(netns=True)`, root): an agent's network link goes down, so the
# master loses it past its ping timeout while it and its executors keep running; then the link
# comes back and the agent re-registers with its tasks (NetnsNetwork below).


@dataclass
class Faults:
    """Inflicts faults one at a time and says what it did."""

    deployment: Deployment
    rng: random.Random = field(default_factory=lambda: random.Random(6))
    injected: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)

    def inject(self, kind: str) -> str:
        what = self._inject(kind)
        restarted = self.deployment.supervise()
        return what + (f"; supervisor restarted {', '.join(restarted)}" if restarted else "")

    def _inject(self, kind: str) -> str:
        d = self.deployment
        if kind == "scheduler":
            leader = d.wait_leader()
            d.kill_scheduler(leader.index)
            d.wait_leader(other_than=leader.index)
            d.start_scheduler(leader.index)  # back as a follower, as a supervisor would
            what = f"kill -9 leading scheduler {leader.index}"
        elif kind == "master":
            if d.masters < 2:
                return self._skip(kind, "one master")
            index = d.wait_leading_master()
            d.kill_master(index)
            d.wait_leading_master(other_than=index, timeout=60)
            d.cluster.start_master(index)
            what = f"kill -9 leading master {index}"
        elif kind == "agent":
            index = self.rng.randrange(len(d.cluster.agents))
            d.kill_agent(index)
            d.start_agent(index)
            what = f"kill -9 agent {index}, restarted"
        elif kind == "executor":
            killed = d.kill_executor(self.rng)
            if killed is None:
                return self._skip(kind, "no executor running")
            what = f"kill -9 executor {killed}"
        elif kind == "partition":
            if not d.nodes:
                return self._skip(kind, "agents are not in network namespaces (Deployment(netns=True))")
            index = self.rng.randrange(len(d.cluster.agents))
            hostname = f"agent{index}"
            d.nodes[index].cut()
            try:
                wait_for(lambda: hostname not in d.active_agents(),
                         timeout=d.agent_ping_timeout + 30, what=f"{hostname} removed by the master")
            finally:
                d.nodes[index].heal()
            wait_for(lambda: hostname in d.active_agents(),
                     timeout=60, what=f"{hostname} back")
            what = f"cut agent {index}'s network past its ping timeout, then heal"
        elif kind == "zookeeper":
            d.zk.restart()
            what = "restart ZooKeeper"
        else:
            raise ValueError(kind)
        self.injected[kind] += 1
        self.log.append(what)
        return what

    def _skip(self, kind: str, why: str) -> str:
        self.log.append(f"skipped {kind}: {why}")
        self.skipped[kind] += 1
        return f"skipped {kind} ({why})"

    def summary(self) -> str:
        total = sum(self.injected.values())
        text = f"{total} faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.injected.items()))
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.skipped.items()))
        return text


def converge(check: Callable[[], list[str]], timeout: float, what: str) -> list[str]:
    """Poll an invariant until it holds; return its last problems (empty when it held)."""
    deadline = time.monotonic() + timeout
    problems = check()
    while problems and time.monotonic() < deadline:
        time.sleep(0.5)
        problems = check()
    return [f"{what}: {p}" for p in problems]


# -- a workload to keep busy while faults land ------------------------------------------------------

@dataclass
class Workload:
    """Apps that must keep their instance counts, and job runs that must finish exactly once."""

    deployment: Deployment
    markers: Path
    apps: dict[str, int] = field(default_factory=dict)
    runs: list[tuple[str, str]] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # writes answered 5xx while a fault healed

    def write(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """A write a careful client makes: retried while the API answers 5xx (e.g. the store
        reconnecting after a ZooKeeper restart), counted so the report shows it."""
        deadline = time.monotonic() + timeout
        while True:
            status, payload = self.deployment.api(method, path, body)
            if status < 500:
                assert status in (200, 201), f"{method} {path}: {status} {payload}"
                return payload
            self.refused[status] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} still answers {status}: {payload}")
            time.sleep(0.5)

    def add_app(self, app_id: str, instances: int) -> None:
        body = {"id": app_id, "cmd": "sleep 3600", "cpus": 0.1, "mem": 32, "instances": instances}
        self.write("POST", "/v2/apps", body)
        self.apps[app_id] = instances

    def add_job(self, job_id: str, seconds: float = 2.0) -> None:
        self.markers.mkdir(parents=True, exist_ok=True)
        self.markers.chmod(0o777)  # the tasks run as nobody
        cmd = f"sleep {seconds}; echo $DOCKYARD_ATTEMPT >> {self.markers}/$DOCKYARD_RUN_ID"
        body = {"id": job_id, "run": {"cmd": cmd, "cpus": 0.1, "mem": 32,
                                      "restart": {"policy": "ON_FAILURE", "backoffSeconds": 0.2}}}
        self.write("POST", "/v1/jobs", body)

    def start_run(self, job_id: str) -> str:
        run = self.write("POST", f"/v1/jobs/{job_id}/runs")
        self.runs.append((job_id, run["id"]))
        return run["id"]

    def invariants(self, timeout: float = 60.0) -> list[str]:
        """What must hold after every fault (given time to converge)."""
        d = self.deployment

        def supervised(check: Callable[[], list[str]]) -> Callable[[], list[str]]:
            def run() -> list[str]:  # the supervisor keeps working while we wait
                d.supervise()
                return check()
            return run
        problems = converge(supervised(lambda: check_no_task_twice(d)), timeout, "duplicate")
        problems += converge(supervised(lambda: check_apps_converged(d, self.apps)), timeout, "apps")
        problems += converge(supervised(lambda: check_no_orphans(d)), timeout, "orphans")
        problems += converge(supervised(lambda: check_no_orphan_containers(d)), timeout, "orphaned containers")
        return problems

    def finished_runs(self, timeout: float = 120.0) -> tuple[list[str], dict]:
        """Every run started has finished; successes did their work exactly once."""
        d = self.deployment
        deadline = time.monotonic() + timeout
        while True:
            problems, counts = check_runs(d, self.runs, self.markers)
            waiting = [p for p in problems if "work was done" not in p]  # those may still finish
            if not waiting or time.monotonic() > deadline:
                return problems, counts
            time.sleep(0.5)


def run_fault_loop(deployment: Deployment, workload: Workload, kinds: Iterable[str], *,
                   rounds: int = 1, seed: int = 6, at_least_once: bool = False,
                   report: Callable[[str], None] = print) -> dict:
    """Inject `kinds` (shuffled per round), check invariants after each; returns a summary.

    `at_least_once`: for a framework that is not PARTITION_AWARE (Mesos reports TASK_LOST
    for tasks that in fact run on), list work done twice under "duplicated_work" instead
    of failing; dockyard is partition-aware, so its tests leave this off.
    """
    faults = Faults(deployment, random.Random(seed))
    problems: list[str] = []
    jobs = sorted({job for job, _ in workload.runs}) or []
    for round_index in range(rounds):
        order = list(kinds)
        faults.rng.shuffle(order)
        for kind in order:
            for job in jobs:  # keep runs in flight while things die
                workload.start_run(job)
            started = time.monotonic()
            what = faults.inject(kind)
            injected = time.monotonic()
            found = workload.invariants()
            report(f"round {round_index + 1}: {what} ({injected - started:.1f}s, converged in "
                   f"{time.monotonic() - injected:.1f}s): {'ok' if not found else found}")
            problems += [f"after {what}: {p}" for p in found]
    started = time.monotonic()
    run_problems, counts = workload.finished_runs()
    report(f"runs checked in {time.monotonic() - started:.1f}s")
    duplicated = [p for p in run_problems if "work was done" in p] if at_least_once else []
    problems += [p for p in run_problems if p not in duplicated]
    summary = {"faults": dict(faults.injected), "total_faults": sum(faults.injected.values()),
               "skipped": dict(faults.skipped),
               "log": faults.log, "runs": counts, "apps": dict(workload.apps), "lost": problems,
               "writes_refused": dict(workload.refused), "duplicated_work": duplicated,
               "restarted_by_supervisor": dict(deployment.restarted)}
    report(f"{faults.summary()}; runs {counts}; writes refused meanwhile {dict(workload.refused)}; "
           f"restarted by the supervisor {dict(deployment.restarted)}; "
           f"duplicated work (at-least-once): {len(duplicated)}; lost/violated: {problems or 'nothing'}")
    return summary


# -- partition by network namespace --------------------------------------------------------------


class NetnsNetwork:
    """A private bridge with the host on `.1` and nodes, each in its own network namespace.

    The one place tests cut a network: a node's `cut()` downs its link, so
    the processes inside keep running and only lose everything outside. Needs root.
    Addresses live only on this bridge; `remove()` deletes the namespaces, veths and
    the bridge, and is idempotent.
    """

    def __init__(self) -> None:
        from framework.local.lab import network

        self._net = network
        self.tag = uuid.uuid4().hex[:6]
        self.bridge = f"dyp{self.tag}br"
        taken = subprocess_output(["ip", "-4", "-o", "addr"])
        free = [n for n in range(200, 250) if f"10.213.{n}." not in taken]
        subnet = f"10.213.{random.choice(free or [200])}.0/24"
        self._subnet = subnet
        self._prefix = subnet.split("/")[1]
        self.host_ip = network.bare(network.host_address(subnet, 1))
        self.nodes: list[NetnsNode] = []

    def create(self) -> "NetnsNetwork":
        try:
            self._net.add_bridge(self.bridge, f"{self.host_ip}/{self._prefix}")
        except BaseException:
            self.remove()
            raise
        return self

    def add_node(self) -> "NetnsNode":
        index = len(self.nodes)
        node_ip = self._net.bare(self._net.host_address(self._subnet, 10 + index))
        node = NetnsNode(self._net, f"dyp{self.tag}n{index}", f"dyp{self.tag}h{index}", self.host_ip, node_ip)
        self.nodes.append(node)
        try:
            self._net.add_netns(node.netns)
            self._net.plug(self._net.NodeLink(node.netns, node.host_if, f"{node_ip}/{self._prefix}"), self.bridge)
        except BaseException:
            self.remove()
            raise
        return node

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()
        self._net.delete_link(self.bridge)


@dataclass
class NetnsNode:
    """One node of a `NetnsNetwork`: run a command inside with `argv`, `cut()` / `heal()` its link."""

    _net: Any
    netns: str
    host_if: str
    host_ip: str  # the host's address on the bridge (where masters and ZooKeeper listen)
    node_ip: str

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace. `nsenter` switches the network namespace only and
        execs the command (the pid is the command's); `ip netns exec` would also remount /sys,
        hiding the cgroup hierarchies, so tasks would run without their cgroups."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]

    def cut(self) -> None:
        self._net.set_link(self.host_if, up=False)

    def heal(self) -> None:
        if self._net.link_exists(self.host_if):
            self._net.set_link(self.host_if, up=True)

    def remove(self) -> None:
        self._net.delete_netns(self.netns)
        self._net.delete_link(self.host_if)


def subprocess_output(argv: list[str]) -> str:
    import subprocess

    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
