"""Containers under real runc with real cgroups: what the task sees, limits, clean-up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor import cleanup
from executor.containers.records import work_tag
from executor.containers.limits import DISK, MEMORY
from framework import cgroups
from framework.errors import ContainerError
from tests.containers.conftest import Launches, stdout_of, traces, wait_output
from tests.support.procs import REPO, wait_for

pytestmark = pytest.mark.root


def neighbour(launches: Launches):
    """A task that must keep running, undisturbed, beside a misbehaving one."""
    container = launches.launch("while true; do echo tick; sleep 0.2; done", name="neighbour",
                                resources={"cpus": 0.2, "mem": 32})
    wait_output(container, "tick")
    return container


def assert_undisturbed(container) -> None:
    assert container.wait(0) is None, "the neighbour task stopped"
    count = stdout_of(container).count("tick")
    wait_for(lambda: stdout_of(container).count("tick") > count, timeout=10, what="the neighbour ticking on")


def test_task_sees_image_env_cwd_sandbox_and_is_confined(launches: Launches) -> None:
    script = ("echo env=$FROM_IMAGE,$OVERRIDE,$FROM_TASK,$MESOS_SANDBOX; echo cwd=$(pwd); echo pid=$$ init=$(cat /proc/1/comm); "
              "echo id=$(id -u):$(id -g); cat /etc/marker; echo hello > /mnt/mesos/sandbox/from-task; "
              "grep -E 'NoNewPrivs|Seccomp:|CapEff' /proc/self/status; echo procs=$(ls /proc | grep -c '^[0-9]'); "
              "cat /proc/kcore 2>/dev/null | wc -c; echo x > /proc/sys/kernel/hostname 2>/dev/null || echo ro-proc; "
              "touch /bin/new-file && echo rootfs-writable; echo x > /dev/init 2>/dev/null || echo ro-init; exit 3")
    container = launches.launch(script, env={"FROM_TASK": "task", "OVERRIDE": "task"})
    result = container.wait(30)
    out = stdout_of(container)
    assert result is not None and result.exit_code == 3 and result.message == "Command exited with status 3"
    assert "env=yes,task,task,/mnt/mesos/sandbox" in out
    assert "cwd=/tmp" in out and "id=0:0" in out and "layer two" in out
    assert "init=init" in out and "pid=1 " not in out  # PID 1 is the init (tini), the task its child
    assert (Path(container.spec.sandbox) / "from-task").read_text() == "hello\n"
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    assert "CapEff:\t00000000a80405fb" in out  # Docker's default set less CAP_NET_RAW, nothing more
    procs = int(out.split("procs=")[1].split()[0])
    assert procs <= 6  # its own PID namespace: the init, sh, the subshell, ls, grep
    assert "ro-proc" in out and "rootfs-writable" in out and "ro-init" in out
    stats = container.stats()
    assert {"cpus_user_time_secs", "cpus_system_time_secs", "cpus_limit", "mem_limit_bytes",
            "processes"} <= set(stats)
    assert stats["mem_limit_bytes"] == 128 * 1024 * 1024 and stats["cpus_limit"] == 1.0
    # the image's layers are untouched: writes went to the private upper dir
    assert (Path(container.spec.sandbox) / ".rootfs" / "upper" / "bin" / "new-file").exists()
    container_id = container.id
    container.destroy()
    container.destroy()
    assert traces(launches.work_dir, container_id) == []
    assert not (Path(container.spec.sandbox) / ".rootfs").exists()


def test_entrypoint_cmd_and_arguments(launches: Launches) -> None:
    plain = launches.launch({"shell": False, "value": "/bin/echo", "arguments": ["echo", "a", "b"]})
    assert plain.wait(30).exit_code == 0 and stdout_of(plain) == "a b\n"
    args = launches.launch({"shell": False, "arguments": ["/bin/sh", "-c", "echo from-args"]})
    assert args.wait(30).exit_code == 0 and stdout_of(args) == "from-args\n"
    default = launches.launch({"shell": False})  # image Cmd: /bin/sh with no stdin -> exits 0
    assert default.wait(30).exit_code == 0


def test_volumes_and_isolated_network(launches: Launches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_ALLOWED_HOST_PATHS", str(tmp_path))  # the agent's --allowed-host-paths
    host_dir = tmp_path / "host-data"
    host_dir.mkdir()
    (host_dir / "in").write_text("from host\n")
    volumes = [{"container_path": "/data", "host_path": str(host_dir), "mode": "RO"},
               {"containerPath": "cache", "hostPath": "cache-dir", "mode": "RW"}]
    script = ("cat /data/in; touch /data/nope 2>/dev/null || echo ro-volume; "
              "echo kept > /mnt/mesos/sandbox/cache/file; ls /sys/class/net")
    container = launches.launch(script, container={"volumes": volumes, "network_infos": [{"name": "none"}]})
    assert container.wait(30).exit_code == 0
    out = stdout_of(container)
    assert "from host" in out and "ro-volume" in out
    assert out.strip().splitlines()[-1] == "lo"
    assert (Path(container.spec.sandbox) / "cache-dir" / "file").read_text() == "kept\n"
    assert not (host_dir / "nope").exists()
    host = launches.launch("ls /sys/class/net")
    assert host.wait(30).exit_code == 0
    assert sorted(stdout_of(host).split()) == sorted(os.listdir("/sys/class/net"))


def test_http_and_tcp_checks_of_a_container_with_its_own_network_probe_inside_it(
        launches: Launches, monkeypatch: pytest.MonkeyPatch) -> None:
    """As Mesos's checker enters the task's network namespace: a server on the loopback of a
    `none`-network container is healthy to the container's checks and unreachable from the host."""
    import threading

    monkeypatch.setenv("DOCKYARD_ALLOWED_HOST_PATHS", str(launches.base))  # the agent's --allowed-host-paths

    from executor.health import build_check
    from tests.support.procs import free_port

    port = free_port()  # free on the host too: a host-side probe must find nothing there
    www = Path(launches.base) / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("inside\n")
    container = launches.launch(f"httpd -f -p 127.0.0.1:{port} -h /srv",
                                container={"network_infos": [{"name": "none"}],
                                           "volumes": [{"container_path": "/srv", "host_path": str(www),
                                                        "mode": "RO"}]})
    http = {"type": "HTTP", "http": {"port": port, "path": "/"}, "timeout_seconds": 2}
    tcp = {"type": "TCP", "tcp": {"port": port}, "timeout_seconds": 2}

    def in_own_thread(check) -> tuple[bool, str]:  # the probe's thread enters the namespace
        result: list = []

        def probe() -> None:
            try:
                result.append(check())
            except Exception as error:  # noqa: BLE001 - a probe that raises is unhealthy
                result.append((False, repr(error)))
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(10)
        return result[0]

    inside = [build_check(spec, [], network_pid=lambda: container.pid) for spec in (http, tcp)]
    wait_for(lambda: in_own_thread(inside[0])[0], timeout=20, what="httpd answering inside the container")
    assert in_own_thread(inside[1])[0]
    for spec in (http, tcp):  # the same checks from the host's network see nothing
        healthy, reason = in_own_thread(build_check(spec, []))
        assert not healthy, reason
    container.signal(signal.SIGKILL)
    container.wait(30)


