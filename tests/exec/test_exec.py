"""`task exec` end to end: real tasks, real containers, the client as the CLI will run it.

A command run by exec runs where its task runs: inside a container task's namespaces, root
file system and cgroups; inside a host task's cgroups and PID namespace, as its user. Its exit
code, a terminal that follows the client's window, Ctrl-C, and the end of the session when
the client goes are all checked against what the processes themselves report.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import threading
import time

import pytest

from framework import cgroups
from framework.mesos import attach
from framework.security.client import ClientConfig
from tests.exec.conftest import (
    IMAGE_MARKER, ROOT, client_argv, nested_groups, run, start_task, task_record,
)
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess

pytestmark = pytest.mark.root


def test_exec_in_a_container_task_sees_the_image_and_the_container(framework: RawFramework, settings: ClientConfig,
                                                                 cluster: Cluster) -> None:
    start_task(framework, "box", "hostname > $MESOS_SANDBOX/hostname; sleep 600")
    shown = run(settings, "box", "cat", "/etc/os-release")
    assert (shown.code, shown.stdout.decode().strip()) == (0, IMAGE_MARKER)  # the image's file, not Debian's
    processes = run(settings, "box", "ps", "-o", "pid,args")
    lines = processes.stdout.decode().splitlines()
    assert processes.code == 0 and any(line.split()[0] == "1" and "init" in line for line in lines[1:]), lines
    assert any("sleep 600" in line for line in lines) and not any("dockyard" in line for line in lines), lines
    seen = run(settings, "box", "sh", "-c", "hostname; cat $MESOS_SANDBOX/hostname")
    own, tasks = seen.stdout.decode().splitlines()[:2]
    assert own == tasks  # the name the task itself sees
    cgroup = run(settings, "box", "cat", "/proc/self/cgroup").stdout.decode()
    assert "nested-" in cgroup, cgroup  # its own cgroup, inside the container's


def test_no_runtime_stays_to_relay_the_output(framework: RawFramework, settings: ClientConfig,
                                             cluster: Cluster) -> None:
    """Without a terminal the runtime hands the command the agent's own pipes and exits: nothing of
    it stays to copy the output, which arrives whole, and the command's status still comes back."""
    status = start_task(framework, "direct", "sleep 600")
    container = status["container_status"]["container_id"]["value"].encode()
    started, out = threading.Event(), Lines()
    out.on_line = lambda line: started.set()
    outcome: list[int] = []
    session = threading.Thread(target=lambda: outcome.append(attach.exec_task(
        settings, "direct", ["sh", "-c", "readlink /proc/self/fd/1; sleep 2; exit 4"], stdout=out,
        stderr=io.BytesIO())))
    session.start()
    try:
        assert started.wait(20), "the session never started"
        runtimes = [pid for pid, argv in _processes() if argv[:1] and argv[0].endswith((b"runc", b"crun"))
                    and b"exec" in argv and container in argv]
        assert runtimes == [], runtimes
        assert out.lines[0].startswith(b"pipe:[")
    finally:
        session.join(30)
    assert outcome == [4]
    blob = run(settings, "direct", "sh", "-c", "head -c 3000000 /dev/urandom > /tmp/blob; sha256sum /tmp/blob")
    copied = run(settings, "direct", "cat", "/tmp/blob")
    assert hashlib.sha256(copied.stdout).hexdigest() == blob.stdout.split()[0].decode()


