"""The seam between running a task (task_runner) and isolating it (a launcher).

The task runner drives a task's states; a launcher starts its process, either on
the host (a command task, executor/host.py) or inside a layered container (a task
with an image, executor/containers/launcher.py); executor/launchers.py picks one.
This module is what both sides share, and imports no launcher: what a launch is
given, how an exit is reported, the environment a task starts from.
"""
from __future__ import annotations

import signal
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
    # The host user the task acts as: CommandInfo.user, else FrameworkInfo.user (Mesos's rule). A
    # command task runs as it and the fetcher opens local files as it; a container's process runs
    # as CommandInfo.user, else as its image's user. None: as the executor.
    user: str | None = None
    # The id of the task's container (executor/containers/records.py), chosen before the launch so
    # that every status of the task names it, TASK_STARTING included. None: the launcher picks one.
    container_id: str | None = None


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


def exit_info(status: int) -> ExitInfo:
    """A process's status as Popen gives it (negative: killed by that signal), in Mesos's words."""
    if status < 0:
        number = -status
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return ExitInfo(None, number, None, f"Command terminated with signal {name}")
    return ExitInfo(status, None, None, f"Command exited with status {status}")


def describe_exit(status: int) -> ExitInfo:
    """The status of a task run under an init (tini, a runtime), in Mesos's words: above 128
    it is how the init says its child died of signal status-128."""
    if status > 128 and status - 128 < 65:
        return exit_info(128 - status)
    return exit_info(status)


# What a task never inherits from its executor: the executor's token for the agent
# (framework/mesos/executor.py erases it from the executor's own environment).
NOT_INHERITED = ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN",)
# Mesos's default PATH for what it launches (stout's os::host_default_path).
HOST_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def task_environment(executor_env: dict[str, str]) -> dict[str, str]:
    """What a task starts from: what Mesos gives it, never the rest of its executor's environment.

    A Mesos agent launches with only what executorEnvironment (src/slave/slave.cpp) makes:
    the MESOS_* variables, LIBPROCESS_IP/PORT and PATH (the host's default when unset); the
    command executor passes that on, less its token. dockyard's executor also holds the
    agent's settings and whatever the agent was started with: none of it reaches a task.
    The task's own CommandInfo variables come on top (`command_env`)."""
    env = {name: value for name, value in executor_env.items()
           if (name.startswith("MESOS_") or name in ("LIBPROCESS_IP", "LIBPROCESS_PORT", "PATH"))
           and name not in NOT_INHERITED}
    env.setdefault("PATH", HOST_DEFAULT_PATH)
    return env


def command_env(base: dict[str, str], command: dict) -> dict[str, str]:
    """`base` (less what tasks never inherit) plus the CommandInfo's own variables: VALUE ones,
    and SECRET ones of type VALUE (their bytes as text; Mesos's environment_secret isolator).
    Host tasks and container tasks both start from this; it is the only place a secret
    becomes an environment variable, and only the task's own."""
    from framework.mesos.secrets import environment_secrets

    env = {name: value for name, value in base.items() if name not in NOT_INHERITED}
    variables = (command.get("environment") or {}).get("variables") or []
    for variable in variables:
        if variable.get("type", "VALUE") == "VALUE" and "name" in variable:
            env[variable["name"]] = str(variable.get("value", ""))
    env.update(environment_secrets(variables))
    return env
