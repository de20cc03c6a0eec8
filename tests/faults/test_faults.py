"""Fault injection: services and jobs keep going while every kind of process dies.

The short test (part of `make test`) lands one fault of each cheap kind, a
network cut included; the soak (`make test-slow`) loops over all of them,
masters included, many times. A network cut puts every agent in its own network
namespace (tests/faults/harness.py `NetnsNetwork`), so it needs root.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.faults.harness import FAULTS, Deployment, Workload, leftovers, run_fault_loop
from tests.support.zookeeper import ZooKeeper


def _world(zk: ZooKeeper, tmp_path: Path, task_dir: Path, masters: int, job_seconds: float = 2.0,
           **options: object) -> tuple[Deployment, Workload]:
    started = time.monotonic()
    deployment = Deployment(tmp_path / "deployment", zk, masters=masters, agents=2, schedulers=2,
                            **options).start()  # type: ignore[arg-type]
    workload = Workload(deployment, task_dir / "markers")  # where the job's tasks (nobody) may write
    workload.add_app("/faults-web", 2)
    workload.add_job("faults-batch", seconds=job_seconds)
    workload.start_run("faults-batch")
    print(f"deployment up with its workload in {time.monotonic() - started:.1f}s")
    return deployment, workload


def _assert_clean(deployment: Deployment, summary: dict) -> None:
    assert summary["lost"] == [], "\n".join(summary["lost"]) + "\n" + deployment.logs()[-6000:]
    deployment.stop()
    assert leftovers(deployment.workdir) == []


ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="a network cut needs network namespaces (root)")


def test_one_of_each_fault_loses_nothing(zk: ZooKeeper, tmp_path: Path, task_dir: Path) -> None:
    kinds = ["scheduler", "agent", "executor", "zookeeper", *(["partition"] if ROOT else [])]
    deployment, workload = _world(zk, tmp_path, task_dir, masters=1, netns=ROOT,
                                  agent_ping_interval=0.5, agent_ping_timeout=5.0)
    try:
        summary = run_fault_loop(deployment, workload, kinds)
        assert summary["total_faults"] == len(kinds), summary["log"]
        _assert_clean(deployment, summary)
    finally:
        deployment.stop()


@pytest.mark.slow
def test_soak_every_fault_in_a_loop(zk: ZooKeeper, tmp_path: Path, task_dir: Path) -> None:
    deployment, workload = _world(zk, tmp_path, task_dir, masters=2)
    workload.add_app("/faults-api", 1)
    workload.add_job("faults-quick", seconds=0.5)
    workload.start_run("faults-quick")
    try:
        summary = run_fault_loop(deployment, workload, FAULTS, rounds=4, seed=66)
        assert summary["total_faults"] >= 4 * (len(FAULTS) - 1)
        _assert_clean(deployment, summary)
    finally:
        deployment.stop()


@pytest.mark.slow
@needs_root
def test_soak_with_partitions(zk: ZooKeeper, tmp_path: Path, task_dir: Path) -> None:
    """Agents cut off the network past the master's ping timeout too. dockyard is
    PARTITION_AWARE: their tasks are reported TASK_UNREACHABLE, runs wait for them
    (DOCKYARD_JOB_UNREACHABLE_SECONDS) and services replace them per inactiveAfterSeconds,
    so every run is done exactly once."""
    deployment, workload = _world(zk, tmp_path, task_dir, masters=2, job_seconds=8.0, netns=True,
                                  agent_ping_interval=0.5, agent_ping_timeout=3.0)
    try:
        summary = run_fault_loop(deployment, workload, (*FAULTS, "partition", "partition"), rounds=2, seed=7)
        assert summary["faults"].get("partition") == 4
        _assert_clean(deployment, summary)
    finally:
        deployment.stop()
