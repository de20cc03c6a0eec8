"""The embedded cluster (`dockyard master` + `dockyard agent`s) as real processes, secured.

    with Cluster(tmp_path, agents=1).start() as cluster:
        cluster.master_address        # "127.0.0.1:<port>", for a scheduler driver
        cluster.operator              # the Identity tests act as (None when secure=False)
        cluster.get_json("/master/state")      # as the operator, verifying TLS when on
        cluster.master_api()          # an Endpoint (tests/support/security.py) for anything else
        cluster.kill_agent(0); cluster.start_agent(0)   # same id, port and work dir

Secured as `dockyard up` is: a bundle under `<workdir>/security` (or `bundle=`),
every master realm authenticated, agents authenticated with their own principal
(`agent-agent<i>`), executors with tokens, the generated ACLs. `tls=True` (or
`mutual_tls=True`) adds TLS with a certificate for every address in use; it is
on by itself when any process binds a non-loopback address, as the components
refuse to serve those open. `secure=False` adds no security flags of the
support's own: for tests about open behaviour (non-loopback addresses then get
`--insecure`), or tests whose subject is their own security flags (in
`master_args`/`agent_args`, with `operator=` the identity the support acts as).

Several masters can share a ZooKeeper (`zk_url=`); `masters=2` starts two and
`leader()` says which one leads. `ip=` puts the masters on another host address
and `agent_net=` runs agents elsewhere (e.g. each in its own network namespace,
tests/faults/harness.py `NetnsNetwork`): `agent_net(index) -> (ip, argv prefix)`.
"""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Callable, Sequence

from framework.security.binding import is_loopback
from framework.security.bundle import Bundle, Identity

from . import leaks
from .procs import Process, dockyard, free_port, wait_for, worker_ports
from .security import CERT_NAME, LOOPBACK_HOSTS, Endpoint, client_context

DEFAULT_RESOURCES = "cpus:4;mem:4096;disk:10000"
PORTS_PER_AGENT = 300  # slices stay below the ephemeral range (32768+) for up to 5 agents


