"""From an AppDefinition to the core's TaskRequest (and the Mesos JSON inside it).

Pure translation: task ids (`group_app.instance-<uuid>`, as Marathon names them),
the command, the environment (`MARATHON_APP_*`; `$PORT0..`, `$PORTS`, `$HOST` and
named ports are filled by the core once ports are chosen), the Mesos
ContainerInfo for an image, and the Mesos HealthCheck the executor runs.
"""
from __future__ import annotations

import uuid
from typing import Any

from scheduler.mesos_json import launch as mesos
from scheduler.mesos_json.launch import PORT_NAMES_LABEL
from scheduler.requests import TaskRequest
from scheduler.secrets.refs import app_uses
from scheduler.services.specs import AppDefinition, HealthCheck


def owner_of(app_id: str) -> str:
    return f"app:{app_id}"


def new_task_id(app_id: str) -> str:
    return f"{app_id.strip('/').replace('/', '_')}.instance-{uuid.uuid4()}"


def command_info(app: AppDefinition) -> dict[str, Any]:
    """`cmd`, else `args`, else the image's entrypoint; with Marathon's `fetch` as URIs (the
    executor's fetcher puts them in the sandbox first)."""
    return mesos.command_info(
        shell=app.cmd, args=app.args or (), user=app.user,
        uris=[mesos.uri_info(item["uri"], extract=item.get("extract", True),
                             executable=item.get("executable", False), cache=item.get("cache", False),
                             output_file=item.get("destPath"))
              for item in app.fetch if item.get("uri")])


def container_info(app: AppDefinition) -> dict[str, Any] | None:
    """MESOS (or DOCKER, run the same way) with an image -> Mesos ContainerInfo."""
    container = app.container
    if container is None:
        return None
    volumes = [mesos.volume_info(v.containerPath, v.hostPath, v.mode)
               for v in container.volumes if v.secret is None]  # secret volumes: the core's
    docker = container.docker
    return mesos.container_info(image=docker.image if docker is not None else None,
                                force_pull=docker is not None and docker.forcePullImage, volumes=volumes)


def health_check_info(app: AppDefinition) -> dict[str, Any] | None:
    """The first health check as Mesos HealthCheck JSON, run next to the task.

    Marathon's leader-run HTTP/TCP checks run on the agent here too (as MESOS_*):
    dockyard has no separate checker. `port_index` (a dockyard extension) names the
    task's host port when the check gives none; the executor resolves it.
    """
    if not app.healthChecks:
        return None
    check: HealthCheck = app.healthChecks[0]
    info: dict[str, Any] = {
        "delay_seconds": 0.0,
        "interval_seconds": float(check.intervalSeconds),
        "timeout_seconds": float(check.timeoutSeconds),
        "consecutive_failures": check.maxConsecutiveFailures,
        "grace_period_seconds": float(check.gracePeriodSeconds),
    }
    if check.protocol == "COMMAND":
        info["type"] = "COMMAND"
        info["command"] = mesos.command_info(shell=check.command.value if check.command else "true")
        return info
    target: dict[str, Any] = {"port": check.port or 0}
    if check.port is None:
        target["port_index"] = check.portIndex or 0
    if check.protocol in ("TCP", "MESOS_TCP"):
        info["type"] = "TCP"
        info["tcp"] = target
    else:
        info["type"] = "HTTP"
        target["path"] = check.path or "/"
        target["scheme"] = "https" if check.protocol.endswith("HTTPS") else "http"
        info["http"] = target
    return info


def task_request(app: AppDefinition) -> TaskRequest:
    ports = app.port_definitions()
    required = [p.port for p in ports if p.port] if app.requirePorts else []
    labels = dict(app.labels)
    names = [p.name or "" for p in ports]
    if any(names):
        labels[PORT_NAMES_LABEL] = ",".join(names)
    env = {name: value for name, value in app.env.items() if isinstance(value, str)}
    env.update({"MARATHON_APP_ID": app.id, "MARATHON_APP_VERSION": app.version or "",
                "MARATHON_APP_RESOURCE_CPUS": f"{app.cpus:g}", "MARATHON_APP_RESOURCE_MEM": f"{app.mem:g}"})
    role = app.role or ((app.acceptedResourceRoles or ["*"])[0])
    return TaskRequest(
        task_id=new_task_id(app.id), owner=owner_of(app.id), name=app.id.strip("/").replace("/", "."),
        cpus=app.cpus, mem=app.mem, disk=app.disk, gpus=float(app.gpus), ports=len(ports),
        required_ports=required, role=role, constraints=app.constraint_list(),
        command=command_info(app), container=container_info(app), health_check=health_check_info(app),
        check=app.check.check_info() if app.check is not None else None,
        kill_grace_seconds=app.taskKillGracePeriodSeconds if app.taskKillGracePeriodSeconds is not None else 3.0,
        labels=labels, env=env, secrets=app_uses(app))