def test_memory_hog_is_oom_killed_and_reported(launches: Launches) -> None:
    other = neighbour(launches)
    hog = launches.launch("dd if=/dev/zero of=/dev/null bs=200M count=1; echo survived; sleep 60",
                          resources={"cpus": 1, "mem": 32})
    result = hog.wait(30)  # the OOM kill of one process ends the whole task, as in Mesos
    assert result is not None and result.reason == MEMORY
    assert "Memory limit exceeded" in result.message and "32MB" in result.message
    assert_undisturbed(other)


def test_fork_bomb_is_held_by_the_pids_limit(launches: Launches) -> None:
    other = neighbour(launches)
    # The bomb runs in a subshell; the task's own process then needs no fork (`exec sleep`),
    # so a refused fork can only ever hit the bomb.
    bomb = launches.launch("(f() { f | f & }; f) & exec sleep 1000",
                           container={"dockyard": {"pids_limit": 64}})
    # The bomb peaks at the limit for a fraction of a second, then its forks fail and it
    # collapses (the task's sleep survives): sample while waiting for the refusals.
    peak = 0

    def refused() -> bool:
        nonlocal peak
        peak = max(peak, bomb.stats().get("processes", 0))
        return "can't fork" in (Path(bomb.spec.sandbox) / "stderr").read_text(errors="replace")

    wait_for(refused, timeout=30, interval=0.01, what="forks refused by the pids limit")
    # The census lists cgroup.procs while processes fork and die: one that has just exited
    # may still be listed beside the one charged in its place. Unlimited, it would be thousands.
    assert 0 < peak <= 64 + 2
    assert bomb.wait(0) is None, "the task itself lives on; only its forks were refused"
    assert_undisturbed(other)
    bomb_id = bomb.id
    bomb.destroy()
    assert traces(launches.work_dir, bomb_id) == []


