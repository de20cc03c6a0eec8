"""The container's init (tini, as Docker's `--init`): signals reach the task, orphans are reaped.

The kernel drops signals sent to a PID namespace's init unless it has a handler, so a
task that was PID 1 ignored SIGTERM and every kill waited out the grace period.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from executor.containers import bundle
from executor.containers.launcher import Container, ContainerLauncher
from executor.task_runner import TaskRunner
from framework.errors import ContainerError
from tests.containers.conftest import Launches, stdout_of, wait_output
from tests.support.procs import free_port, wait_for

needs_root = pytest.mark.root


class Updates:
    def __init__(self) -> None:
        self.items: list[tuple[str, str | None, str | None]] = []
        self.running = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, runner, state, message, reason, healthy) -> None:  # noqa: ANN001
        with self.lock:
            self.items.append((state, message, reason))
        if state == "TASK_RUNNING":
            self.running.set()


def run_task(launches: Launches, command: str, **kwargs) -> tuple[TaskRunner, Updates]:
    spec = launches.spec(command, **kwargs)
    updates = Updates()
    runner = TaskRunner(spec.task_id, spec, ContainerLauncher(), updates, kill_grace=30.0).start()
    assert updates.running.wait(60), updates.items
    return runner, updates


def kill_and_time(runner: TaskRunner) -> float:
    start = time.monotonic()
    runner.kill(30.0)  # Mesos KillPolicy grace period of 30 s
    assert runner.join(20), "the task outlived SIGTERM (waiting for the 30 s grace period?)"
    return time.monotonic() - start


@needs_root
def test_sigterm_ends_a_shell_or_httpd_task_long_before_the_grace_period(launches: Launches) -> None:
    shell, shell_updates = run_task(launches, "sleep 1000")  # no trap: sh -c 'sleep 1000'
    port = free_port()
    httpd, httpd_updates = run_task(launches, "exec httpd -f -p 127.0.0.1:$PORT0 -h /www",
                                    env={"PORT0": str(port)}, resources={"cpus": 0.5, "mem": 32, "ports": 1})
    for runner, updates in ((shell, shell_updates), (httpd, httpd_updates)):
        elapsed = kill_and_time(runner)
        assert elapsed < 10, f"kill took {elapsed:.1f}s: SIGTERM did not reach the task"
        assert updates.items[-1] == ("TASK_KILLED", "Command terminated with signal SIGTERM", None)


@needs_root
def test_a_task_trapping_term_runs_its_trap_and_exit_codes_pass_through(launches: Launches) -> None:
    polite, updates = run_task(launches, "trap 'echo trapped > $MESOS_SANDBOX/trapped; exit 0' TERM; "
                                         "echo ready; sleep 1000")
    wait_output(polite.process, "ready")  # type: ignore[arg-type]
    assert kill_and_time(polite) < 10
    assert updates.items[-1] == ("TASK_KILLED", "Command exited with status 0", None)
    assert (Path(polite.spec.sandbox) / "trapped").read_text() == "trapped\n"

    failing, updates = run_task(launches, "exit 3")
    assert failing.join(30)
    assert updates.items[-1] == ("TASK_FAILED", "Command exited with status 3", None)
    suicidal = launches.launch("kill -TERM $$")  # killed by a signal, not by us
    result = suicidal.wait(30)
    assert result is not None and result.signal == 15 and result.exit_code is None
    assert result.message == "Command terminated with signal SIGTERM"


def namespace_procs(container: Container) -> list[tuple[int, str, str]]:
    """(host pid, name, state) of every process in the container's PID namespace."""
    namespace = os.readlink(f"/proc/{container.pid}/ns/pid")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                continue
            fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{entry}/status").read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        found.append((int(entry), fields["Name"], fields["State"][:1]))
    return sorted(found)


