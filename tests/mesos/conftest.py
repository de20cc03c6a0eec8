"""Fixtures for the driver tests: a real embedded cluster and a recording scheduler."""
from __future__ import annotations

import base64
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from framework.mesos.interface import Scheduler
from framework.mesos.scheduler import MesosSchedulerDriver
from tests.support.cluster import Cluster
from tests.support.procs import REPO

ECHO_EXECUTOR = Path(__file__).parent / "apps" / "echo_executor.py"


class Recorder(Scheduler):
    """Records every callback; tests wait on what they expect to see."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, tuple]] = []
        self.offers: list[Any] = []

    def _record(self, name: str, *args: Any) -> None:
        with self.cond:
            self.events.append((name, args))
            self.cond.notify_all()

    def registered(self, driver, frameworkId, masterInfo) -> None:  # noqa: ANN001
        self._record("registered", frameworkId, masterInfo)

    def reregistered(self, driver, masterInfo) -> None:  # noqa: ANN001
        self._record("reregistered", masterInfo)

    def disconnected(self, driver) -> None:  # noqa: ANN001
        self._record("disconnected")

    def processHeartBeat(self, driver) -> None:  # noqa: ANN001
        self._record("heartbeat")

    def resourceOffers(self, driver, offers) -> None:  # noqa: ANN001
        with self.cond:
            self.offers.extend(offers)
        self._record("offers", offers)

    def offerRescinded(self, driver, offerId) -> None:  # noqa: ANN001
        with self.cond:
            self.offers = [o for o in self.offers if o.id.value != offerId.value]
        self._record("rescind", offerId)

    def statusUpdate(self, driver, status) -> None:  # noqa: ANN001
        self._record("update", status)

    def frameworkMessage(self, driver, executorId, slaveId, message) -> None:  # noqa: ANN001
        self._record("message", executorId, slaveId, json.loads(base64.b64decode(message)))

    def slaveLost(self, driver, slaveId) -> None:  # noqa: ANN001
        self._record("agent_lost", slaveId)

    def executorLost(self, driver, executorId, slaveId, status) -> None:  # noqa: ANN001
        self._record("executor_lost", executorId, slaveId, status)

    def error(self, driver, message) -> None:  # noqa: ANN001
        self._record("error", message)

    # -- waiting ------------------------------------------------------------------

    def wait(self, predicate: Callable[[tuple[str, tuple]], bool], timeout: float = 20.0,
             what: str = "event", start: int = 0) -> tuple[str, tuple]:
        """The first recorded event (from index `start`) matching `predicate`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [name for name, _ in self.events]
                    raise TimeoutError(f"no {what} within {timeout}s; saw {names[-30:]}")
                self.cond.wait(remaining)

    def wait_named(self, name: str, timeout: float = 20.0, start: int = 0) -> tuple:
        return self.wait(lambda e: e[0] == name, timeout, name, start)[1]

    def count(self, name: str) -> int:
        with self.cond:
            return sum(1 for n, _ in self.events if n == name)

    def mark(self) -> int:
        with self.cond:
            return len(self.events)

    def wait_status(self, task_id: str, state: str, timeout: float = 20.0, start: int = 0) -> Any:
        def match(event: tuple[str, tuple]) -> bool:
            return (event[0] == "update" and event[1][0].task_id.value == task_id
                    and event[1][0].state == state)
        return self.wait(match, timeout, f"{state} for {task_id}", start)[1][0]

    def statuses(self, task_id: str) -> list[Any]:
        with self.cond:
            return [args[0] for name, args in self.events
                    if name == "update" and args[0].task_id.value == task_id]

    def wait_message(self, event: str, timeout: float = 20.0, start: int = 0) -> dict:
        return self.wait(lambda e: e[0] == "message" and e[1][2].get("event") == event,
                         timeout, f"message {event}", start)[1][2]

    def take_offer(self, timeout: float = 20.0) -> Any:
        """Pop one held offer, waiting for one if needed."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.offers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no offer within {timeout}s")
                self.cond.wait(remaining)
            return self.offers.pop(0)


def framework_info(name: str = "driver-test", **extra: Any) -> dict:
    return {"user": "root", "name": name, "failover_timeout": 30.0, **extra}


def scalar(name: str, value: float) -> dict:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def command_task(offer: Any, task_id: str, command: str, cpus: float = 0.1, mem: float = 32) -> dict:
    return {"name": task_id, "task_id": {"value": task_id}, "agent_id": offer.agent_id.to_dict(),
            "resources": [scalar("cpus", cpus), scalar("mem", mem)],
            "command": {"shell": True, "value": command}}


def echo_executor_info(executor_id: str, python: str = sys.executable) -> dict:
    """A custom ExecutorInfo running tests/mesos/apps/echo_executor.py."""
    return {"executor_id": {"value": executor_id}, "name": "echo executor",
            "command": {"shell": True, "value": f"exec {python} {ECHO_EXECUTOR}",
                        "environment": {"variables": [{"name": "PYTHONPATH", "value": str(REPO)}]}},
            "resources": [scalar("cpus", 0.1), scalar("mem", 64)]}


def echo_task(offer: Any, task_id: str, executor: dict, **mode: Any) -> dict:
    return {"name": task_id, "task_id": {"value": task_id}, "agent_id": offer.agent_id.to_dict(),
            "resources": [scalar("cpus", 0.1), scalar("mem", 32)], "executor": executor,
            "data": base64.b64encode(json.dumps(mode).encode()).decode()}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One master (heartbeats every 0.3 s, so liveness tests are quick) and one agent."""
    with Cluster(tmp_path_factory.mktemp("cluster"), agents=1,
                 master_args=["--heartbeat-interval", "0.3"]).start() as running:
        yield running


@pytest.fixture
def drivers() -> Iterator[Callable[..., MesosSchedulerDriver]]:
    """Factory for scheduler drivers of a cluster (authenticated as its operator, verifying its TLS;
    `master=` another URI than its first master), all stopped (with teardown) after the test."""
    made: list[MesosSchedulerDriver] = []

    def make(sched: Scheduler, cluster: Cluster, framework: dict | None = None, *, master: str | None = None,
             **kwargs: Any) -> MesosSchedulerDriver:
        driver = MesosSchedulerDriver(sched, framework or framework_info(), master or cluster.master_address,
                                      **{**cluster.master_api().driver_options(), **kwargs})
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.stop()
