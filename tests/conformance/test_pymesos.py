"""pymesos 0.3.15, an independent Mesos client, end to end on the embedded cluster.

pymesos cannot be installed on Python 3.11+ (its http-parser dependency does not
build), so it runs in a cached Python 3.10 virtualenv (`.venv-pymesos/`) as
separate processes: a pymesos scheduler launching a task on a pymesos executor.
The cluster is secured as every test cluster is: the scheduler authenticates with
pymesos's own `principal`/`secret`, the executor sends the agent's token
(pymesos_apps/executor.py). pymesos speaks no TLS, so the cluster (on loopback) has none.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.procs import REPO, Process, wait_for

PYTHON310 = Path("/root/.pyenv/versions/3.10.13/bin/python3.10")
VENV = REPO / ".venv-pymesos"
APPS = Path(__file__).parent / "pymesos_apps"


def pymesos_python() -> Path:
    """The 3.10 venv's python with pymesos==0.3.15, created on first use."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import pymesos, sys; sys.exit(pymesos.__VERSION__ != '0.3.15')"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if not PYTHON310.exists():
        pytest.skip(f"pymesos needs Python <= 3.10 and {PYTHON310} is absent")
    for attempt in (1, 2):  # http-parser compiles from source: a busy machine has failed it once
        subprocess.run([str(PYTHON310), "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-cache-dir", "pymesos==0.3.15"],
                                 capture_output=True, text=True, timeout=600)
        if install.returncode == 0:
            subprocess.run(check, check=True)
            return python
    raise AssertionError(f"pip could not install pymesos==0.3.15 twice; the last time it said:\n"
                         f"{(install.stdout + install.stderr)[-4000:]}")


@pytest.fixture(scope="module")
def python310() -> Path:
    return pymesos_python()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, zk) -> Iterator[Cluster]:  # noqa: ANN001
    """One master registered in ZooKeeper (so pymesos can find it by zk://) and one agent."""
    zk_url = zk.url(f"/pymesos-{uuid.uuid4().hex[:8]}")
    with Cluster(tmp_path_factory.mktemp("pymesos-cluster"), agents=1, zk_url=zk_url).start() as running:
        yield running


def scheduler_argv(python310: Path, cluster: Cluster, master: str, executor_command: str) -> list[str]:
    """The pymesos scheduler app's command line, with the operator's credentials when secured."""
    argv = [str(python310), str(APPS / "scheduler.py"), master, executor_command]
    if cluster.operator is not None:
        assert cluster.bundle is not None
        argv += [cluster.operator.principal, str(cluster.bundle.operator_secret_file)]
    return argv


def events(process: Process) -> list[dict]:
    found = []
    for line in process.output().splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


@pytest.mark.parametrize("how", ["address", "zk"])
def test_pymesos_scheduler_and_executor_end_to_end(cluster: Cluster, python310: Path,
                                                   tmp_path: Path, how: str) -> None:
    """`address`: host:port (pymesos GETs /version first); `zk`: pymesos's own ZooKeeper
    detector reads the master's json.info_ registration."""
    executor_command = f"{python310} {APPS / 'executor.py'}"
    master = cluster.master_address if how == "address" else cluster.zk_url
    assert master is not None
    scheduler = Process(scheduler_argv(python310, cluster, master, executor_command),
                        tmp_path / "pymesos-scheduler.log", env={"PYTHONPATH": ""})
    try:
        def finished() -> bool:
            if not scheduler.alive() and not any(e["event"] == "stopped" for e in events(scheduler)):
                raise AssertionError(f"pymesos scheduler died:\n{scheduler.output()[-3000:]}")
            return any(e["event"] == "stopped" for e in events(scheduler))

        try:
            wait_for(finished, timeout=45, interval=0.1, what="pymesos scheduler to finish")
        except TimeoutError as error:
            raise AssertionError(f"{error}\n--- pymesos ---\n{scheduler.output()[-4000:]}\n"
                                 f"{cluster.logs()}") from None
        wait_for(lambda: not scheduler.alive(), timeout=15, what="pymesos scheduler exit")
    finally:
        scheduler.stop()

    seen = events(scheduler)
    kinds = [e["event"] for e in seen]
    assert "error" not in kinds, seen
    registered = next(e for e in seen if e["event"] == "registered")
    assert registered["framework_id"] and registered["port"] == cluster.master_ports[0]
    assert "offers" in kinds and "launched" in kinds
    updates = [e for e in seen if e["event"] == "update"]
    states = [u["state"] for u in updates]
    assert "TASK_RUNNING" in states and states[-1] == "TASK_FINISHED", seen
    running = next(u for u in updates if u["state"] == "TASK_RUNNING")
    assert running["source"] == "SOURCE_EXECUTOR" and running["has_uuid"]
    assert running["data"] == "running"
    assert updates[-1]["message"] == "done by pymesos"
    message = next(e for e in seen if e["event"] == "message")
    assert message == {"event": "message", "executor_id": "pymesos-executor", "data": "got: hello executor"}

    # stop() without failover sent TEARDOWN: the framework is completed, and the agent
    # survived the pymesos executor's shutdown (which may SIGKILL its process group).
    state = cluster.state()
    assert registered["framework_id"] in {f["id"] for f in state.get("completed_frameworks", [])}
    assert registered["framework_id"] not in {f["id"] for f in state.get("frameworks", [])}
    assert all(agent is not None and agent.alive() for agent in cluster.agents)