def test_cpu_spinner_is_held_to_its_quota(launches: Launches) -> None:
    other = neighbour(launches)
    spinner = launches.launch("(while :; do :; done) & while :; do :; done", resources={"cpus": 0.5, "mem": 32})

    def cpu() -> float:
        stats = spinner.stats()
        return stats["cpus_user_time_secs"] + stats["cpus_system_time_secs"]

    wait_for(lambda: cpu() > 0.2, timeout=10, what="the spinner using CPU")
    start_cpu, start = cpu(), time.monotonic()
    wait_for(lambda: time.monotonic() - start > 2.0, timeout=5, what="a two second window")
    used = (cpu() - start_cpu) / (time.monotonic() - start)
    # held to its quota (two spinners would take both cores); the floor only shows it ran,
    # since other work on a shared 2-core machine may take some of its share
    assert 0.15 < used < 0.6, f"spinner used {used:.2f} CPUs with a 0.5 quota"
    assert spinner.stats()["cpus_limit"] == 0.5
    assert_undisturbed(other)


def test_disk_filler_is_stopped_at_its_limit(launches: Launches) -> None:
    other = neighbour(launches)
    filler = launches.launch("i=0; while [ $i -lt 400 ]; do dd if=/dev/zero of=/root/f$i bs=1M count=1 "
                             "2>/dev/null; i=$((i+1)); sleep 0.01; done; echo finished",
                             resources={"cpus": 1, "mem": 64, "disk": 20})
    result = filler.wait(60)
    assert result is not None and result.reason == DISK
    assert "exceeds quota" in result.message
    assert "finished" not in stdout_of(filler)
    assert_undisturbed(other)


def test_kill_reaches_the_task_and_grace_is_honoured(launches: Launches) -> None:
    polite = launches.launch("trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done")
    wait_output(polite, "ready")
    polite.signal(signal.SIGTERM)
    result = polite.wait(20)
    assert result is not None and result.exit_code == 0 and "got TERM" in stdout_of(polite)
    # TERM ignored (children inherit that): only the grace period's SIGKILL ends it
    stubborn = launches.launch("trap '' TERM; echo ready; while true; do sleep 0.1; done")
    wait_output(stubborn, "ready")
    stubborn.signal(signal.SIGTERM)
    assert stubborn.wait(0.5) is None
    stubborn.signal(signal.SIGKILL)
    result = stubborn.wait(20)
    assert result is not None and result.signal == signal.SIGKILL
    assert result.message == "Command terminated with signal SIGKILL"


def test_runtime_errors_are_translated(launches: Launches) -> None:
    def listing(path: Path) -> set[str]:
        return {p.name for p in path.iterdir()} if path.exists() else set()

    containers, runtime = launches.work_dir / "containers", launches.work_dir / "runtime" / "runc"
    before, runtime_before = listing(containers), listing(runtime)
    with pytest.raises(ContainerError, match="runc could not start the container: .*/no/such/binary"):
        launches.launch({"shell": False, "value": "/no/such/binary"})
    # nothing half-made is left behind: record, runtime state, cgroups
    assert listing(containers) == before and listing(runtime) == runtime_before
    prefix = f"dy-{work_tag(launches.work_dir)}-task-{launches.count}-"
    assert [c for s in cgroups.find_subtrees() for c in s.glob(prefix + "*")] == []


def test_crun_is_selectable(launches: Launches) -> None:
    try:
        container = launches.launch("echo via-crun", runtime="crun")
    except ContainerError as error:
        if "hybrid" in str(error) or "crun" in str(error):
            pytest.skip(f"crun cannot run containers on this host: {error}")
        raise
    assert container.wait(30).exit_code == 0 and stdout_of(container) == "via-crun\n"