@needs_root
def test_orphans_are_reaped(launches: Launches) -> None:
    # each subshell starts a sleep and exits at once: the sleeps are orphans, reparented to
    # PID 1, and become zombies when they exit unless PID 1 reaps them (`exec sleep` would
    # never: as PID 1 itself it left <defunct> entries behind)
    container = launches.launch("for i in 1 2 3 4 5; do (sleep 0.2 &); done; echo spawned; exec sleep 1000")
    wait_output(container, "spawned")
    assert any(name == "sleep" for _pid, name, _state in namespace_procs(container))

    def settled() -> list[tuple[int, str, str]] | None:
        procs = namespace_procs(container)
        return procs if len(procs) == 2 else None

    procs = wait_for(settled, timeout=10, what="the orphans gone, not <defunct>")
    assert [(name, state) for _pid, name, state in procs] == [("init", "S"), ("sleep", "S")]
    assert sorted(container.group.procs()) == [pid for pid, _name, _state in procs]  # type: ignore[union-attr]
    assert container.wait(0) is None


@needs_root
def test_without_tini_the_task_is_pid_1_and_the_executor_warns(launches: Launches, monkeypatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(bundle, "INIT_BINARY", "/nonexistent/tini-static")
    with caplog.at_level(logging.WARNING, logger="executor.containers.launcher"):
        container = launches.launch("echo pid=$$; exit 4")
    result = container.wait(30)
    assert result is not None and result.exit_code == 4
    assert stdout_of(container) == "pid=1\n"
    assert any("/nonexistent/tini-static is missing" in r.getMessage() for r in caplog.records)


@needs_root
def test_the_program_is_checked_in_the_image_but_not_under_mounts(launches: Launches) -> None:
    with pytest.raises(ContainerError, match=r'exec: "no-such-program": executable file not found in \$PATH'):
        launches.launch({"shell": False, "value": "no-such-program"})
    spec = launches.spec({"shell": False, "value": "/mnt/mesos/sandbox/run.sh"})
    script = Path(spec.sandbox) / "run.sh"  # fetched into the sandbox, not in the image
    script.write_text("#!/bin/sh\necho from-sandbox\n")
    script.chmod(0o755)
    container = ContainerLauncher().launch(spec)
    launches.started.append(container)
    assert container.wait(30).exit_code == 0 and stdout_of(container) == "from-sandbox\n"


def test_program_error_follows_path_symlinks_and_modes(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_text("")
    (rootfs / "bin" / "busybox").chmod(0o755)
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "bin" / "data").write_text("")
    (rootfs / "usr").mkdir()
    (rootfs / "usr" / "bin").symlink_to("/bin")  # absolute: resolved inside the rootfs

    def error(args0: str, path: str = "/bin", cwd: str = "/") -> str | None:
        process = bundle.ProcessSpec([args0], [f"PATH={path}"], cwd, 0, 0)
        return bundle.program_error(rootfs, process, ["/mnt/mesos/sandbox", "/data"])

    assert error("sh") is None and error("/bin/sh") is None and error("/usr/bin/sh") is None
    assert error("sh", path="/nowhere:/usr/bin") is None
    assert error("./sh", cwd="/bin") is None
    assert error("busybox", path="/nowhere") == 'exec: "busybox": executable file not found in $PATH'
    assert error("/bin/nope") == 'exec: "/bin/nope": stat /bin/nope: no such file or directory'
    assert error("/bin/data") == 'exec: "/bin/data": permission denied'
    assert error("/bin") == 'exec: "/bin": permission denied'
    assert error("/data/tool") is None and error("tool", path="/mnt/mesos/sandbox/bin") is None


def test_the_spec_runs_the_task_under_the_init(tmp_path: Path) -> None:
    process = bundle.ProcessSpec(["/bin/sh", "-c", "true"], ["PATH=/bin"], "/", 0, 0)
    config = bundle.runtime_config(process, tmp_path, "/dockyard/x", [], init=Path("/usr/bin/tini-static"))
    assert config["process"]["args"] == ["/dev/init", "-g", "--", "/bin/sh", "-c", "true"]
    mount = next(m for m in config["mounts"] if m["destination"] == "/dev/init")
    assert mount["source"] == "/usr/bin/tini-static" and "ro" in mount["options"]
    destinations = [m["destination"] for m in config["mounts"]]
    assert destinations.index("/dev") < destinations.index("/dev/init")  # on the runtime's /dev tmpfs
    plain = bundle.runtime_config(process, tmp_path, "/dockyard/x", [])
    assert plain["process"]["args"] == ["/bin/sh", "-c", "true"]
    assert "/dev/init" not in [m["destination"] for m in plain["mounts"]]
    # nothing else changes
    del config["process"]["args"], plain["process"]["args"]
    config["mounts"].remove(mount)
    assert config == plain
