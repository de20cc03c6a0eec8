"""Command tasks without an image: host filesystem, own cgroups and limits, and (by default) a PID
namespace of their own, so no task sees another's processes or their environment."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from executor.containers.hostiso import HostIsolation
from executor.containers.limits import MEMORY
from executor.launcher import LaunchSpec, describe_exit
from tests.containers.conftest import traces

pytestmark = pytest.mark.root

BOTH = pytest.mark.parametrize("pid_namespace", [False, True], ids=["cgroups", "cgroups+pid"])


def isolated(tmp_path: Path, task_id: str, resources: dict,
             pid_namespace: bool = False) -> tuple[HostIsolation, Path]:
    """A host task's isolation (cgroups made, limits set) and its sandbox."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    spec = LaunchSpec(task_id=task_id, command={}, env={}, sandbox=sandbox, resources=resources,
                      work_dir=tmp_path / "work")
    return HostIsolation.create(spec, pid_namespace), sandbox


def run(iso: HostIsolation, script: str, sandbox: Path) -> tuple[subprocess.Popen, str]:
    """Start `script` the way executor/host.py does with isolation on."""
    out = open(sandbox / "stdout", "wb")
    popen = subprocess.Popen(iso.wrap(["sh", "-c", script], "/bin/sh"), stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, cwd=sandbox)
    popen.wait(30)
    out.close()
    return popen, (sandbox / "stdout").read_text()


@BOTH
def test_host_task_gets_its_cgroup_and_limits_and_a_pid_namespace_when_asked(tmp_path: Path,
                                                                           pid_namespace: bool) -> None:
    assert HostIsolation.available()
    iso, sandbox = isolated(tmp_path, "host-task", {"cpus": 0.5, "mem": 32}, pid_namespace)
    try:
        popen, out = run(iso, "echo pid=$$; grep -e memory -e '^0::' /proc/self/cgroup; ls /proc | grep -c '^[0-9]'; "
                              "cat /etc/hostname >/dev/null && echo host-fs; exit 4", sandbox)
        assert popen.returncode == 4
        assert iso.id in out and "host-fs" in out
        visible = int(out.strip().splitlines()[-2])
        if pid_namespace:  # PID 1 is the init that forwards signals; the task comes right after it
            assert "pid=2" in out and visible <= 5, out
        else:  # the host's process table, the task under its own pid
            assert f"pid={popen.pid}" in out and visible > 5, out
        assert iso.stats()["mem_limit_bytes"] == 32 * 1024 * 1024
        # the CPU quota the task ran under (next test) is lifted as it ends, with a namespace to end
        assert iso.stats().get("cpus_limit") == (None if pid_namespace else 0.5)
    finally:
        iso.destroy()
    iso.destroy()
    assert traces(tmp_path / "work", iso.id) == []


@BOTH
def test_the_cpu_limit_comes_with_the_task_not_before_its_helpers(tmp_path: Path, pid_namespace: bool) -> None:
    """At 0.01 cpu (1 ms per 100 ms) the helpers' start-up under the quota would hold the task
    back a period or more: every process of the task is in its cgroups from the start (helpers
    included), the memory limit too; the CPU limit is written by the last helper, so the
    task starts under it with its quota full."""
    iso, sandbox = isolated(tmp_path, "quota-task", {"cpus": 0.1, "mem": 32}, pid_namespace)
    v1 = iso.group.layout.version == 1
    quota = iso.group.dir("cpu") / "cpu.cfs_quota_us" if v1 else iso.group.dir("") / "cpu.max"
    try:
        assert "cpus_limit" not in iso.stats()  # not yet: the helpers start unthrottled
        assert iso.stats()["mem_limit_bytes"] == 32 * 1024 * 1024
        # the task prints the quota it starts under, its own cgroups, then those of its oldest
        # helper (PID 1 in a namespace, else the executor's child: itself); shell built-ins only
        popen, out = run(iso, f"read -r q <{quota}; echo quota=$q; "
                              "while read -r l; do echo $l; done </proc/self/cgroup; echo ---; "
                              f"while read -r l; do echo $l; done </proc/{1 if pid_namespace else '$$'}/cgroup",
                         sandbox)
        assert popen.returncode == 0, out
        assert out.startswith("quota=10000\n" if v1 else "quota=10000 100000\n"), out
        for part in out.split("\n", 1)[1].split("---"):  # v1: a line per hierarchy; v2: the one `0::` line
            paths = {name: path for line in part.strip().splitlines()
                     for names, path in [line.split(":", 2)[1:]] for name in names.split(",")}
            for controller in ("cpu", "memory", "pids") if v1 else ("",):
                assert iso.id in paths[controller], (controller, part)
        assert iso.stats().get("cpus_limit") == (None if pid_namespace else 0.1)
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

    iso, sandbox = isolated(tmp_path, "host-term", {"cpus": 1, "mem": 64}, pid_namespace=True)
    try:
        out = open(sandbox / "stdout", "wb")
        popen = subprocess.Popen(iso.wrap(["sh", "-c", "echo ready; exec sleep 60"], "/bin/sh"), stdout=out,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: "ready" in (sandbox / "stdout").read_text(), timeout=10, what="the task")
        os.killpg(popen.pid, signal.SIGTERM)  # what the host launcher sends first
        popen.wait(10)
        info = iso.annotate(describe_exit(popen.returncode))
        assert info.signal == signal.SIGTERM and info.message == "Command terminated with signal SIGTERM"
    finally:
        iso.destroy()
    assert traces(tmp_path / "work", iso.id) == []


