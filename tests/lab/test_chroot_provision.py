"""node.sh, the whole Vagrant provisioning of a node, run in a Debian chroot.

The root filesystem is built once with debootstrap (Debian's own bootstrap,
from the Debian archive the host uses) and cached; each run gets a throw-away
overlay on top. It stops short of what needs a VM: systemd is not PID 1 in a
chroot, so units are written and checked but not started. Slow: the first run
debootstraps, every run installs packages and dockyard with pip.
"""
from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle
from tests.support.procs import REPO
from tests.support.security import Endpoint, client_context

CACHE = Path(os.environ.get("DOCKYARD_TEST_CACHE", "/var/cache/dockyard-tests"))
ROOTFS = CACHE / "rootfs-bookworm"
MIRROR = "http://deb.debian.org/debian"
HOST_CA = "/etc/host-ca-bundle.crt"

pytestmark = [pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(shutil.which("debootstrap") is None,
                                 reason="debootstrap is not installed (make debs adds it)")]


def run(*argv: str, timeout: float = 1200, **kwargs: object) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def cached_rootfs() -> Path:
    """debootstrap once; a marker file says the tree is complete."""
    marker = ROOTFS / ".dockyard-complete"
    if marker.exists():
        return ROOTFS
    partial = CACHE / "rootfs-bookworm.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run("debootstrap", "--variant=minbase", "bookworm", str(partial), MIRROR, timeout=1800)
    (partial / ".dockyard-complete").touch()
    shutil.rmtree(ROOTFS, ignore_errors=True)
    partial.rename(ROOTFS)
    return ROOTFS


@pytest.fixture
def chroot(tmp_path: Path) -> Iterator[Path]:
    """An overlay of the cached rootfs with /proc, /dev and the checkout at /vagrant."""
    lower = cached_rootfs()
    upper, work, merged = (tmp_path / name for name in ("upper", "work", "merged"))
    for folder in (upper, work, merged):
        folder.mkdir()
    mounts: list[Path] = []
    try:
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged))
        mounts.append(merged)
        for source, target, options in (("proc", "proc", ["-t", "proc"]),
                                        ("/dev", "dev", ["--rbind"]),
                                        (str(REPO), "vagrant", ["--bind"])):
            (merged / target).mkdir(exist_ok=True)
            run("mount", *options, source, str(merged / target))
            mounts.append(merged / target)
        shutil.copy("/etc/resolv.conf", merged / "etc/resolv.conf")
        # This machine reaches PyPI through a proxy its own CA bundle trusts; a VM
        # here would need the same, so the chroot's pip gets the host's bundle.
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", merged / HOST_CA.lstrip("/"))
        yield merged
    finally:
        for point in reversed(mounts):
            subprocess.run(["umount", "-R", "-l", str(point)], capture_output=True, timeout=60)
    assert str(merged) not in Path("/proc/self/mountinfo").read_text()


def in_chroot(root: Path, *argv: str, env: dict[str, str] | None = None,
              timeout: float = 1500) -> subprocess.CompletedProcess:
    """`argv` in the chroot; node.sh there secures the node from a security seed (as the
    Vagrantfile gives every node one), written here once per chroot."""
    seed = root / "root" / "security-seed"
    if not seed.exists():
        seed.write_bytes(secrets.token_bytes(32))
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "PIP_CERT": HOST_CA, "DOCKYARD_SEED_FILE": "/root/security-seed"}
    return run("chroot", str(root), *argv, env={**base, **(env or {})}, timeout=timeout)


