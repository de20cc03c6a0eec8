"""Small builders for placement tests."""
from __future__ import annotations

from scheduler.placement import AgentView, parse_constraints
from scheduler.requests import TaskRequest


def agent(i: int, cpus: float = 4, mem: float = 4096, disk: float = 1000, gpus: float = 0,
          ports: tuple[int, int] | None = (31000, 31009), role: str = "*", **attributes: str) -> AgentView:
    return AgentView(agent_id=f"a{i}", hostname=f"h{i}", attributes=dict(attributes), cpus=cpus,
                     mem=mem, disk=disk, gpus=gpus, port_ranges=[ports] if ports else [], role=role,
                     total_cpus=cpus, total_mem=mem, total_disk=disk, total_gpus=gpus)


def request(n: int = 0, owner: str = "app:/web", cpus: float = 1, mem: float = 128, disk: float = 0,
            gpus: float = 0, ports: int = 0, required_ports: list[int] | None = None, role: str = "*",
            constraints: list | None = None) -> TaskRequest:
    return TaskRequest(task_id=f"{owner}.{n}", owner=owner, name=owner, cpus=cpus, mem=mem, disk=disk,
                       gpus=gpus, ports=ports, required_ports=required_ports or [], role=role,
                       constraints=parse_constraints(constraints or []))


def requests(count: int, **kwargs) -> list[TaskRequest]:
    return [request(i, **kwargs) for i in range(count)]
