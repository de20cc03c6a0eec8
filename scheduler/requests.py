"""What a workload (a job run or a service instance) asks the core to launch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler.placement.constraints import Constraint
    from scheduler.secrets.refs import SecretUse


@dataclass(slots=True)  # many thousands may wait in the queue: no per-instance dict
class TaskRequest:
    task_id: str
    owner: str  # "app:/web" or "job:backup/<run-id>": whom the core tells about this task
    name: str
    cpus: float
    mem: float
    disk: float = 0.0
    gpus: float = 0.0
    ports: int = 0  # how many host ports, chosen from the offer
    required_ports: list[int] = field(default_factory=list)  # Marathon's requirePorts
    role: str = "*"
    constraints: list["Constraint"] = field(default_factory=list)
    command: dict = field(default_factory=dict)  # Mesos CommandInfo JSON
    container: dict | None = None  # Mesos ContainerInfo JSON
    health_check: dict | None = None  # Mesos HealthCheck JSON, run by the executor
    check: dict | None = None  # Mesos CheckInfo JSON (`port_index` until launch), run by the executor
    kill_grace_seconds: float = 3.0
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # References only: the core resolves them into the launch, and nowhere else (docs/secrets.md).
    secrets: list["SecretUse"] = field(default_factory=list)