class Cluster:
    """A master (or several, with ZooKeeper) and N agents, each its own process."""

    def __init__(self, workdir: Path, agents: int = 1, *, masters: int = 1, zk_url: str | None = None,
                 resources: str = DEFAULT_RESOURCES, allocation_interval: float = 0.2,
                 master_args: Sequence[str] = (), agent_args: Sequence[str] = (), ip: str = "127.0.0.1",
                 agent_net: Callable[[int], tuple[str, list[str]]] | None = None,
                 secure: bool = True, tls: bool = False, mutual_tls: bool = False,
                 bundle: Bundle | None = None, operator: Identity | None = None) -> None:
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
        self.hosts = sorted({*LOOPBACK_HOSTS, ip, *(self.agent_net(i)[0] for i in range(agents))})
        self.open_network = not all(is_loopback(host) for host in self.hosts)
        self.secure = secure
        self._operator = operator
        self.mutual_tls = mutual_tls
        self.tls = tls or mutual_tls or (secure and self.open_network)
        self.bundle = bundle if bundle is not None else (
            Bundle(self.workdir / "security") if secure or self.tls else None)
        if self.bundle is not None:
            self.bundle.ensure(agents=[self.agent_name(i) for i in range(agents)])
        self.cert: tuple[Path, Path] | None = None
        self.ssl_context: ssl.SSLContext | None = None
        if self.tls:
            assert self.bundle is not None
            self.cert = self.bundle.certificate(CERT_NAME, self.hosts)
            self.ssl_context = client_context(self.bundle)

    # -- who and how ----------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def operator(self) -> Identity | None:
        """Who tests act as: `operator=` when given (a test bringing its own credentials), else the
        bundle's operator (may do everything); None when open."""
        if self._operator is not None:
            return self._operator
        return self.bundle.operator if self.secure and self.bundle is not None else None

    @staticmethod
    def agent_name(index: int) -> str:
        """Agent `index`'s hostname; its principal is `agent-<name>`."""
        return f"agent{index}"

    def security_flags(self, component: str, name: str = "") -> list[str]:
        """The flags that secure a "master", an "agent" (named `name`) or a "scheduler" of this cluster."""
        flags: list[str] = []
        if self.secure:
            assert self.bundle is not None
            if component == "master":
                flags += self.bundle.master_flags()
            elif component == "agent":
                flags += self.bundle.agent_flags(name)
            else:
                flags += self.bundle.scheduler_flags()
        if self.cert is not None:
            assert self.bundle is not None
            flags += self.bundle.tls_flags(*self.cert, mutual=self.mutual_tls)
        if not self.secure and self.open_network:
            flags.append("--insecure")  # open on purpose: the components refuse it otherwise
        return flags

    # -- addresses --------------------------------------------------------------

    @property
    def master_address(self) -> str:
        """The first master's "host:port" (the leader when there is only one)."""
        return f"{self.ip}:{self.master_ports[0]}"

    @property
    def master_url(self) -> str:
        return f"{self.scheme}://{self.master_address}"

    @property
    def master_uri(self) -> str:
        """What a framework is given: zk:// with ZooKeeper, else the master address."""
        return self.zk_url or self.master_address

    def agent_address(self, index: int) -> str:
        return f"{self.agent_net(index)[0]}:{self.agent_ports[index]}"

    def master_api(self, index: int = 0) -> Endpoint:
        """Master `index` as the operator, verified with the cluster's CA when TLS is on."""
        return Endpoint(f"{self.scheme}://{self.ip}:{self.master_ports[index]}", self.operator, self.ssl_context)

    def agent_api(self, index: int = 0) -> Endpoint:
        return Endpoint(f"{self.scheme}://{self.agent_address(index)}", self.operator, self.ssl_context)

    def call(self, method: str, path: str, body: Any = None, **options: Any) -> tuple[int, dict[str, str], bytes]:
        """One request to the first master as the operator: (status, lower-case headers, body)."""
        return self.master_api().call(method, path, body, **options)

    def get_json(self, path: str) -> Any:
        """GET from the first master as the operator; anything but success raises OSError."""
        return self.master_api().get_json(path)

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
                "--allocation-interval", str(self.allocation_interval),
                *self.security_flags("master"), *self.master_args]
        if self.zk_url:
            argv += ["--zk", self.zk_url]
        process = Process(dockyard(*argv), self.workdir / f"master{index}.log")
        self.masters[index] = process
        self._wait_healthy(process, self.master_api(index), f"master {index}")
        return process

    def agent_resources(self, index: int) -> str:
        """Agents share this machine's ports: each gets its own slice unless the test set ports."""
        if "ports" in self.resources:
            return worker_ports(self.resources)
        begin = 31000 + index * PORTS_PER_AGENT
        return worker_ports(f"{self.resources};ports:[{begin}-{begin + PORTS_PER_AGENT - 1}]")

    def start_agent(self, index: int = 0, wait: bool = True) -> Process:
        port = self.agent_ports[index]
        (self.workdir / f"agent{index}").mkdir(parents=True, exist_ok=True)
        ip, prefix = self.agent_net(index)
        name = self.agent_name(index)
        argv = ["agent", "--master", self.master_uri if self.zk_url else self.master_address,
                "--ip", ip, "--port", str(port),
                "--work-dir", str(self.workdir / f"agent{index}"),
                "--resources", self.agent_resources(index), "--hostname", name,
                *self.security_flags("agent", name), *self.agent_args]
        process = Process([*prefix, *dockyard(*argv)], self.workdir / f"agent{index}.log")
        self.agents[index] = process
        self._wait_healthy(process, self.agent_api(index), f"agent {index}")
        if wait:
            wait_for(lambda: name in {a["hostname"] for a in self.active_agents()},
                     timeout=30, what=f"agent {index} registered")
        return process

    def _wait_healthy(self, process: Process, api: Endpoint, name: str) -> None:
        try:
            state = wait_for(lambda: "exited" if not process.alive() else api.ok("/health"),
                             timeout=30, what=f"{name} healthy at {api.url}/health")
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
        return self.master_api(index).get_json("/master/state")

    def active_agents(self) -> list[dict]:
        return [s for s in self.state().get("slaves", []) if s.get("active", True)]

    def executor(self, executor_id: str, framework_id: str | None = None, index: int = 0,
                 timeout: float = 20.0) -> dict:
        """An executor's agent /state entry (id, container, directory...) plus its "framework_id",
        once the agent lists it (see `find_executor`)."""
        return wait_for(lambda: find_executor(self.agent_api(index).get_json("/state"), executor_id, framework_id),
                        timeout, what=f"executor {executor_id} on agent {index}")  # type: ignore[return-value]

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


def find_executor(state: dict, executor_id: str, framework_id: str | None = None) -> dict | None:
    """An executor's entry in an agent's /state with its "framework_id": a live one first, else a
    completed one (its sandbox stays readable)."""
    frameworks = [f for f in state["frameworks"] + state["completed_frameworks"]
                  if framework_id is None or f["id"] == framework_id]
    for kind in ("executors", "completed_executors"):
        for framework in frameworks:
            for executor in framework.get(kind, []):
                if executor["id"] == executor_id:
                    return {**executor, "framework_id": framework["id"]}
    return None