@pytest.mark.parametrize("runtime", ["crun"])
def test_exec_in_a_task_of_another_runtime(framework: RawFramework, settings: ClientConfig, runtime: str) -> None:
    layout = cgroups.detect()
    if layout.version == 1 and layout.unified is not None:
        pytest.skip("crun refuses to start containers on a hybrid cgroup host (this one); "
                    "it runs in the cgroup v2 guest (tests/exec/test_cgroup_v2_vm.py)")
    start_task(framework, f"other-{runtime}", "sleep 600", runtime=runtime)
    failed = run(settings, f"other-{runtime}", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (failed.code, failed.stdout, failed.stderr) == (3, b"out\n", b"err\n")
    assert run(settings, f"other-{runtime}", "sh", "-c", "kill -9 $$").code == 137
    cgroup = run(settings, f"other-{runtime}", "cat", "/proc/self/cgroup").stdout.decode()
    assert "nested-" in cgroup, cgroup


class Lines(io.BytesIO):
    """A stdout that keeps what came line by line and says when a line is complete."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []
        self.on_line = lambda line: None

    def write(self, data) -> int:  # noqa: ANN001 - bytes or a view of them
        written = super().write(data)
        *complete, _rest = self.getvalue().split(b"\n")
        for line in complete[len(self.lines):]:
            self.lines.append(line)
            self.on_line(line)
        return written


def _processes() -> list[tuple[int, list[bytes]]]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    found.append((int(entry), handle.read().split(b"\0")))
            except OSError:
                pass
    return found


def test_exit_codes_come_back(framework: RawFramework, settings: ClientConfig) -> None:
    start_task(framework, "codes", "sleep 600")
    assert run(settings, "codes", "true").code == 0
    failed = run(settings, "codes", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (failed.code, failed.stdout, failed.stderr) == (3, b"out\n", b"err\n")
    assert run(settings, "codes", "sh", "-c", "kill -9 $$").code == 137
    cli = subprocess.run(client_argv(settings, "exec", "codes", "--", "sh", "-c", "exit 3"), cwd=ROOT,
                         capture_output=True, timeout=30)
    assert cli.returncode == 3, cli.stderr


def test_exec_in_a_host_task_joins_its_cgroups_namespace_and_user(framework: RawFramework, settings: ClientConfig,
                                                                  cluster: Cluster) -> None:
    status = start_task(framework, "plain", "sleep 600", image=False, user="nobody",
                        env={"FROM_TASK": "task-env", "LD_PRELOAD": "/nonexistent/preload.so"})
    record = task_record(cluster, status)
    seen = run(settings, "plain", "sh", "-c",
               "id -u; cat /proc/self/cgroup; ps -e -o pid=,comm=; readlink /proc/$$/cwd")
    assert seen.code == 0, seen.stderr
    lines = seen.stdout.decode().splitlines()
    assert lines[0] == "65534"  # the task's user, nobody
    assert any(record["id"] in line and "nested-" in line for line in lines), lines
    assert any(line.split() == ["1", "dockyard-init"] for line in lines), lines
    assert lines[-1] == record["sandbox"]  # its working directory is the task's sandbox
    assert "Debian" in run(settings, "plain", "cat", "/etc/os-release").stdout.decode()  # the host's files
    # The task's environment, but not what would make the session's root helpers load code.
    env = run(settings, "plain", "sh", "-c", 'echo "$FROM_TASK ${LD_PRELOAD:-none}"')
    assert env.stdout == b"task-env none\n" and b"preload" not in env.stderr


def test_a_memory_hog_is_killed_by_the_tasks_limit(framework: RawFramework, settings: ClientConfig) -> None:
    start_task(framework, "small", "sleep 600", mem=64)
    hog = run(settings, "small", "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1")
    assert hog.code == 137  # SIGKILLed by the kernel's OOM killer, for the task's cgroup
    status = framework.wait_terminal("small", timeout=30)
    # The limit is the task's: it counted the hog, and the task goes with it, as Mesos destroys a
    # container that reached its memory limit.
    assert (status["state"], status.get("reason")) == ("TASK_FAILED", "REASON_CONTAINER_LIMITATION_MEMORY")


def test_the_client_leaving_kills_the_nested_process_within_two_seconds(framework: RawFramework,
                                                                        settings: ClientConfig,
                                                                        cluster: Cluster) -> None:
    status = start_task(framework, "leave", "sleep 600")
    record = task_record(cluster, status)
    group = cgroups.Cgroup(record["cgroup"]["paths"])
    client = subprocess.Popen(client_argv(settings, "exec", "leave", "--", "sh", "-c", "sleep 3001 & sleep 3002"),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(_sleepers(group)) == 2, timeout=20, what="the nested processes")
        assert nested_groups(record)
        client.kill()
        client.wait()
        gone = time.monotonic()
        wait_for(lambda: not _sleepers(group) and not nested_groups(record), timeout=5,
                 what="the nested processes and their cgroup gone")
        assert time.monotonic() - gone <= 2.0
    finally:
        client.kill()
    assert run(settings, "leave", "true").code == 0  # the task itself lives on


def _sleepers(group: cgroups.Cgroup) -> list[int]:
    found = []
    for pid in group.procs():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if handle.read().split(b"\0")[:2] in ([b"sleep", b"3001"], [b"sleep", b"3002"]):
                    found.append(pid)
        except OSError:
            pass
    return found


def test_interactive_terminal_session(framework: RawFramework, settings: ClientConfig) -> None:
    """Driven through a pseudo-terminal, as a person at a shell: type, read, resize, Ctrl-C, exit."""
    start_task(framework, "tty", "sleep 600")
    terminal = Terminal(client_argv(settings, "exec", "-i", "-t", "tty", "--", "/bin/sh"), rows=24, columns=80)
    try:
        terminal.expect(b"# ")  # the remote shell's prompt
        terminal.send(b"echo sum-$((40+2)); stty size\r")
        terminal.expect(b"sum-42", b"24 80")
        terminal.resize(40, 132)
        terminal.until(b"stty size\r", b"40 132")  # the new size travels beside the keys: it may come second
        terminal.send(b"sleep 300\r")
        time.sleep(0.5)
        terminal.send(b"\x03")  # Ctrl-C reaches the remote terminal, whose shell interrupts sleep
        terminal.send(b"echo back-$((1+1))\r")
        terminal.expect(b"back-2")
        terminal.send(b"exit 5\r")
        assert terminal.wait() == 5
    finally:
        terminal.close()


def test_stdin_and_ctrl_c_without_a_terminal(framework: RawFramework, settings: ClientConfig) -> None:
    start_task(framework, "pipe", "sleep 600")
    piped = subprocess.run(client_argv(settings, "exec", "-i", "pipe", "--", "sh", "-c", "tr a-z A-Z; exit 4"),
                           cwd=ROOT, input=b"hello\nworld\n", capture_output=True, timeout=30)
    assert (piped.returncode, piped.stdout) == (4, b"HELLO\nWORLD\n"), piped.stderr
    script = "trap 'echo interrupted; exit 7' INT; echo ready; sleep 300 & wait"
    client = subprocess.Popen(client_argv(settings, "exec", "pipe", "--", "sh", "-c", script), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert client.stdout is not None
        assert client.stdout.readline() == b"ready\n"
        client.send_signal(signal.SIGINT)  # forwarded as SIGINT to the remote process
        out, err = client.communicate(timeout=20)
        assert (client.returncode, out) == (7, b"interrupted\n"), err
    finally:
        client.kill()


def test_attach_follows_a_tasks_output_until_it_ends(framework: RawFramework, settings: ClientConfig) -> None:
    script = "echo early; sleep 1; for i in 1 2 3; do echo line-$i; sleep 0.3; done; echo oops >&2; sleep 0.5"
    start_task(framework, "chatty", script)
    out, err = io.BytesIO(), io.BytesIO()
    assert attach.attach_task(settings, "chatty", stdout=out, stderr=err) == 0  # returns when the task ends
    assert out.getvalue().decode().split() == ["early", "line-1", "line-2", "line-3"]
    assert err.getvalue().endswith(b"oops\n")  # after what the command executor logged there


def test_exec_into_tasks_of_dockyards_warm_executor(cluster: Cluster, settings: ClientConfig, framework: RawFramework,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """The scheduler's apps run on one executor per agent, each task in its own container nested
    in the executor's: exec lands in the task it names, not in a neighbour."""
    framework.decline_all()  # the module's raw framework holds the agent's offers otherwise
    with SchedulerProcess.start(cluster, tmp_path_factory.mktemp("scheduler")) as marathon:
        app = {"id": "/exec/pair", "instances": 2, "cpus": 0.1, "mem": 32, "cmd": "sleep 600",
               "container": {"type": "MESOS", "docker": {"image": "busybox:exec"}}}
        marathon.call("POST", "/v2/apps", app)
        tasks = marathon.wait_until(lambda: marathon.call("GET", "/v2/apps/exec/pair/tasks")["tasks"],
                                    lambda found: len(found) == 2 and all(t["state"] == "TASK_RUNNING" for t in found),
                                    "two running instances", timeout=60)
        try:
            for task in tasks:
                seen = run(settings, task["id"], "sh", "-c", "echo $MESOS_TASK_ID; cat /etc/os-release")
                assert seen.stdout.decode().split("\n")[:2] == [task["id"], IMAGE_MARKER], seen
        finally:
            marathon.call("DELETE", "/v2/apps/exec/pair?force=true")


def test_master_views_carry_each_statuses_container(framework: RawFramework, cluster: Cluster) -> None:
    status = start_task(framework, "seen", "sleep 600")
    container = status["container_status"]["container_id"]
    executor = cluster.executor("seen", timeout=10)
    assert container == {"value": container["value"], "parent": {"value": executor["container"]}}
    legacy = cluster.get_json("/tasks")["tasks"]
    task = next(t for t in legacy if t["id"] == "seen")
    assert task["statuses"] and all(s["container_status"]["container_id"] == container for s in task["statuses"])
    assert task["statuses"][0]["state"] == "TASK_STARTING"  # the Mesos CLI launches under statuses[0]'s
    state = cluster.get_json("/master/state")
    task = next(t for f in state["frameworks"] for t in f["tasks"] if t["id"] == "seen")
    assert task["statuses"][-1]["container_status"]["container_id"] == container
    code, _, body = cluster.call("POST", "/api/v1", {"type": "GET_TASKS"})
    assert code == 200
    tasks = json.loads(body)["get_tasks"]["tasks"]
    task = next(t for t in tasks if t["task_id"]["value"] == "seen")
    assert task["statuses"][-1]["container_status"]["container_id"] == container


def test_clear_errors_for_tasks_that_cannot_be_entered(framework: RawFramework, settings: ClientConfig) -> None:
    with pytest.raises(attach.AttachError, match="no task 'no-such-task'"):
        run(settings, "no-such-task", "true")
    framework.launch(framework.offer(), [command_task("true", task_id="done-already")])
    assert framework.wait_terminal("done-already", timeout=30)["state"] == "TASK_FINISHED"
    with pytest.raises(attach.AttachError, match=r"task done-already has ended \(TASK_FINISHED\)"):
        run(settings, "done-already", "true")


def test_a_task_on_an_agent_that_is_gone(framework: RawFramework, settings: ClientConfig, cluster: Cluster) -> None:
    """The agent is killed: the master says it is disconnected, or the agent cannot be reached;
    either way one clear line, not a trace. Last in this module: the cluster has no agent after it."""
    start_task(framework, "stranded", "sleep 600", image=False)
    cluster.kill_agent(0)
    with pytest.raises(attach.AttachError, match=r"agent of task stranded .*disconnected|broke|cannot reach"):
        run(settings, "stranded", "true")


class Terminal:
    """A program on a pseudo-terminal of our own: what a person's terminal emulator does."""

    def __init__(self, argv: list[str], rows: int, columns: int) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(argv, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True, preexec_fn=_controlling_terminal)
        os.close(slave)
        self.seen = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, *wanted: bytes, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(w in self.seen for w in wanted):
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} not seen in {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                if b"\x1b[6n" in chunk:  # busybox's line editor asks where the cursor is
                    self.send(b"\x1b[1;1R")
                self.seen += chunk
        self.seen = b""

    def until(self, keys: bytes, wanted: bytes, attempts: int = 20) -> None:
        """Type `keys` until the answer holds `wanted`."""
        for _ in range(attempts):
            self.send(keys)
            try:
                self.expect(wanted, timeout=0.5)
                return
            except AssertionError:
                continue
        self.expect(wanted, timeout=0.5)

    def resize(self, rows: int, columns: int) -> None:
        """The window changes: the kernel tells the client (SIGWINCH), which tells the agent."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, "the client did not exit"
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    os.read(self.master, 65536)
                except OSError:
                    pass
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def _controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
