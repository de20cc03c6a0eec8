"""Hostile tasks under real runc: what a container tries against its host is refused, and the
host is unchanged afterwards.

The image is busybox plus `/bin/probe` (tests/containers/probe.c, built static here), which
makes one system call per name and prints ALLOWED or REFUSED with the errno.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from executor.containers import bundle, userns
from executor.containers.launcher import DEFAULT_PIDS
from executor.containers.records import work_tag
from executor.images.build import build_image, busybox_entries, file, image_config, layer_tar
from executor.images.store import ImageStore
from framework import cgroups
from framework.errors import ContainerError
from tests.containers.conftest import Launches, stdout_of, traces, wait_output
from tests.support import images
from tests.support.procs import wait_for

pytestmark = pytest.mark.root

IMAGE = "test/hostile:1"
APPLETS = [*images.APPLETS, "mknod", "insmod", "unshare", "nsenter", "sysctl", "mkfifo", "ln", "mv", "sha256sum",
           "arping", "chroot"]
# Each is refused by the seccomp profile with EPERM; clone3 with ENOSYS (glibc then uses clone).
SECCOMP_REFUSED = ["mount", "umount", "init_module", "finit_module", "delete_module", "unshare_user",
                   "unshare_mount", "unshare_net", "clone_newuser", "setns", "keyctl", "add_key", "request_key",
                   "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "ptrace", "process_vm_readv",
                   "kexec_load", "kexec_file_load", "vsock", "open_by_handle_at", "personality", "reboot",
                   "swapon", "settimeofday", "acct", "iopl", "syslog", "pivot_root"]


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    compiler = shutil.which("gcc") or shutil.which("cc")
    # The Makefile installs gcc and libc6-dev: a missing compiler is a broken setup, not a skip.
    assert compiler is not None, "a C compiler (gcc, with libc6-dev for -static) is needed to build the probe"
    out = tmp_path_factory.mktemp("probe") / "probe"
    built = subprocess.run([compiler, "-static", "-O2", "-o", str(out), str(Path(__file__).with_name("probe.c"))],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"cannot build the static probe: {built.stderr.strip()[:300]}"
    return out.read_bytes()


@pytest.fixture(scope="module")
def hostile_image(shared_work: Path, probe_binary: bytes, tmp_path_factory: pytest.TempPathFactory) -> str:
    store = ImageStore(shared_work)
    if store.resolve(IMAGE) is None:
        layers = [layer_tar(busybox_entries(APPLETS)), layer_tar([file("bin/probe", probe_binary, mode=0o755)])]
        archive = build_image(layers, image_config(cmd=["/bin/sh"])).write_docker_archive(
            tmp_path_factory.mktemp("hostile") / "hostile.tar", IMAGE)
        store.load(archive)
    return IMAGE


@pytest.fixture
def hostile(launches: Launches, hostile_image: str) -> Launches:
    launches.image = hostile_image
    return launches


def run(launches: Launches, script: str, **kwargs) -> str:
    container = launches.launch(script, **kwargs)
    result = container.wait(60)
    assert result is not None, "the task did not end"
    return stdout_of(container) + (Path(container.spec.sandbox) / "stderr").read_text()


def probes(output: str) -> dict[str, int | None]:
    """name -> errno (None when the call was allowed)."""
    found: dict[str, int | None] = {}
    for line in output.splitlines():
        words = line.split()
        if words[:1] == ["ALLOWED"]:
            found[words[1]] = None
        elif words[:1] == ["REFUSED"]:
            found[words[1]] = int(words[2])
    return found


def loaded_modules() -> str:
    """The host's loaded modules ("" on a kernel built without module support)."""
    path = Path("/proc/modules")
    return path.read_text() if path.exists() else ""


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_system_calls_beyond_the_profile_are_refused(hostile: Launches, monkeypatch: pytest.MonkeyPatch) -> None:
    """Module loading, keyrings, kexec, BPF, perf, mounts, namespaces, io_uring, userfaultfd and
    ptrace fail with EPERM; clone3 with ENOSYS, as Docker answers it. Ordinary calls still work.
    The same probe unconfined gets through where the kernel alone would let it: the profile is
    what refuses."""
    modules = loaded_modules()
    wanted = [*SECCOMP_REFUSED, "clone3", "fork", "tcp_socket", "chroot"]
    found = probes(run(hostile, "probe " + " ".join(wanted)))
    assert set(found) == set(wanted), found
    assert {name: found[name] for name in SECCOMP_REFUSED} == {name: errno.EPERM for name in SECCOMP_REFUSED}
    assert found["clone3"] == errno.ENOSYS
    assert found["fork"] is None and found["tcp_socket"] is None and found["chroot"] is None
    assert loaded_modules() == modules
    monkeypatch.setenv("DOCKYARD_SECCOMP_PROFILE", "unconfined")
    unconfined = probes(run(hostile, "probe keyctl add_key personality clone3 userfaultfd"))
    assert unconfined["keyctl"] is None and unconfined["add_key"] is None and unconfined["personality"] is None
    assert unconfined["clone3"] is None and unconfined["userfaultfd"] is None


