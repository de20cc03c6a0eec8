"""The agent's sandboxes belong to the executor's user: CommandInfo.user, else FrameworkInfo.user."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving a sandbox away needs root")


def _sandbox(cluster: Cluster, framework: RawFramework, executor_id: str) -> Path:
    [found] = cluster.workdir.glob(f"agent0/slaves/*/frameworks/{framework.framework_id}/executors/"
                                   f"{executor_id}/runs/latest")
    return found.resolve()


def test_a_command_task_and_its_sandbox_are_its_users(cluster: Cluster, framework: RawFramework) -> None:
    task = command_task("id -u > ids; id -g >> ids", task_id="as-daemon")
    task["command"]["user"] = "daemon"
    framework.launch(framework.offer(), [task])
    assert framework.wait_terminal("as-daemon")["state"] == "TASK_FINISHED"
    sandbox = _sandbox(cluster, framework, "as-daemon")
    assert (sandbox.stat().st_uid, sandbox.stat().st_gid, sandbox.stat().st_mode & 0o777) == (1, 1, 0o750)
    assert (sandbox / "ids").read_text().split() == ["1", "1"]


def test_a_user_the_agent_lacks_fails_the_task_before_any_executor_starts(framework: RawFramework) -> None:
    task = command_task("true", task_id="as-ghost")
    task["command"]["user"] = "no-such-user-here"
    framework.launch(framework.offer(), [task])
    failed = framework.wait_terminal("as-ghost")
    assert failed["state"] == "TASK_FAILED" and failed["source"] == "SOURCE_AGENT"
    assert failed["message"] == "Failed to create the sandbox: user 'no-such-user-here' does not exist on this agent"