CRASHER = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from executor.containers.launcher import ContainerLauncher
from executor.launcher import LaunchSpec
spec = LaunchSpec(task_id="orphan", command={{"value": "echo up; exec sleep 1000"}}, env={{}},
                  sandbox=Path({sandbox!r}), resources={{"cpus": 0.5, "mem": 32}},
                  container={{"mesos": {{"image": {{"docker": {{"name": {image!r}}}}}}}}},
                  work_dir=Path({work!r}))
container = ContainerLauncher().launch(spec)
print(container.id, container.pid, flush=True)
time.sleep(1000)
"""


def test_cleanup_after_kill_9_removes_everything(busybox: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    script = CRASHER.format(repo=str(REPO), sandbox=str(tmp_path / "sandbox"), image=busybox, work=str(work))
    executor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = executor.stdout.readline().split()
        assert line, "the crashing executor did not start its container"
        container_id, pid = line[0], int(line[1])
        wait_for(lambda: "up" in (tmp_path / "sandbox" / "stdout").read_text(), timeout=20, what="task output")
    finally:
        executor.kill()  # kill -9: nothing of the container is cleaned up
        executor.wait(10)
    assert os.path.exists(f"/proc/{pid}") and traces(work, container_id) != []
    report = cleanup.run(work)
    assert report["errors"] == [] and report["containers"] == 1
    assert traces(work, container_id) == []
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10, what="the orphan task to be gone")
    assert cleanup.run(work)["containers"] == 0


def test_cleanup_takes_a_record_that_lacks_fields(tmp_path: Path) -> None:
    work = tmp_path / "work"
    stray = work / "containers" / "dy-stray"
    stray.mkdir(parents=True)
    (stray / "state.json").write_text('{"id": "dy-stray", "layers": []}')  # no dir, no kind
    (work / "containers" / "README").write_text("not a container")  # and a file is none at all
    report = cleanup.run(work)
    assert report["errors"] == [] and report["containers"] == 1
    assert not stray.exists() and (work / "containers" / "README").exists()


def test_prune_keeps_layers_a_container_uses(busybox: str, tmp_path: Path) -> None:
    from executor.images.store import ImageStore
    from tests.containers.conftest import Launches

    work = tmp_path / "work"
    store = ImageStore(work)
    store.pull(busybox)
    launches = Launches(work, tmp_path, busybox)
    try:
        running = launches.launch("echo up; exec sleep 60")
        wait_output(running, "up")
        layers = [store.layer_dir(key) for key in running.layers]
        store.remove(busybox)  # untag: prune runs, but the running container holds its layers
        assert all(layer.is_dir() for layer in layers)
        assert running.wait(0) is None
    finally:
        launches.cleanup()
    store.prune()
    assert not any(layer.exists() for layer in layers)


def test_image_user_and_entrypoint(launches: Launches, tmp_path: Path) -> None:
    from executor.images.store import ImageStore
    from tests.support import images

    config = {"User": "nobody", "Entrypoint": ["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g) args=$0,$1"],
              "Cmd": ["from-cmd"], "WorkingDir": "/"}
    archive = images.busybox_image(config=config).write_docker_archive(tmp_path / "user.tar", "local/user:1")
    ImageStore(launches.work_dir).load(archive)
    launches.image = "local/user:1"
    default = launches.launch({"shell": False})
    assert default.wait(30).exit_code == 0
    assert stdout_of(default) == "uid=65534 gid=65534 args=from-cmd,\n"
    overridden = launches.launch({"shell": False, "arguments": ["one", "two"]})
    assert overridden.wait(30).exit_code == 0
    assert stdout_of(overridden) == "uid=65534 gid=65534 args=one,two\n"


def test_httpd_serves_on_a_host_port(launches: Launches) -> None:
    import urllib.request

    from tests.support.procs import free_port

    port = free_port()
    server = launches.launch("exec httpd -f -p 127.0.0.1:$PORT0 -h /www", env={"PORT0": str(port)},
                             resources={"cpus": 0.5, "mem": 32, "ports": 1})

    def page() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as response:
            return response.read().decode()

    assert wait_for(page, timeout=20, what="busybox httpd answering") == "hello from busybox httpd\n"
    assert server.wait(0) is None