def test_proc_sys_and_the_cgroup_filesystem_are_read_only(hostile: Launches) -> None:
    domainname = Path("/proc/sys/kernel/domainname").read_text()
    script = ("echo evil > /proc/sys/kernel/domainname || echo ro-sysctl; sysctl -w kernel.domainname=evil "
              "|| echo ro-sysctl2; echo b > /proc/sysrq-trigger || echo ro-sysrq; "
              "echo 100000 > /sys/fs/cgroup/pids/pids.max || echo ro-pids; "
              "mkdir /sys/fs/cgroup/memory/evil || echo ro-cgroup; cat /proc/self/cgroup; "
              "cat /proc/kcore | head -c 1 | wc -c; cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; "
              "ls /sys/firmware | wc -l; echo 1 > /proc/sys/vm/drop_caches || echo ro-vm; sleep 1")
    container = hostile.launch(script)
    wait_output(container, "ro-vm")
    limit = (container.group.dir("pids") / "pids.max").read_text().strip()
    container.wait(30)
    out = stdout_of(container)
    assert {"ro-sysctl", "ro-sysctl2", "ro-sysrq", "ro-pids", "ro-cgroup", "ro-vm"} <= set(out.split())
    assert Path("/proc/sys/kernel/domainname").read_text() == domainname
    assert limit == str(DEFAULT_PIDS)
    # its own cgroup namespace: the container's cgroup is its root, nothing of the host's tree shows
    cgroup_lines = [line for line in out.splitlines() if line.count(":") >= 2 and line.split(":")[0].isdigit()]
    assert cgroup_lines and all(line.endswith(":/") for line in cgroup_lines), cgroup_lines
    masked = [line for line in out.splitlines() if line.strip().isdigit()]
    assert masked == ["0", "0", "0", "0"], out  # kcore, keys, timer_list: empty; /sys/firmware: no entries


def test_mount_and_device_nodes_are_refused(hostile: Launches) -> None:
    script = ("mount -t tmpfs none /mnt && echo MOUNTED; mount -o remount,rw /proc/sys && echo REMOUNTED; "
              "mknod /tmp/disk b 8 0; dd if=/tmp/disk bs=512 count=1 of=/dev/null && echo READ-DISK; "
              "mknod /tmp/mem c 1 1; dd if=/tmp/mem bs=1 count=1 of=/dev/null && echo READ-MEM; "
              "mknod /mnt/mesos/sandbox/null c 1 3 && (echo x > /mnt/mesos/sandbox/null && echo SANDBOX-DEV); "
              "echo done")
    out = run(hostile, script)
    assert "done" in out
    assert not {"MOUNTED", "REMOUNTED", "READ-DISK", "READ-MEM", "SANDBOX-DEV"} & set(out.split()), out


def test_modules_cannot_be_loaded(hostile: Launches) -> None:
    before = loaded_modules()
    out = run(hostile, "insmod /bin/probe && echo LOADED; probe init_module finit_module; echo done")
    assert "LOADED" not in out and "done" in out
    assert probes(out) == {"init_module": errno.EPERM, "finit_module": errno.EPERM}
    assert loaded_modules() == before


def test_host_processes_are_out_of_sight_and_reach(hostile: Launches) -> None:
    me = os.getpid()
    script = (f"ls /proc | grep -c '^[0-9]'; kill -0 {me} && echo SIGNALLED; cat /proc/{me}/environ && echo READ; "
              f"probe ptrace={me} ptrace=1 process_vm_readv={me}; ps -o pid,comm | wc -l; echo done")
    out = run(hostile, script)
    assert "SIGNALLED" not in out and "READ" not in out.split() and "done" in out, out
    assert int(out.split()[0]) <= 6, out  # its init, the shell, ls, grep
    found = probes(out)
    assert found == {"ptrace": errno.EPERM, "process_vm_readv": errno.EPERM}, out


def test_the_agents_work_dir_and_the_host_root_are_unreachable(hostile: Launches) -> None:
    work = hostile.work_dir
    script = (f"ls {work} && echo SEES-WORK; cat {work}/images/* && echo READS-STORE; "
              f"ls /proc/1/root/{work} && echo VIA-PROC-ROOT; cat /proc/1/root/etc/hostname; "
              "chroot /proc/1/root ls / > /dev/null; cat /etc/os-release && echo HOST-ETC; echo done")
    out = run(hostile, script)
    assert "done" in out
    assert not {"SEES-WORK", "READS-STORE", "VIA-PROC-ROOT", "HOST-ETC"} & set(out.split()), out