def test_node_sh_provisions_an_agent_node(chroot: Path) -> None:
    settings = {"DOCKYARD_NODE": "agent1", "DOCKYARD_IP": "192.168.56.11",
                "DOCKYARD_CONTROL_IP": "192.168.56.10", "DOCKYARD_ZK": "1",
                "DOCKYARD_MESOS": "auto", "DOCKYARD_SRC": "/vagrant",
                "DOCKYARD_HOSTS": "control=192.168.56.10 agent1=192.168.56.11"}
    done = in_chroot(chroot, "bash", "/vagrant/vagrant/provision/node.sh", "agent", env=settings)
    assert "agent1 runs the embedded Mesos master/agent" in done.stdout
    assert "192.168.56.10\tcontrol" in (chroot / "etc/hosts").read_text()
    unit = (chroot / "etc/systemd/system/dockyard-agent.service").read_text()
    assert "ExecStart=/usr/local/lib/dockyard/run-role.sh agent /etc/dockyard/agent.env" in unit
    argv = in_chroot(chroot, "/usr/local/lib/dockyard/run-role.sh", "--print", "agent",
                     "/etc/dockyard/agent.env").stdout.split()
    assert argv[:4] == ["dockyard", "agent", "--master", "zk://192.168.56.10:2181/mesos"]
    assert "node:agent1" in argv
    # dockyard is installed from the checkout, with the packages the executor needs.
    in_chroot(chroot, "dockyard", "--help")
    in_chroot(chroot, "/opt/dockyard/bin/python", "-c",
              "import framework.local, scheduler, executor, kazoo, addict")
    for binary in ("runc", "crun", "busybox"):
        in_chroot(chroot, "sh", "-c", f"command -v {binary}")


def test_node_sh_provisions_a_control_node_whose_roles_run(chroot: Path) -> None:
    """Provision control in the chroot, then run its four units' commands in a namespace
    node: ZooKeeper, the master registered in it, the scheduler finding the master there, and
    the router reading the apps with the client settings node.sh wrote (its HAProxy serving the
    stats page to the operator)."""
    import socket

    from framework.local.lab import network, nodes
    from framework.local.lab.state import prefix
    from tests.support.procs import wait_for

    third = 100 + secrets.randbelow(100)
    ip = f"10.216.{third}.2"
    settings = {"DOCKYARD_NODE": "control", "DOCKYARD_IP": ip, "DOCKYARD_CONTROL_IP": ip,
                "DOCKYARD_ZK": "1", "DOCKYARD_MESOS": "auto", "DOCKYARD_SRC": "/vagrant",
                "DOCKYARD_HOSTS": f"control={ip}"}
    in_chroot(chroot, "bash", "/vagrant/vagrant/provision/node.sh", "control", env=settings)
    for role in ("zookeeper", "master", "scheduler", "router"):
        assert (chroot / f"etc/systemd/system/dockyard-{role}.service").exists()
    client = chroot / "etc/dockyard/router-client.json"
    assert client.stat().st_mode & 0o777 == 0o600
    assert (chroot / "etc/dockyard/router.env").read_text().count(f"https://{ip}:8080") == 1

    mine = prefix("c" + secrets.token_hex(2))
    link = network.NodeLink(f"{mine}control", f"{mine}0", f"{ip}/24")
    try:
        network.add_bridge(f"{mine}br", f"10.216.{third}.1/24")
        network.add_netns(link.netns)
        network.plug(link, f"{mine}br")
        for role in ("zookeeper", "master", "scheduler", "router"):
            nodes.start("control", link.netns, role,
                        ["chroot", str(chroot), "/usr/local/lib/dockyard/run-role.sh", role,
                         f"/etc/dockyard/{role}.env"], chroot.parent / f"{role}.log")

        def ruok() -> bool:
            with socket.create_connection((ip, 2181), timeout=1) as sock:
                sock.sendall(b"ruok")
                return sock.recv(8) == b"imok"

        bundle = Bundle(chroot / "etc/dockyard/security")  # what node.sh made from the seed
        master = Endpoint(f"https://{ip}:5050", bundle.operator, client_context(bundle, with_cert=False))

        def frameworks() -> list[str]:
            return [f["name"] for f in master.get_json("/state")["frameworks"]]

        wait_for(ruok, timeout=120, what="ZooKeeper from the chroot")
        wait_for(lambda: frameworks() == ["dockyard"], timeout=120,
                 what="scheduler registered with the master through zk://")

        def stats(auth: tuple[str, str] | None) -> int:
            request = urllib.request.Request(f"http://{ip}:9090/")
            if auth is not None:
                request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        operator = (bundle.operator.principal, bundle.operator.secret)
        wait_for(lambda: stats(operator) == 200, timeout=120, what="the router's HAProxy serving its stats page")
        assert stats(None) == 401
    finally:
        nodes.stop_netns(link.netns)
        network.delete_link(link.host_if)
        network.delete_netns(link.netns)
        network.delete_link(f"{mine}br")
    assert not [n for n in network.link_names() if n.startswith(mine)]
