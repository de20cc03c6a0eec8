"""The seam between running a task (task_runner) and isolating it (a launcher).

The task runner drives a task's states; a launcher starts its process, either on
the host (a command task) or inside a layered container (a task with an image).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class LaunchSpec:
    task_id: str
    command: dict  # Mesos CommandInfo JSON (shell/value/arguments/environment/user)
    env: dict[str, str]  # the final environment: MESOS_*, PORT0..., the task's own
    sandbox: Path  # the task's sandbox on the host; stdout/stderr files live here
    resources: dict[str, float] = field(default_factory=dict)  # cpus, mem, disk, gpus
    ports: list[int] = field(default_factory=list)
    container: dict | None = None  # Mesos ContainerInfo JSON; None for a command task
    work_dir: Path = Path("/var/lib/dockyard")  # the agent's work dir (images, runtime state)


@dataclass
class ExitInfo:
    exit_code: int | None  # None when the task was killed by a signal
    signal: int | None
    reason: str | None  # a Mesos reason such as "REASON_CONTAINER_LIMITATION_MEMORY"
    message: str  # "Command exited with status 3", "Command terminated with signal SIGKILL"


class Running(Protocol):
    pid: int

    def wait(self, timeout: float | None = None) -> ExitInfo | None:
        """The task's exit, or None if it is still running after `timeout` seconds."""

    def signal(self, sig: int) -> None:
        """Send `sig` to every process of the task."""

    def stats(self) -> dict:
        """Resource usage in Mesos's ResourceStatistics shape."""

    def destroy(self) -> None:
        """Kill what is left and remove every trace; safe to call twice."""


class Launcher(Protocol):
    def launch(self, spec: LaunchSpec) -> Running: ...


def has_image(container: dict | None) -> bool:
    """True when a ContainerInfo names an image (MESOS `mesos.image` or DOCKER `docker.image`)."""
    if not container:
        return False
    return bool((container.get("mesos") or {}).get("image") or (container.get("docker") or {}).get("image"))


def launcher_for(spec: LaunchSpec) -> Launcher:
    """The container launcher for a task with an image, the host launcher otherwise.

    Imports are lazy: a command task never pays for the container machinery.
    """
    if has_image(spec.container):
        from executor.containers.launcher import ContainerLauncher  # type: ignore[import-not-found]

        return ContainerLauncher()
    from executor.host import HostLauncher

    return HostLauncher()


# What a task never inherits from its executor: the executor's token for the agent
# (framework/mesos/executor.py erases it from the executor's own environment).
NOT_INHERITED = ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN",)


def command_env(base: dict[str, str], command: dict) -> dict[str, str]:
    """`base` (less what tasks never inherit) plus the CommandInfo's own variables (VALUE type;
    secrets are not supported). Host tasks and container tasks both start from this."""
    env = {name: value for name, value in base.items() if name not in NOT_INHERITED}
    for variable in (command.get("environment") or {}).get("variables") or []:
        if variable.get("type", "VALUE") == "VALUE" and "name" in variable:
            env[variable["name"]] = str(variable.get("value", ""))
    return env