def test_proc_self_exe_tricks_leave_the_hosts_binaries_alone(hostile: Launches) -> None:
    """CVE-2019-5736's shape: the task writes every /proc/<pid>/exe it can see while the runtime
    enters the container again and again (`runc exec`, as a COMMAND health check does)."""
    runc, init = shutil.which("runc"), bundle.INIT_BINARY
    assert runc is not None
    before = {runc: sha256(runc), init: sha256(init)}
    container = hostile.launch("echo x > /proc/self/exe || echo self-refused; echo y > /dev/init || echo init-refused; "
                               "echo ready; while :; do for f in /proc/[0-9]*/exe; do (echo evil > $f) 2>/dev/null; "
                               "done; done")
    wait_output(container, "ready")
    for _ in range(5):
        subprocess.run(container.exec_argv(["/bin/true"]), capture_output=True, timeout=30)
    container.signal(signal.SIGKILL)
    container.wait(30)
    assert {runc: sha256(runc), init: sha256(init)} == before
    assert "self-refused" in stdout_of(container) and "init-refused" in stdout_of(container)


def test_a_task_swapping_its_sandbox_for_links_gets_no_host_file_out(hostile: Launches, tmp_path: Path) -> None:
    """The task swaps a directory of its sandbox for a link to `/etc` (the host's, seen from the
    agent) in a loop while the agent's files API is asked for that directory's `shadow`."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from framework.local.agent.files_api import FilesApi

    agent_work = tmp_path / "agent"
    hostile.base = agent_work / "slaves" / "S1" / "frameworks" / "F1" / "executors" / "E1" / "runs"
    host_shadow = Path("/etc/shadow").read_text() if Path("/etc/shadow").exists() else None
    swapper = hostile.launch("cd /mnt/mesos/sandbox && mkdir d && echo decoy > d/shadow && echo ready && "
                             "while :; do mv d d.old; ln -s /etc d; rm d; mv d.old d; done")
    wait_output(swapper, "ready")
    api = FilesApi(agent_work)
    app = Starlette(routes=[Route("/files/read", api.read), Route("/files/browse", api.browse),
                            Route("/files/download", api.download)])
    target = str(Path(swapper.spec.sandbox) / "d" / "shadow")
    statuses: dict[int, int] = {}
    with TestClient(app) as client:
        for number in range(300):
            route = ("/files/read", "/files/download", "/files/browse")[number % 3]
            response = client.get(route, params={"path": target, "offset": 0})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert "root:" not in response.text and (host_shadow is None or host_shadow not in response.text)
    swapper.signal(signal.SIGKILL)
    swapper.wait(30)
    assert statuses.get(403, 0) > 0, statuses  # the swap was caught in the act, and refused
    assert statuses.get(200, 0) > 0, statuses  # the decoy itself was served while in place


def test_raw_and_packet_sockets_are_refused(hostile: Launches) -> None:
    """Without CAP_NET_RAW nothing on the host network is sniffed or forged; a container with
    its own network may still ping with unprivileged ICMP echo sockets (as Docker sets it)."""
    found = probes(run(hostile, "probe raw_socket packet_socket vsock tcp_socket"))
    assert found == {"raw_socket": errno.EPERM, "packet_socket": errno.EPERM, "vsock": errno.EPERM,
                     "tcp_socket": None}
    out = run(hostile, "arping -c 1 -w 1 -I lo 127.0.0.1 || echo no-arping; cat /proc/sys/net/ipv4/ping_group_range",
              container={"network_infos": [{"name": "none"}]})
    assert "no-arping" in out and "0\t2147483647" in out, out


def test_no_user_namespace_can_be_made_inside(hostile: Launches) -> None:
    out = run(hostile, "unshare -U true && echo UNSHARED; unshare -r id && echo ROOTLESS; "
                       "probe unshare_user clone_newuser clone3 setns; echo done")
    assert "UNSHARED" not in out and "ROOTLESS" not in out and "done" in out
    assert probes(out) == {"unshare_user": errno.EPERM, "clone_newuser": errno.EPERM, "clone3": errno.ENOSYS,
                           "setns": errno.EPERM}


def test_a_fork_bomb_is_held_and_the_limit_cannot_be_lifted(hostile: Launches) -> None:
    """The bomb stops at its container's pids limit (the default one is checked with /proc/sys
    above); a task cannot ask for no limit at all."""
    host_before = sum(1 for name in os.listdir("/proc") if name.isdigit())
    bomb = hostile.launch("(f() { f | f & }; f) 2>/dev/null & exec sleep 1000",
                          container={"dockyard": {"pids_limit": 200}}, resources={"cpus": 0.5, "mem": 256})
    peak = 0

    def held() -> bool:
        nonlocal peak
        peak = max(peak, bomb.stats().get("processes", 0))
        return peak >= 150

    wait_for(held, timeout=60, interval=0.02, what="the bomb reaching its pids limit")
    assert peak <= 200 + 2
    assert sum(1 for name in os.listdir("/proc") if name.isdigit()) < host_before + 400
    assert bomb.wait(0) is None, "the task itself lives on; only its forks were refused"
    bomb_id = bomb.id
    bomb.destroy()
    assert traces(hostile.work_dir, bomb_id) == []
    for value in (0, -1, "many"):
        with pytest.raises(ContainerError, match="pids_limit"):
            hostile.launch("true", container={"dockyard": {"pids_limit": value}})


def test_privileged_and_host_paths_need_the_agents_leave(hostile: Launches, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ContainerError, match="privileged containers are not allowed"):
        hostile.launch("true", container={"docker": {"privileged": True}})
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("shared\n")
    volume = {"volumes": [{"container_path": "/data", "host_path": str(data), "mode": "RO"}]}
    with pytest.raises(ContainerError, match="not under the agent's --allowed-host-paths"):
        hostile.launch("true", container=volume)
    monkeypatch.setenv("DOCKYARD_ALLOWED_HOST_PATHS", str(tmp_path))
    assert "shared" in run(hostile, "cat /data/in", container=volume)
    os.symlink("/etc", data / "etc-link")
    os.symlink(hostile.work_dir, data / "work-link")
    for host in ("/", "/etc", "/proc/1", "/sys", "/dev", str(data / "etc-link"), str(data / "work-link"),
                 str(hostile.work_dir), str(hostile.work_dir / "images")):
        with pytest.raises(ContainerError, match="may never be mounted|work dir|allowed-host-paths"):
            hostile.launch("true", container={"volumes": [{"container_path": "/x", "host_path": host}]})
    monkeypatch.setenv("DOCKYARD_ALLOW_PRIVILEGED", "1")
    out = run(hostile, "grep -E 'CapEff|Seccomp:' /proc/self/status", container={"docker": {"privileged": True}})
    own = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("CapBnd:"))
    assert f"CapEff:\t{own}" in out and "Seccomp:\t0" in out  # every capability the host has


@pytest.fixture
def traversable_work(busybox: str) -> Iterator[Path]:
    """A directory others may traverse (runc sets a user-namespaced container up as its mapped
    root) with a work dir whose store holds busybox; pytest's own temporary root is root's only."""
    base = Path(tempfile.mkdtemp(prefix="dockyard-userns-", dir="/var/tmp"))
    os.chmod(base, 0o711)
    try:
        ImageStore(base / "work").pull(busybox)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_user_namespace_makes_container_root_nobody_on_the_host(traversable_work: Path, busybox: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_ISOLATION", "cgroups/cpu,cgroups/mem,namespaces/user")
    launches = Launches(traversable_work / "work", traversable_work, busybox)
    mapping = userns.id_map()
    try:
        container = launches.launch("id -u; cat /proc/self/uid_map; echo hi > /etc/written && echo wrote-etc; "
                                    "echo s > /mnt/mesos/sandbox/f && echo wrote-sandbox; echo owner=$(stat -c %u:%g /bin/busybox); "
                                    "unshare -U true || echo no-unshare; echo ready; exec sleep 60")
        out = wait_output(container, "ready")
        host_uid = os.stat(f"/proc/{container.pid}").st_uid
        assert out.split()[0] == "0" and f"0 {mapping.host_uid} {mapping.size}" in " ".join(out.split()[1:4])
        assert "wrote-etc" in out and "wrote-sandbox" in out and "no-unshare" in out
        assert "owner=0:0" in out  # the image's files are root's inside, as in the layer
        assert host_uid == mapping.host_uid  # the task's processes belong to an unprivileged host user
        assert os.stat(Path(container.spec.sandbox) / "f").st_uid == mapping.host_uid
        container_id = container.id
        container.destroy()
        assert traces(launches.work_dir, container_id) == []
    finally:
        launches.cleanup()


def test_a_user_namespace_needs_a_reachable_work_dir(launches: Launches, monkeypatch: pytest.MonkeyPatch) -> None:
    def ours() -> set[Path]:
        return {c for s in cgroups.find_subtrees() for c in s.glob(f"dy-{work_tag(launches.work_dir)}-*")}

    before = ours()
    monkeypatch.setenv("DOCKYARD_ISOLATION", "cgroups/cpu,cgroups/mem,namespaces/user")
    with pytest.raises(ContainerError, match="not searchable by other users"):
        launches.launch("true")
    assert ours() <= before  # nothing half-made is left
