"""pymesos's executor on an agent with executor authentication.

pymesos 0.3.15 sends no token; the conformance app adds one from
`MESOS_EXECUTOR_AUTHENTICATION_TOKEN` (tests/conformance/pymesos_apps/executor.py),
as a pymesos user on a Mesos cluster with executor authentication must. The
plain pymesos driver is refused (401) and its task never runs: the agent takes
the executor API's authentication seriously for every client, not just ours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.conformance.test_pymesos import APPS, events, pymesos_python, scheduler_argv
from tests.support.cluster import Cluster
from tests.support.procs import Process, wait_for


@pytest.fixture(scope="module")
def python310() -> Path:
    return pymesos_python()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Secured as every test cluster (executor authentication on)."""
    with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                 agent_args=["--executor-registration-timeout", "10"]).start() as c:
        yield c


def run_scheduler(cluster: Cluster, python310: Path, executor: str, log: Path, timeout: float) -> list[dict]:
    scheduler = Process(scheduler_argv(python310, cluster, cluster.master_address, executor), log,
                        env={"PYTHONPATH": ""})
    try:
        wait_for(lambda: any(e["event"] == "stopped" for e in events(scheduler))
                 or any(e["event"] == "update" and e["state"] in ("TASK_FAILED", "TASK_LOST")
                        for e in events(scheduler)), timeout, interval=0.1, what="the pymesos scheduler")
        return events(scheduler)
    finally:
        scheduler.stop()


def test_pymesos_executor_with_the_bearer_header_runs_its_task(cluster: Cluster, python310: Path,
                                                               tmp_path: Path) -> None:
    seen = run_scheduler(cluster, python310, f"{python310} {APPS / 'executor.py'}", tmp_path / "ok.log", 45)
    states = [e["state"] for e in seen if e["event"] == "update"]
    assert "TASK_RUNNING" in states and states[-1] == "TASK_FINISHED", seen
    assert any(e["event"] == "message" and e["data"] == "got: hello executor" for e in seen), seen


def test_plain_pymesos_executor_is_refused(cluster: Cluster, python310: Path, tmp_path: Path) -> None:
    """The same executor without the override: pymesos's own driver, as shipped."""
    plain = tmp_path / "plain_executor.py"
    plain.write_text((APPS / "executor.py").read_text().replace(
        "AuthenticatingDriver(QuickExecutor()", "MesosExecutorDriver(QuickExecutor()"))
    seen = run_scheduler(cluster, python310, f"{python310} {plain}", tmp_path / "plain.log", 45)
    states = [e["state"] for e in seen if e["event"] == "update"]
    assert "TASK_RUNNING" not in states and "TASK_FINISHED" not in states, seen
    assert states and states[-1] in ("TASK_FAILED", "TASK_LOST"), seen
