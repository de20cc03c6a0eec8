"""Command tasks without an image: host filesystem, own cgroup and PID namespace, same limits."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from executor.containers.hostiso import HostIsolation
from executor.containers.launcher import MEMORY, describe_exit
from executor.launcher import LaunchSpec
from tests.containers.conftest import traces

pytestmark = pytest.mark.root


def isolated(tmp_path: Path, task_id: str, resources: dict) -> tuple[HostIsolation, Path]:
    """A host task's isolation (cgroups made, limits set) and its sandbox."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    spec = LaunchSpec(task_id=task_id, command={}, env={}, sandbox=sandbox, resources=resources,
                      work_dir=tmp_path / "work")
    return HostIsolation.create(spec), sandbox


def run(iso: HostIsolation, script: str, sandbox: Path) -> tuple[subprocess.Popen, str]:
    """Start `script` the way executor/host.py does with isolation on."""
    out = open(sandbox / "stdout", "wb")
    popen = subprocess.Popen(iso.wrap(["sh", "-c", script], "/bin/sh"), stdout=out, stderr=subprocess.STDOUT,
                             stdin=iso.ready_fd(), start_new_session=True, cwd=sandbox)
    iso.started(popen.pid)
    popen.wait(30)
    out.close()
    return popen, (sandbox / "stdout").read_text()


def test_host_task_gets_pid_namespace_cgroup_and_limits(tmp_path: Path) -> None:
    assert HostIsolation.available()
    iso, sandbox = isolated(tmp_path, "host-task", {"cpus": 0.5, "mem": 32})
    try:
        popen, out = run(iso, "echo pid=$$; grep -e memory -e '^0::' /proc/self/cgroup; ls /proc | grep -c '^[0-9]'; "
                              "cat /etc/hostname >/dev/null && echo host-fs; exit 4", sandbox)
        assert popen.returncode == 4
        # PID 1 is the small init that forwards signals; the task comes right after it
        assert "pid=2" in out and iso.id in out and "host-fs" in out
        assert int(out.strip().splitlines()[-2]) <= 5
        assert iso.stats()["mem_limit_bytes"] == 32 * 1024 * 1024
        assert iso.stats()["cpus_limit"] == 0.5
    finally:
        iso.destroy()
    iso.destroy()
    assert traces(tmp_path / "work", iso.id) == []


def test_the_cpu_limit_applies_once_the_task_runs_not_to_its_helpers_start_up(tmp_path: Path) -> None:
    """At 0.01 cpu (1 ms per 100 ms) a helper's shell start-up alone would be throttled for
    periods: the task's processes are in every cgroup from the start, the CPU limit comes
    once the task runs (memory and pids limits are there before)."""
    iso, sandbox = isolated(tmp_path, "quota-task", {"cpus": 0.1, "mem": 32})
    try:
        assert "cpus_limit" not in iso.stats()  # no CPU quota yet
        assert iso.stats()["mem_limit_bytes"] == 32 * 1024 * 1024
        # the task prints its own cgroups, then those of PID 1 (the helper init)
        # (shell built-ins only: the task itself runs under its quota, even in an emulated guest)
        popen, out = run(iso, "while read -r l; do echo $l; done </proc/self/cgroup; echo ---; "
                              "while read -r l; do echo $l; done </proc/1/cgroup", sandbox)
        assert popen.returncode == 0
        for part in out.split("---"):  # v1: a line per hierarchy; v2: the one `0::` line
            paths = {name: path for line in part.strip().splitlines()
                     for names, path in [line.split(":", 2)[1:]] for name in names.split(",")}
            for controller in ("cpu", "memory", "pids") if iso.group.layout.version == 1 else ("",):
                assert iso.id in paths[controller], (controller, part)
        assert iso.stats()["cpus_limit"] == 0.1
    finally:
        iso.destroy()
    assert traces(tmp_path / "work", iso.id) == []


def test_host_task_oom_is_reported(tmp_path: Path) -> None:
    iso, sandbox = isolated(tmp_path, "host-hog", {"cpus": 1, "mem": 32})
    try:
        popen, _ = run(iso, "dd if=/dev/zero of=/dev/null bs=200M count=1; sleep 30", sandbox)
        info = iso.annotate(describe_exit(popen.returncode))
        assert info.reason == MEMORY and "Memory limit exceeded" in info.message
    finally:
        iso.destroy()
    assert traces(tmp_path / "work", iso.id) == []


def test_host_task_signal_reaches_the_task_not_just_init(tmp_path: Path) -> None:
    import os
    import signal

    from tests.support.procs import wait_for

    iso, sandbox = isolated(tmp_path, "host-term", {"cpus": 1, "mem": 64})
    try:
        out = open(sandbox / "stdout", "wb")
        popen = subprocess.Popen(iso.wrap(["sh", "-c", "echo ready; exec sleep 60"], "/bin/sh"), stdout=out,
                                 stdin=iso.ready_fd(), start_new_session=True)
        iso.started(popen.pid)
        wait_for(lambda: "ready" in (sandbox / "stdout").read_text(), timeout=10, what="the task")
        os.killpg(popen.pid, signal.SIGTERM)  # what the host launcher sends first
        popen.wait(10)
        info = iso.annotate(describe_exit(popen.returncode))
        assert info.signal == signal.SIGTERM and info.message == "Command terminated with signal SIGTERM"
    finally:
        iso.destroy()
    assert traces(tmp_path / "work", iso.id) == []


def test_signal_right_after_launch_is_never_lost_and_dispositions_are_defaults(tmp_path: Path) -> None:
    """launch() returns only once the task exists past the init's fork: an at-once SIGTERM ends it."""
    import signal

    from executor.host import HostLauncher

    launcher = HostLauncher()
    for round_ in range(15):
        spec = LaunchSpec(task_id=f"early-{round_}", command={"value": "exec sleep 60"},
                          env={"PATH": "/usr/bin:/bin"}, sandbox=tmp_path / f"early-{round_}",
                          resources={"cpus": 0.1, "mem": 32}, work_dir=tmp_path / "work")
        process = launcher.launch(spec)
        assert process.isolation is not None
        process.signal(signal.SIGTERM)
        info = process.wait(10)
        process.destroy()
        assert info is not None and info.signal == signal.SIGTERM, f"round {round_}: {info}"
        assert traces(tmp_path / "work", process.isolation.id) == []
    spec = LaunchSpec(task_id="dispositions", command={"value": "grep -E 'SigIgn|SigBlk' /proc/self/status"},
                      env={"PATH": "/usr/bin:/bin"}, sandbox=tmp_path / "dispositions", work_dir=tmp_path / "work")
    # A launcher thread with a blocked signal must not pass it on (CI shells do block some).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        process = launcher.launch(spec)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert process.wait(10).exit_code == 0
    process.destroy()
    # nothing ignored or blocked (sh ignores SIGINT/SIGQUIT in background jobs; the init undoes it)
    masks = dict(line.split(":\t") for line in (tmp_path / "dispositions" / "stdout").read_text().splitlines())
    # Signals 32 and 33 belong to the C library, which no program can unblock; a CI shell may block them.
    libc_reserved = (1 << 31) | (1 << 32)
    assert int(masks["SigBlk"], 16) & ~libc_reserved == 0, masks
    assert int(masks["SigIgn"], 16) & ~libc_reserved == 0, masks
