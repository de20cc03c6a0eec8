"""Where a Mesos agent puts things, and the environment it gives an executor.

Layout (as Mesos): `<work_dir>/slaves/<agent_id>/frameworks/<fid>/executors/<eid>/runs/<container_id>/`
for sandboxes; `<work_dir>/meta/...` for checkpoints (same shape, JSON files).
"""
from __future__ import annotations

import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from framework.mesos.messages import seconds_to_duration

log = logging.getLogger(__name__)

TOKEN_ENV = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"  # set by the agent's security settings only

# What an executor takes from the agent's own environment. A Mesos agent gives an executor
# only what executorEnvironment (src/slave/slave.cpp) makes: LIBPROCESS_IP, PATH, the MESOS_*
# below. dockyard's executor also reads the agent's settings (DOCKYARD_*: isolation, registry,
# seccomp...) and honours, when it downloads, proxies, CA bundles and the locale. Nothing
# else the agent was started with (cloud credentials, tokens, a login shell's variables)
# reaches an executor, and its tasks get less still (executor.launcher.task_environment).
INHERITED = frozenset({"PATH", "LIBPROCESS_IP", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
                       "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"})
INHERITED_PREFIXES = ("DOCKYARD_", "LC_")


def executor_dir(work_dir: Path, agent_id: str, framework_id: str, executor_id: str, container_id: str) -> Path:
    return (work_dir / "slaves" / agent_id / "frameworks" / framework_id / "executors" / executor_id
            / "runs" / container_id)


def create_sandbox(directory: Path, user: str | None) -> None:
    """Make an executor's sandbox, owned by the user its executor and tasks run as.

    As Mesos's createSandboxDirectory with `--switch_user` (its default): the directory
    belongs to `user` and its group, mode 0750, so other tasks' users cannot read it. An
    agent that is not root cannot give files away, and runs everything as itself. Root's
    sandbox stays 0755: the warm executor runs as root, and its tasks, each as its own
    user, reach their sandboxes below it. KeyError when `user` does not exist here."""
    directory.mkdir(parents=True, exist_ok=True)
    if not user or os.geteuid() != 0:
        return
    account = pwd.getpwnam(user)
    if account.pw_uid == 0:
        return
    os.chown(directory, account.pw_uid, account.pw_gid)
    os.chmod(directory, 0o750)


def meta_dir(work_dir: Path, agent_id: str) -> Path:
    return work_dir / "meta" / "slaves" / agent_id


def executor_meta_dir(work_dir: Path, agent_id: str, framework_id: str, executor_id: str) -> Path:
    return meta_dir(work_dir, agent_id) / "frameworks" / framework_id / "executors" / executor_id


@dataclass(frozen=True)
class AgentAddress:
    ip: str
    port: int

    @property
    def pid(self) -> str:
        return f"slave(1)@{self.ip}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{self.port}"


def executor_environment(*, framework_id: str, executor_id: str, directory: Path, agent_id: str,
                         address: AgentAddress, checkpoint: bool, shutdown_grace: float,
                         work_dir: Path, recovery_timeout: float = 900.0,
                         subscription_backoff_max: float = 2.0, http_command_executor: bool = True,
                         command_env: dict[str, str] | None = None,
                         inherit: dict[str, str] | None = None) -> dict[str, str]:
    """The executor's environment, as Mesos's agent builds it (src/slave/slave.cpp `executorEnvironment`),
    plus dockyard's own.

    Of the agent's environment (`inherit`), only INHERITED is passed on: no MESOS_*
    the agent itself inherited (an agent run as a task of another Mesos), so no token
    but the one the agent issues the executor.
    """
    env = {name: value for name, value in (os.environ if inherit is None else inherit).items()
           if name in INHERITED or name.startswith(INHERITED_PREFIXES)}
    env.update({
        "MESOS_FRAMEWORK_ID": framework_id,
        "MESOS_EXECUTOR_ID": executor_id,
        "MESOS_DIRECTORY": str(directory),
        "MESOS_SANDBOX": str(directory),
        "MESOS_SLAVE_ID": agent_id,
        "MESOS_SLAVE_PID": address.pid,
        "MESOS_AGENT_ENDPOINT": address.endpoint,
        "MESOS_CHECKPOINT": "1" if checkpoint else "0",
        "MESOS_HTTP_COMMAND_EXECUTOR": "1" if http_command_executor else "0",
        "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": seconds_to_duration(shutdown_grace),
        "LIBPROCESS_PORT": "0",
        "DOCKYARD_WORK_DIR": str(work_dir),
    })
    if checkpoint:
        env["MESOS_RECOVERY_TIMEOUT"] = seconds_to_duration(recovery_timeout)
        env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = seconds_to_duration(subscription_backoff_max)
    else:
        env.pop("MESOS_RECOVERY_TIMEOUT", None)
        env.pop("MESOS_SUBSCRIPTION_BACKOFF_MAX", None)
    if command_env:
        env.update(command_env)
    return env


def point_latest(run_dir: Path) -> None:
    """`runs/latest` -> this run, as the Mesos agent keeps it for UIs and the files API."""
    link = run_dir.parent / "latest"
    temp = run_dir.parent / f".latest.{run_dir.name}"
    try:
        os.symlink(run_dir.name, temp)
        os.replace(temp, link)
    except OSError as error:
        log.debug("cannot point %s at %s: %s", link, run_dir, error)
