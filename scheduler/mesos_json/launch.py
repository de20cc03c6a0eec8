"""The Mesos JSON a launch is made of: CommandInfo, ContainerInfo, TaskInfo, ExecutorInfo.

Workloads (jobs, services) describe their command and container with `command_info` and
`container_info` when they build a TaskRequest; the core turns a placed request into a
TaskInfo with `task_info` once its agent and ports are known. One builder each, so a
job and an app that ask for the same thing send the same JSON.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from framework.mesos.messages import encode_data
from framework.mesos.secrets import value_secret
from scheduler.requests import TaskRequest

PORT_NAMES_LABEL = "dockyard.portNames"  # comma-separated port names, for $PORT_<NAME>


def uri_info(value: str, *, extract: bool = True, executable: bool = False, cache: bool = False,
             output_file: str | None = None) -> dict[str, Any]:
    """A Mesos CommandInfo.URI: a file the fetcher puts in the sandbox before the task starts."""
    uri: dict[str, Any] = {"value": value, "extract": extract, "executable": executable, "cache": cache}
    if output_file:
        uri["output_file"] = output_file
    return uri


def command_info(*, shell: str | None = None, args: Sequence[str] = (), user: str | None = None,
                 uris: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A Mesos CommandInfo: a shell command, else an argv (`args[0]` is the program), else
    neither (the image's entrypoint runs)."""
    if shell is not None:
        command: dict[str, Any] = {"shell": True, "value": shell}
    elif args:
        command = {"shell": False, "value": args[0], "arguments": list(args)}
    else:
        command = {"shell": False}
    if user:
        command["user"] = user
    if uris:
        command["uris"] = list(uris)
    return command


def volume_info(container_path: str, host_path: str | None, mode: str) -> dict[str, Any]:
    """A host-path volume of a ContainerInfo (secret volumes are the core's: `task_info`)."""
    return {"container_path": container_path, **({"host_path": host_path} if host_path else {}), "mode": mode}


def container_info(*, image: str | None = None, force_pull: bool = False,
                   volumes: Sequence[dict[str, Any]] = ()) -> dict[str, Any] | None:
    """A Mesos ContainerInfo of type MESOS (a Docker image runs the same way); None when
    there is neither an image nor a volume (a plain command on the host)."""
    if not image and not volumes:
        return None
    container: dict[str, Any] = {"type": "MESOS", "volumes": list(volumes)}
    if image:
        container["mesos"] = {"image": {"type": "DOCKER", "docker": {"name": image}, "cached": not force_pull}}
    return container


def executor_info(command: str, executor_id: str, framework_name: str, framework_id: str | None) -> dict[str, Any]:
    """The warm executor's ExecutorInfo.

    It runs as root whatever FrameworkInfo.user says: it makes containers and cgroups and
    starts each task as that task's user (an agent that is not root ignores this).
    """
    info: dict[str, Any] = {"executor_id": {"value": executor_id}, "type": "CUSTOM",
                            "name": f"{framework_name} warm executor",
                            "command": {"value": command, "shell": True, "user": "root"}}
    if framework_id:
        info["framework_id"] = {"value": framework_id}
    return info


def task_reference(task_id: str, agent_id: str | None) -> dict[str, Any]:
    """A task as RECONCILE names it: its id, and its agent's when known."""
    return {"task_id": {"value": task_id}, **({"agent_id": {"value": agent_id}} if agent_id else {})}


def _scalar(name: str, value: float, role: str) -> dict[str, Any]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": round(float(value), 3)}, "role": role}


def _resources(request: TaskRequest, ports: list[int]) -> list[dict[str, Any]]:
    resources = [_scalar("cpus", request.cpus, request.role), _scalar("mem", request.mem, request.role)]
    if request.disk:
        resources.append(_scalar("disk", request.disk, request.role))
    if request.gpus:
        resources.append(_scalar("gpus", request.gpus, request.role))
    if ports:
        resources.append({"name": "ports", "type": "RANGES", "role": request.role,
                          "ranges": {"range": [{"begin": p, "end": p} for p in ports]}})
    return resources


def _variables(request: TaskRequest, ports: list[int], hostname: str | None) -> list[dict[str, Any]]:
    """The task's environment: its command's, its request's, then what placement decided
    (Marathon's `$PORT0..`, `$PORT`, `$PORTS`, `$HOST` and named `$PORT_<NAME>`)."""
    variables = list((request.command.get("environment") or {}).get("variables") or [])
    variables += [{"name": k, "value": v} for k, v in request.env.items()]
    variables += [{"name": f"PORT{i}", "value": str(p)} for i, p in enumerate(ports)]
    if ports:
        variables.append({"name": "PORT", "value": str(ports[0])})
        variables.append({"name": "PORTS", "value": ",".join(map(str, ports))})
    if hostname:
        variables.append({"name": "HOST", "value": hostname})
    port_names = (request.labels.get(PORT_NAMES_LABEL) or "").split(",")
    for port_name, port in zip(port_names, ports):
        if port_name:
            variables.append({"name": f"PORT_{port_name.upper().replace('-', '_')}", "value": str(port)})
    return variables


def task_info(request: TaskRequest, agent_id: str, ports: list[int], executor: dict | None,
              hostname: str | None = None, secrets: list[tuple[Any, bytes, int]] | None = None) -> dict:
    """The Mesos TaskInfo for a request placed on an agent with these ports.

    `secrets` (use, value, version) become Mesos SECRET environment variables and SECRET
    volumes, of type VALUE: the launch is the only message that carries them."""
    command = dict(request.command)
    variables = _variables(request, ports, hostname)
    container = request.container
    for use, value, _ in secrets or ():
        if use.env is not None:
            variables.append({"name": use.env, "type": "SECRET", "secret": value_secret(value)})
        else:
            container = dict(container or {"type": "MESOS"})
            container["volumes"] = [*(container.get("volumes") or []), {
                "container_path": use.path, "mode": "RO",
                "source": {"type": "SECRET", "secret": value_secret(value)}}]
    if variables:
        command["environment"] = {"variables": variables}
    info: dict[str, Any] = {
        "name": request.name,
        "task_id": {"value": request.task_id},
        "agent_id": {"value": agent_id},
        "resources": _resources(request, ports),
        "kill_policy": {"grace_period": {"nanoseconds": int(request.kill_grace_seconds * 1e9)}},
    }
    if request.labels:
        info["labels"] = {"labels": [{"key": k, "value": v} for k, v in request.labels.items()]}
    if container:
        info["container"] = container
    if request.health_check:
        info["health_check"] = request.health_check
    if request.check:
        info["check"] = resolve_check_port(request.check, ports)
    if executor is not None:
        # Mesos allows a command or an executor, not both: the warm executor reads the
        # task's CommandInfo from `data` (JSON, base64 as every bytes field).
        info["executor"] = executor
        info["data"] = encode_data(json.dumps({"command": command}).encode())
    else:
        info["command"] = command
    return info


def resolve_check_port(check: dict[str, Any], ports: list[int]) -> dict[str, Any]:
    """A CheckInfo as Mesos takes it: an HTTP or TCP check's `port_index` (which of the task's
    host ports) becomes the `port` chosen at launch, as Marathon's MesosHttpCheck.toProto does."""
    kind = "http" if "http" in check else "tcp" if "tcp" in check else None
    if kind is None or "port_index" not in check[kind]:
        return check
    target = dict(check[kind])
    index = int(target.pop("port_index"))
    target["port"] = ports[index] if index < len(ports) else 0
    return {**check, kind: target}