@pytest.mark.parametrize("isolation", ["cgroups/cpu,cgroups/mem", "cgroups/cpu,cgroups/mem,namespaces/pid"])
def test_signal_right_after_launch_is_never_lost_and_dispositions_are_defaults(
        tmp_path: Path, isolation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM at once after launch() ends the task: sent before the init forwards signals
    it would be dropped, so a kill waits for the init (or finds the helper shell and kills it)."""
    import signal
    import time

    from executor.host import HostLauncher

    monkeypatch.setenv("DOCKYARD_ISOLATION", isolation)
    launcher = HostLauncher()
    for round_ in range(30):
        spec = LaunchSpec(task_id=f"early-{round_}", command={"value": "exec sleep 60"},
                          env={"PATH": "/usr/bin:/bin"}, sandbox=tmp_path / f"early-{round_}",
                          resources={"cpus": 0.1, "mem": 32}, work_dir=tmp_path / "work")
        process = launcher.launch(spec)
        assert process.isolation is not None
        time.sleep(round_ * 0.0002)  # somewhere in the helpers' start-up: shell, unshare, the init
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


@BOTH
def test_a_shell_task_starts_as_under_sh_c_in_its_cgroups(tmp_path: Path, pid_namespace: bool) -> None:
    """A shell task's own shell joins its cgroups (no helper shell first): the script sees what
    `sh -c SCRIPT` shows it (no variable of ours, its line numbers), and a syntax error in it
    fails as there, before anything of it runs."""
    iso, sandbox = isolated(tmp_path, "shell-task", {"cpus": 0.5, "mem": 32}, pid_namespace)
    cases = ['echo "$0|$#|${f-unset}|$LINENO"; set | grep -c "^f=" || true',
             "echo never; if then fi"]
    try:
        for script in cases:
            plain = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, cwd=sandbox)
            popen, out = run(iso, script, sandbox)
            (sandbox / "stdout").unlink()
            assert (popen.returncode, out) == (plain.returncode, plain.stdout + plain.stderr), script
        popen, out = run(iso, "grep -e memory -e '^0::' /proc/self/cgroup", sandbox)
        assert popen.returncode == 0 and iso.id in out
    finally:
        iso.destroy()
    assert traces(tmp_path / "work", iso.id) == []


HELD = "s3cret-held-by-one-task-only"
# Every /proc/<pid>/environ the task may read, one variable a line; then its view of /proc.
READ_ALL_ENVIRONS = ("for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' 2>/dev/null <\"$f\"; done "
                     "| grep -E '^(DB_PASSWORD|READER_MARK)=' | sort -u")


def _as_nobody(tmp_path: Path, task_id: str, command: dict) -> LaunchSpec:
    return LaunchSpec(task_id=task_id, command=command, env={"PATH": "/usr/bin:/bin"}, sandbox=tmp_path / task_id,
                      resources={"cpus": 0.5, "mem": 32}, work_dir=tmp_path / "work", user="nobody")


def _holder(tmp_path: Path):
    """A host task as nobody holding a SECRET environment variable; running once it returns."""
    from executor.host import HostLauncher
    from framework.mesos.secrets import value_secret
    from tests.support.procs import wait_for

    holder = HostLauncher().launch(_as_nobody(tmp_path, "holder", {
        "value": "echo ready; exec sleep 60",
        "environment": {"variables": [{"name": "DB_PASSWORD", "type": "SECRET",
                                       "secret": value_secret(HELD.encode())}]}}))
    wait_for(lambda: "ready" in (tmp_path / "holder" / "stdout").read_text(), timeout=10, what="the holder")
    return holder


@pytest.mark.parametrize("isolation, leaks", [(None, False), ("cgroups/cpu,cgroups/mem", True)],
                         ids=["default", "without-namespaces-pid"])
def test_host_tasks_of_one_user_cannot_read_each_others_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolation: str | None, leaks: bool) -> None:
    """Two host tasks as nobody: the second reads every /proc/<pid>/environ it can. By default
    each host task has its own PID namespace and /proc, so the first's secret is out of its
    sight; the agent's `--isolation` without namespaces/pid shares the host's /proc (the
    caveat docs/secrets.md states), where the same reader finds it."""
    from executor.host import HostLauncher
    from framework.proctree import descendants

    if isolation is None:
        monkeypatch.delenv("DOCKYARD_ISOLATION", raising=False)
    else:
        monkeypatch.setenv("DOCKYARD_ISOLATION", isolation)
    holder = _holder(tmp_path)
    try:
        # The secret is in the holder's environment, where the host sees it.
        assert any(f"DB_PASSWORD={HELD}".encode() in _environ(pid) for pid in [holder.pid, *descendants(holder.pid)])
        reader = HostLauncher().launch(_as_nobody(tmp_path, "reader", {
            "value": READ_ALL_ENVIRONS, "environment": {"variables": [{"name": "READER_MARK", "value": "1"}]}}))
        info = reader.wait(20)
        reader.destroy()
        assert info is not None and info.exit_code == 0, (info, (tmp_path / "reader" / "stderr").read_text())
        seen = (tmp_path / "reader" / "stdout").read_text().split()
        assert "READER_MARK=1" in seen, seen  # it does read environments: its own
        assert (f"DB_PASSWORD={HELD}" in seen) is leaks, seen
    finally:
        holder.destroy()


def test_a_host_tasks_command_check_sees_only_its_tasks_processes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A COMMAND health check runs beside its task, as its task's user, in its task's PID
    namespace: a check can read no more of the host's processes than its task."""
    from executor.health import checkers_for
    from executor.host import HostLauncher
    from executor.task_runner import TaskRunner

    monkeypatch.delenv("DOCKYARD_ISOLATION", raising=False)
    holder = _holder(tmp_path)
    runner = TaskRunner("checked", _as_nobody(tmp_path, "checked", {"value": "exec sleep 60"}), HostLauncher(),
                        lambda *update: None).start()
    try:
        assert runner.started.wait(10)
        check = checkers_for({"type": "COMMAND", "command": {"value": (
            f"{READ_ALL_ENVIRONS} >seen; id -un >>seen; cat /proc/1/comm >>seen; "
            "! grep -q DB_PASSWORD seen && grep -qx dockyard-init seen && grep -qx nobody seen")},
            "timeout_seconds": 10}, runner)[0].check
        assert check() == (True, "command exited 0"), (tmp_path / "checked" / "seen").read_text()
    finally:
        runner.kill(0)
        runner.join(10)
        holder.destroy()


@pytest.mark.parametrize("script, exit_code, signal_name", [
    ("exit 3", 3, None), ("exit 130", 130, None), ("exit 137", 137, None), ("exit 255", 255, None),
    ("kill -SEGV $$", None, "SIGSEGV"), ("kill -USR1 $$", None, "SIGUSR1"), ("kill -KILL $$", None, "SIGKILL")])
@pytest.mark.parametrize("variables", [[], [{"name": "TINI_VERBOSITY", "value": "0"}]], ids=["", "TINI_VERBOSITY"])
def test_a_host_tasks_exit_passes_its_pid_namespace_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            script: str, exit_code: int | None,
                                                            signal_name: str | None, variables: list[dict]) -> None:
    """An `exit 130` is an exit with status 130, a task killed by SIGINT one that died of a
    signal, whatever the task's environment says (an init that exits 128+N for signal N, and
    says which on a channel the task's environment can silence, could not keep them apart)."""
    from executor.host import HostLauncher

    monkeypatch.delenv("DOCKYARD_ISOLATION", raising=False)
    process = HostLauncher().launch(_as_nobody(tmp_path, "exits", {"value": script,
                                                                   "environment": {"variables": variables}}))
    info = process.wait(20)
    process.destroy()
    assert info is not None
    assert (info.exit_code, info.signal and signal.Signals(info.signal).name) == (exit_code, signal_name), info
    assert info.message == (f"Command exited with status {exit_code}" if signal_name is None
                            else f"Command terminated with signal {signal_name}")
    assert traces(tmp_path / "work", process.isolation.id) == []


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def test_a_task_at_its_cpu_quota_is_reaped_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 0.01 cpu a process in the task's cgroups that wakes after the task used its 1 ms waits
    for the next 100 ms period, even to die: what reaps the task, and passes its exit on, is
    outside them (the namespace's init and the task are inside), and lifts the quota before
    it ends the namespace, whatever the task left running there."""
    import os

    from executor.host import HostLauncher
    from framework.proctree import descendants, inner_pid
    from tests.support.procs import wait_for

    monkeypatch.delenv("DOCKYARD_ISOLATION", raising=False)
    launcher = HostLauncher()

    def at_quota(name: str, script: str) -> LaunchSpec:
        return LaunchSpec(task_id=name, command={"value": script}, env={"PATH": "/usr/bin:/bin"},
                          sandbox=tmp_path / name, resources={"cpus": 0.01, "mem": 32}, work_dir=tmp_path / "work",
                          user="nobody")

    # A period is 100 ms; what this machine takes to start a process at all stands beside it (in
    # an emulated guest, tens of times what it takes here, and the task's own start then spans
    # periods: the same task without a namespace, its shell the executor's child, is the yardstick).
    pace = min(_timed(lambda: subprocess.run(["true"], check=True)) for _ in range(5))
    bound = 0.05 + 10 * pace
    took: dict[str, list[float]] = {"cgroups/cpu,cgroups/mem": [], "cgroups/cpu,cgroups/mem,namespaces/pid": []}
    for index, (isolation, times) in enumerate(took.items()):
        monkeypatch.setenv("DOCKYARD_ISOLATION", isolation)
        for round_ in range(5):
            started = time.monotonic()
            process = launcher.launch(at_quota(f"quota-{index}-{round_}", "true"))
            info = process.wait(60)
            times.append(time.monotonic() - started)
            process.destroy()
            assert info is not None and info.exit_code == 0, info
    monkeypatch.delenv("DOCKYARD_ISOLATION")
    plain, namespaced = (min(times) for times in took.values())
    assert namespaced < plain + bound, (took, pace)

    # Some ms of CPU (as many periods), a process left behind, then the end, over the quota.
    burn = "i=0; while [ $i -lt {} ]; do i=$((i+1)); done"
    lags = []
    for round_ in range(3):
        process = launcher.launch(at_quota(f"over-{round_}", f"{burn.format(6000)}; sleep 60 & {burn.format(600)}"))
        task = wait_for(lambda: next((p for p in descendants(process.pid) if inner_pid(p) == 2), None), timeout=60,
                        interval=0.001, what="the task's process")
        while os.path.exists(f"/proc/{task}"):  # until dockyard-init has reaped it
            time.sleep(0.001)
        gone = time.monotonic()
        info = process.wait(60)
        lags.append(time.monotonic() - gone)
        process.destroy()
        assert info is not None and info.exit_code == 0, info
    assert min(lags) < bound, (lags, pace)

    process = launcher.launch(at_quota("quota-held", "echo ready; exec sleep 60"))
    try:
        wait_for(lambda: "ready" in (tmp_path / "quota-held" / "stdout").read_text(), timeout=60, what="the task")
        inside = process.isolation.group.procs()
        assert process.pid not in inside
        assert sorted(inner_pid(pid) or 0 for pid in inside) == [1, 2], inside  # the init, the task
    finally:
        process.destroy()


def test_the_namespace_program_is_built_once_and_run_only_from_roots_own_directory(tmp_path: Path) -> None:
    """Every host task starts through it as root: a copy anyone else could have written is refused."""
    import os
    import stat

    from executor.containers import hostinit
    from framework.errors import ContainerError

    program = hostinit.program(tmp_path / "work")
    assert program.name == "dockyard-init" and program.parent.parent == tmp_path / "work" / "bin"
    mode = program.stat().st_mode
    assert program.stat().st_uid == 0 and stat.S_IMODE(mode) == 0o755
    built = program.stat().st_mtime_ns
    hostinit._built.clear()  # a new executor of the same agent: what is there is used
    assert hostinit.program(tmp_path / "work") == program and program.stat().st_mtime_ns == built
    hostinit._built.clear()
    os.chmod(program.parent, 0o777)
    with pytest.raises(ContainerError, match="not root's alone"):
        hostinit.program(tmp_path / "work")
    os.chmod(program.parent, 0o755)
    os.chown(program, 65534, 65534)
    with pytest.raises(ContainerError, match="not root's alone"):
        hostinit.program(tmp_path / "work")


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started
