"""The embedded cluster (`dockyard master` + `dockyard agent`s) as real processes on loopback.

    with Cluster(tmp_path, agents=1).start() as cluster:
        cluster.master_address        # "127.0.0.1:<port>", for a scheduler driver
        cluster.kill_agent(0); cluster.start_agent(0)   # same id, port and work dir

Several masters can share a ZooKeeper (`zk_url=`); `masters=2` starts two and
`leader()` says which one leads. `ip=` puts the masters on another host address
and `agent_net=` runs agents elsewhere (e.g. each in its own network namespace,
tests/faults/harness.py `NetnsNetwork`): `agent_net(index) -> (ip, argv prefix)`.
"""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, Callable, Sequence

from . import leaks
from .procs import Process, dockyard, free_port, http_ok, wait_for

DEFAULT_RESOURCES = "cpus:4;mem:4096;disk:10000"
PORTS_PER_AGENT = 300  # slices stay below the ephemeral range (32768+) for up to 5 agents


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class Cluster:
    """A master (or several, with ZooKeeper) and N agents, each its own process."""

    def __init__(self, workdir: Path, agents: int = 1, *, masters: int = 1, zk_url: str | None = None,
                 resources: str = DEFAULT_RESOURCES, allocation_interval: float = 0.2,
                 master_args: Sequence[str] = (), agent_args: Sequence[str] = (), ip: str = "127.0.0.1",
                 agent_net: Callable[[int], tuple[str, list[str]]] | None = None) -> None:
        if masters > 1 and not zk_url:
            raise ValueError("several masters need a ZooKeeper URL")
        self.workdir = Path(workdir)
        self.zk_url = zk_url
        self.resources = resources
        self.allocation_interval = allocation_interval
        self.master_args = list(master_args)
        self.agent_args = list(agent_args)
        self.ip = ip
        self.agent_net = agent_net or (lambda index: (ip, []))
        self.master_ports = [free_port() for _ in range(masters)]
        self.agent_ports = [free_port() for _ in range(agents)]
        self.masters: list[Process | None] = [None] * masters
        self.agents: list[Process | None] = [None] * agents

    # -- addresses --------------------------------------------------------------

    @property
    def master_address(self) -> str:
        """The first master's "host:port" (the leader when there is only one)."""
        return f"{self.ip}:{self.master_ports[0]}"

    @property
    def master_url(self) -> str:
        return f"http://{self.master_address}"

    @property
    def master_uri(self) -> str:
        """What a framework is given: zk:// with ZooKeeper, else the master address."""
        return self.zk_url or self.master_address

    def agent_address(self, index: int) -> str:
        return f"{self.agent_net(index)[0]}:{self.agent_ports[index]}"

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> "Cluster":
        try:
            for index in range(len(self.masters)):
                self.start_master(index)
            if len(self.masters) > 1:
                wait_for(self.leader, timeout=30, what="a leading master")
            for index in range(len(self.agents)):
                self.start_agent(index, wait=False)
            wait_for(lambda: len(self.active_agents()) == len(self.agents), timeout=30,
                     what=f"{len(self.agents)} agents registered")
        except BaseException:
            self.stop()
            raise
        return self

    def start_master(self, index: int = 0) -> Process:
        port = self.master_ports[index]
        (self.workdir / f"master{index}").mkdir(parents=True, exist_ok=True)
        argv = ["master", "--ip", self.ip, "--port", str(port),
                "--work-dir", str(self.workdir / f"master{index}"),
                "--allocation-interval", str(self.allocation_interval), *self.master_args]
        if self.zk_url:
            argv += ["--zk", self.zk_url]
        process = Process(dockyard(*argv), self.workdir / f"master{index}.log")
        self.masters[index] = process
        self._wait_healthy(process, f"http://{self.ip}:{port}/health", f"master {index}")
        return process

    def agent_resources(self, index: int) -> str:
        """Agents share this machine's ports: each gets its own slice unless the test set ports."""
        if "ports" in self.resources:
            return self.resources
        begin = 31000 + index * PORTS_PER_AGENT
        return f"{self.resources};ports:[{begin}-{begin + PORTS_PER_AGENT - 1}]"

    def start_agent(self, index: int = 0, wait: bool = True) -> Process:
        port = self.agent_ports[index]
        (self.workdir / f"agent{index}").mkdir(parents=True, exist_ok=True)
        ip, prefix = self.agent_net(index)
        argv = ["agent", "--master", self.master_uri if self.zk_url else self.master_address,
                "--ip", ip, "--port", str(port),
                "--work-dir", str(self.workdir / f"agent{index}"),
                "--resources", self.agent_resources(index), "--hostname", f"agent{index}", *self.agent_args]
        process = Process([*prefix, *dockyard(*argv)], self.workdir / f"agent{index}.log")
        self.agents[index] = process
        self._wait_healthy(process, f"http://{ip}:{port}/health", f"agent {index}")
        if wait:
            wait_for(lambda: f"agent{index}" in {a["hostname"] for a in self.active_agents()},
                     timeout=30, what=f"agent {index} registered")
        return process

    def _wait_healthy(self, process: Process, url: str, name: str) -> None:
        try:
            state = wait_for(lambda: "exited" if not process.alive() else http_ok(url),
                             timeout=30, what=f"{name} healthy at {url}")
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n--- {name} log ---\n{process.output()[-3000:]}") from None
        if state == "exited":
            raise RuntimeError(f"{name} exited ({process.popen.returncode}):\n{process.output()[-3000:]}")

    def kill_agent(self, index: int = 0) -> None:
        """`kill -9` an agent process alone: its executors live on, as on a real host."""
        agent = self.agents[index]
        if agent is not None:
            agent.kill9()
            agent.stop()

    def stop_master(self, index: int = 0) -> None:
        """SIGTERM a master: it leaves ZooKeeper at once (a kill -9 waits for the session timeout)."""
        master = self.masters[index]
        if master is not None:
            master.stop()
            self.masters[index] = None

    def kill_master(self, index: int = 0) -> None:
        master = self.masters[index]
        if master is not None:
            master.kill9()
            master.stop()
            self.masters[index] = None

    def stop(self) -> None:
        """Stop everything, then check that the agents left no cgroup, mount or container behind.

        An agent a test killed and never restarted stands for a dead host: its
        start-up clean-up (`dockyard executor --cleanup`) is run for it here, as its
        next start would. What is left after that is noted for tests/conftest.py,
        which fails the test, and removed so that later tests start clean.
        """
        dead = [i for i, p in enumerate(self.agents) if p is not None and not p.alive()]
        for process in [*self.agents, *self.masters]:
            if process is not None:
                process.stop()
        dirs = [self.workdir / f"agent{i}" for i, p in enumerate(self.agents) if p is not None]
        leaks.clean([self.workdir / f"agent{i}" for i in dead])
        found = leaks.leftovers(dirs)
        if found:
            leaks.record(f"cluster {self.workdir}", found)
            leaks.clean(dirs)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ----------------------------------------------------------------------

    def state(self, index: int = 0) -> dict:
        return get_json(f"http://{self.ip}:{self.master_ports[index]}/master/state")

    def active_agents(self) -> list[dict]:
        return [s for s in self.state().get("slaves", []) if s.get("active", True)]

    def leader(self) -> str | None:
        """"host:port" of the leading master, from any live master's /master/state."""
        for index, process in enumerate(self.masters):
            if process is None or not process.alive():
                continue
            try:
                state = self.state(index)
            except OSError:
                continue
            info = state.get("leader_info") or {}
            address = info.get("address") or {}
            if address.get("port"):
                return f"{address.get('ip') or address.get('hostname')}:{address['port']}"
            leader = state.get("leader")
            if leader and "@" in leader:
                return leader.split("@", 1)[1]
        return None

    def logs(self) -> str:
        parts = []
        for name, process in [*(("master%d" % i, p) for i, p in enumerate(self.masters)),
                              *(("agent%d" % i, p) for i, p in enumerate(self.agents))]:
            if process is not None:
                parts.append(f"--- {name} ---\n{process.output()[-4000:]}")
        return "\n".join(parts)
