"""Who a task runs as on the host: CommandInfo.user, else FrameworkInfo.user (real processes)."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from executor.callbacks import DockyardExecutor
from executor.host import HostLauncher
from executor.launcher import LaunchSpec
from executor.task_runner import TaskRunner

DAEMON = 1


@pytest.mark.parametrize("isolation", ["posix/cpu,posix/mem", "cgroups/cpu,cgroups/mem",
                                       "cgroups/cpu,cgroups/mem,namespaces/pid"], ids=["plain", "cgroups", "pid"])
def test_a_host_task_runs_as_its_user_with_only_that_users_groups(tmp_path: Path, isolation: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Never with root's group or supplementary groups; the sandbox the executor made becomes the user's."""
    monkeypatch.setenv("DOCKYARD_ISOLATION", isolation)
    sandbox = tmp_path / "sandbox"
    spec = LaunchSpec(task_id=f"as-daemon-{isolation.count('/')}",
                      command={"value": "id -u; id -g; id -G; touch mine"}, env={"PATH": "/usr/bin:/bin"},
                      sandbox=sandbox, user="daemon")
    states: list[str] = []
    runner = TaskRunner(spec.task_id, spec, HostLauncher(), lambda r, state, *rest: states.append(state)).start()
    assert runner.join(20)
    assert states[-1] == "TASK_FINISHED", (states, (sandbox / "stderr").read_text())
    assert (sandbox / "stdout").read_text().split() == [str(DAEMON)] * 3
    assert sandbox.stat().st_uid == DAEMON and sandbox.stat().st_mode & 0o777 == 0o750
    assert (sandbox / "mine").stat().st_uid == DAEMON


def test_a_user_this_host_lacks_fails_the_launch_naming_it(tmp_path: Path) -> None:
    spec = LaunchSpec(task_id="ghost", command={"value": "true"}, env={"PATH": "/usr/bin:/bin"},
                      sandbox=tmp_path / "sandbox", user="no-such-user-here")
    updates: list[tuple[str, str | None]] = []
    runner = TaskRunner("ghost", spec, HostLauncher(), lambda r, state, message, *rest: updates.append(
        (state, message))).start()
    assert runner.join(10)
    assert updates[-1] == ("TASK_FAILED",
                           "Failed to launch task: user 'no-such-user-here' does not exist on this agent")


class _Capture:
    """A launcher factory that records what the executor would launch, and launches nothing."""

    def __init__(self) -> None:
        self.specs: list[LaunchSpec] = []

    def __call__(self, spec: LaunchSpec) -> Any:
        self.specs.append(spec)
        raise RuntimeError("captured")


def _task(task_id: str, command: dict, container: dict | None = None) -> dict:
    data = {"command": command, **({"container": container} if container else {})}
    return {"task_id": {"value": task_id}, "data": base64.b64encode(json.dumps(data).encode()).decode()}


def test_the_task_user_is_its_commands_else_the_frameworks(tmp_path: Path) -> None:
    capture = _Capture()
    executor = DockyardExecutor(environ={"MESOS_DIRECTORY": str(tmp_path), "MESOS_EXECUTOR_ID": "warm"},
                                launcher=capture)
    executor.driver = driver = type("Driver", (), {"sendStatusUpdate": lambda self, status: None})()
    executor.registered(driver, {}, {"user": "nobody", "name": "f"}, {})
    executor.launchTask(driver, _task("own", {"value": "true", "user": "daemon"}))
    executor.launchTask(driver, _task("default", {"value": "true"}))
    image = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}}
    executor.launchTask(driver, _task("boxed", {"value": "true"}, image))
    users = {spec.task_id: (spec.user, spec.command.get("user")) for spec in capture.specs}
    # a container's process runs as CommandInfo.user, else its image's: the framework's user is
    # only what its files are fetched as
    assert users == {"own": ("daemon", "daemon"), "default": ("nobody", None), "boxed": ("nobody", None)}


def test_a_command_health_check_runs_as_the_tasks_user(tmp_path: Path) -> None:
    """A check may do no more than its task: the spec that names one names the other."""
    from executor.health import command_check

    assert command_check("test $(id -u) = 1 && test $(id -g) = 1", {"PATH": "/usr/bin:/bin"}, 5, str(tmp_path),
                         "daemon")() == (True, "command exited 0")
    assert command_check("test $(id -u) = 0", {"PATH": "/usr/bin:/bin"}, 5, str(tmp_path), "daemon")()[0] is False


def test_a_command_check_in_its_tasks_pid_namespace_runs_as_the_tasks_user(task_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering the task's namespaces takes root; the check's command itself runs as the task's
    user, with that user's groups only, in the task's sandbox."""
    from executor.health import command_check

    monkeypatch.delenv("DOCKYARD_ISOLATION", raising=False)
    spec = LaunchSpec(task_id="checked-as-daemon", command={"value": "exec sleep 30"},
                      env={"PATH": "/usr/bin:/bin"}, sandbox=task_dir / "sandbox", work_dir=task_dir / "work",
                      user="daemon")
    process = HostLauncher().launch(spec)
    try:
        check = command_check('test "$(id -u) $(id -g) $(id -G) $(pwd)" = "1 1 1 $MESOS_SANDBOX" '
                              '&& test "$(cat /proc/1/comm)" = dockyard-init',
                              {"PATH": "/usr/bin:/bin", "MESOS_SANDBOX": str(spec.sandbox)}, 5, str(spec.sandbox),
                              "daemon", lambda: process)
        assert check() == (True, "command exited 0")
    finally:
        process.destroy()


def test_what_is_fetched_belongs_to_the_tasks_user(tmp_path: Path, task_dir: Path) -> None:
    """As if Mesos's fetcher, which runs as the task's user, had made it: the task may change it."""
    import tarfile

    from executor.fetcher import fetch_all

    public = task_dir / "public"  # the task's user opens file:// URIs itself
    (public / "tree" / "deep").mkdir(parents=True)
    (public / "tree" / "deep" / "file.txt").write_text("x\n")
    (public / "tree" / "link").symlink_to("deep/file.txt")
    with tarfile.open(public / "tree.tar.gz", "w:gz") as tar:
        tar.add(public / "tree", arcname="tree")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "stdout").write_text("")  # already there: the executor's, left alone
    fetch_all([{"value": str(public / "tree.tar.gz")}], sandbox, user="daemon")
    owners = {str(p.relative_to(sandbox)): p.lstat().st_uid for p in sandbox.rglob("*")}
    assert owners == {"stdout": 0, "tree.tar.gz": DAEMON, "tree": DAEMON, "tree/deep": DAEMON,
                      "tree/deep/file.txt": DAEMON, "tree/link": DAEMON}
