"""A throw-away KVM guest that runs a command on this very machine's files, the virtme way.

The guest boots a stock Debian kernel (downloaded with `apt-get download`, unpacked into a
cache, never installed) with a tiny initramfs (busybox-static plus the 9p and virtio
modules). Its root is this host's own root filesystem, read-only over virtio-9p, with tmpfs
on the places tests write (/tmp, /run, /var/tmp, /var/lib, /var/cache, /mnt; HOME is /tmp/home), so the guest runs
this checkout, its .venv, runc and busybox as they are here. A second, writable 9p share
(a host temporary directory, `/run/vm` in the guest) carries the command in and its output,
exit code and evidence out; the guest then powers off.

Used to run the cgroup v2 code path on a cgroup v1 host: boot with `cgroup_no_v1=all` and
the guest has cgroup2 alone at /sys/fs/cgroup, with every controller available.
Standard library only.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("DOCKYARD_VM_CACHE", "/var/cache/dockyard/vm"))
QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
META_PACKAGE = "linux-image-amd64"
# What the initramfs needs to reach the host root (virtio-pci, 9p) and what the tests use
# inside the guest (overlay for container roots). Their dependencies are added from the
# modules' own `depends=` fields, in load order.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
# Mount points in the (read-only) host root that get a fresh tmpfs in the guest.
# /root stays (the venv's interpreter may live there, under pyenv); HOME moves to /tmp.
WRITABLE = ("tmp", "run", "var/tmp", "var/lib", "var/cache", "mnt")
# Where the guest's PATH and environment start from (nothing is inherited from the host).
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Unavailable(Exception):
    """This machine cannot run the guest (no /dev/kvm, no qemu, no kernel to download...)."""


@dataclass(frozen=True)
class Kernel:
    version: str  # e.g. 6.1.0-56-amd64
    vmlinuz: Path
    modules: Path  # the unpacked /lib/modules/<version>


@dataclass
class GuestResult:
    exit_code: int | None  # None: the command never finished (boot failure, timeout)
    output: str  # the command's stdout and stderr
    console: str  # the serial console (kernel and init messages)
    accel: str  # kvm or tcg
    boot_seconds: float | None  # guest uptime when the command started (kernel + initramfs)
    wall_seconds: float  # host time from qemu start to power-off
    files: dict[str, str]  # other files the command left in the share (`$VM_OUT/<name>`)

    def summary(self) -> str:
        tail = "\n".join(self.output.splitlines()[-40:])
        console = "\n".join(self.console.splitlines()[-30:])
        return (f"exit code {self.exit_code} ({self.accel}), boot {self.boot_seconds}s, wall {self.wall_seconds:.1f}s\n"
                f"--- output (tail) ---\n{tail}\n--- console (tail) ---\n{console}")


@dataclass(frozen=True)
class TestReport:
    """What a pytest run in the guest wrote to `$VM_OUT/junit.xml` (`--junitxml`)."""

    counts: dict[str, int]  # tests, failures, errors, skipped
    failed: list[str]  # "class::name: message" of every failure and error
    skipped: list[str]  # names of the tests skipped

    @classmethod
    def of(cls, result: GuestResult, name: str = "junit.xml") -> "TestReport | None":
        import xml.etree.ElementTree as ET

        report = result.files.get(name)
        if not report:
            return None
        suite = ET.fromstring(report)
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert suite is not None
        cases = list(suite.iter("testcase"))
        problems = [(case, case.find("failure") if case.find("failure") is not None else case.find("error"))
                    for case in cases]
        return cls({key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")},
                   [f"{case.get('classname')}::{case.get('name')}: {problem.get('message', '')}"
                    for case, problem in problems if problem is not None],
                   [str(case.get("name")) for case in cases if case.find("skipped") is not None])


def check_host() -> None:
    """Raise Unavailable with the reason when this machine cannot boot the guest."""
    if os.geteuid() != 0:
        raise Unavailable("needs root (qemu's 9p passthrough must read every file as its owner)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise Unavailable("/dev/kvm is missing or not accessible")
    if shutil.which(QEMU) is None:
        raise Unavailable(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    if not BUSYBOX.is_file():
        raise Unavailable(f"{BUSYBOX} is missing (Debian package busybox-static)")


def _kernel_package() -> str:
    """The versioned kernel package the meta package points at (`linux-image-6.1.0-NN-amd64`)."""
    try:
        text = subprocess.run(["apt-cache", "depends", META_PACKAGE], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"apt-cache depends {META_PACKAGE}: {error}") from error
    match = re.search(r"Depends: (linux-image-\S+-amd64)", text)
    if not match:
        raise Unavailable(f"apt-cache knows no kernel behind {META_PACKAGE} (apt-get update?)")
    return match.group(1)


def _unpacked(cache: Path) -> Kernel | None:
    for vmlinuz in sorted(cache.glob("*/boot/vmlinuz-*"), reverse=True):
        version = vmlinuz.name[len("vmlinuz-"):]
        modules = vmlinuz.parents[1] / "lib" / "modules" / version
        if modules.is_dir():
            return Kernel(version, vmlinuz, modules)
    return None


def kernel(cache: Path = CACHE) -> Kernel:
    """A Debian kernel and its modules, unpacked in `cache` (downloaded once, never installed)."""
    found = _unpacked(cache)
    if found:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    package = _kernel_package()
    download = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True,
                              timeout=900)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if download.returncode != 0 or not debs:
        raise Unavailable(f"apt-get download {package} failed: {download.stderr.strip()[-500:]}")
    target = cache / package
    partial = cache / f".{package}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(partial)], check=True, timeout=600)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # a killed unpack leaves only the .partial directory
    debs[-1].unlink()
    found = _unpacked(cache)
    if not found:
        raise Unavailable(f"{debs[-1].name} holds no vmlinuz and modules")
    return found


def _modinfo_depends(path: Path) -> list[str]:
    """The `depends=` field of an (uncompressed) module, as modinfo prints it."""
    data = path.read_bytes()
    match = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    return [name for name in match.group(1).decode().split(",") if name] if match else []


def module_order(modules: Path, wanted: tuple[str, ...] = MODULES) -> list[Path]:
    """`wanted` and everything they depend on, dependencies first (insmod order)."""
    index = {}
    for path in modules.rglob("*.ko"):
        index[path.name[:-3].replace("-", "_")] = path
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            raise Unavailable(f"module {name} is not in {modules} (built in, or compressed?)")
        for dependency in _modinfo_depends(index[name]):
            visit(dependency)
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order


INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "vm-init: $*"; poweroff -f; sleep 10; }
for module in $(cat /modules.order); do
    insmod "/lib/modules/$module" || fail "insmod $module failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot \
    || fail "cannot mount the host root over 9p"
for dir in @WRITABLE@; do
    mount -t tmpfs -o mode=0755 tmpfs "/newroot/$dir" || fail "tmpfs on /$dir"
done
chmod 1777 /newroot/tmp /newroot/var/tmp
# The host root once more, without those tmpfs: a checkout below /tmp (a CI clone) stays reachable.
mkdir -p /newroot/run/hostroot && mount --bind /newroot /newroot/run/hostroot \
    || fail "cannot keep the host root visible"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup || fail "cannot mount cgroup2"
mkdir -p /newroot/run/vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmshare /newroot/run/vm \
    || fail "cannot mount the result share"
umount /proc /sys
exec switch_root /newroot /bin/busybox sh /run/vm/guest.sh
"""

GUEST = r"""# stage two, PID 1 on the host's root (read-only 9p)
export PATH=@PATH@ HOME=/tmp/home TMPDIR=/tmp LANG=C.UTF-8 VM_OUT=/run/vm
cat /proc/uptime > /run/vm/boot-uptime
mkdir -p /tmp/home /var/lib/dockyard /run/runc
@KEEP@
/bin/busybox ip link set lo up
/bin/busybox hostname dockyard-vm
@ENV@
cd @CWD@ && ( @COMMAND@ ) > /run/vm/output 2>&1 < /dev/null
echo $? > /run/vm/exit-code.tmp && mv /run/vm/exit-code.tmp /run/vm/exit-code
sync
/bin/busybox poweroff -f
"""


def _cpio_newc(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive of (name, mode, data, rdev) entries, owned by root."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes, rdev: int, ino: int) -> None:
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, os.major(rdev), os.minor(rdev), len(encoded), 0]
        out.extend(b"070701" + b"".join(b"%08X" % value for value in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate(entries, start=1):
        add(name, mode, data, rdev, ino)
    add("TRAILER!!!", 0, b"", 0, 0)
    return bytes(out)


def _keep(cwd: str) -> str:
    """Shell lines that bring `cwd` back when a guest tmpfs (WRITABLE) hides it."""
    if not any(cwd == f"/{d}" or cwd.startswith(f"/{d}/") for d in WRITABLE):
        return ""
    return f"mkdir -p {shlex.quote(cwd)} && mount --bind {shlex.quote('/run/hostroot' + cwd)} {shlex.quote(cwd)}"


def build_initramfs(kern: Kernel, target: Path) -> Path:
    """The initramfs: busybox, the modules in load order, and INIT as /init."""
    modules = module_order(kern.modules)
    directory, regular, char = 0o040755, 0o100755, 0o020600
    entries: list[tuple[str, int, bytes, int]] = [
        ("bin", directory, b"", 0), ("dev", directory, b"", 0), ("dev/console", char, b"", os.makedev(5, 1)),
        ("lib", directory, b"", 0), ("lib/modules", directory, b"", 0),
        ("bin/busybox", regular, BUSYBOX.read_bytes(), 0),
        ("init", regular, INIT.replace("@WRITABLE@", " ".join(WRITABLE)).encode(), 0),
        ("modules.order", 0o100644, "".join(f"{path.name}\n" for path in modules).encode(), 0),
    ]
    entries += [(f"lib/modules/{path.name}", 0o100644, path.read_bytes(), 0) for path in modules]
    target.write_bytes(_cpio_newc(entries))
    return target


def accelerator(cache: Path = CACHE) -> str:
    """`kvm` when a KVM guest really boots here, else `tcg` (emulation: same guest, slower).

    /dev/kvm can be there and still not run a Linux guest: under nested virtualisation
    (this dev VM) SeaBIOS runs, the kernel decompresses and then hangs before its first
    message. So boot once with KVM and a trivial command, and remember the verdict per
    host kernel. `$DOCKYARD_VM_ACCEL` (kvm or tcg) overrides.
    """
    forced = os.environ.get("DOCKYARD_VM_ACCEL")
    if forced:
        return forced
    verdict = cache / f"accel-{os.uname().release}"
    if verdict.is_file():
        return verdict.read_text().strip()
    probe = run("true", timeout=KVM_PROBE_SECONDS, accel="kvm", cache=cache)
    answer = "kvm" if probe.exit_code == 0 else "tcg"
    verdict.write_text(answer + "\n")
    return answer


KVM_PROBE_SECONDS = 30  # a KVM guest is at its command in about two seconds where KVM works


def run(command: str, *, cwd: str = "/", env: dict[str, str] | None = None, timeout: float = 900,
        memory_mb: int = 1024, cpus: int = 2, cgroup_v1: bool = False, accel: str | None = None,
        cache: Path = CACHE) -> GuestResult:
    """Boot the guest, run `command` (a shell command line) in `cwd`, power off, report.

    With `cgroup_v1=False` the kernel gets `cgroup_no_v1=all`: cgroup2 alone, all controllers.
    The command may leave files in `$VM_OUT` (the share); they come back in `files`.
    `accel` is kvm or tcg; by default `accelerator()` picks.
    """
    check_host()
    kern = kernel(cache)
    accel = accel or accelerator(cache)
    share = Path(tempfile.mkdtemp(prefix="dockyard-vm-"))
    try:
        initramfs = build_initramfs(kern, share / "initramfs.cpio")
        exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in (env or {}).items())
        (share / "guest.sh").write_text(
            GUEST.replace("@PATH@", GUEST_PATH).replace("@ENV@", exports).replace("@KEEP@", _keep(cwd))
            .replace("@CWD@", shlex.quote(cwd))
            .replace("@COMMAND@", command))
        console = share / "console.log"
        append = "console=ttyS0 panic=-1 loglevel=7 rdinit=/init"
        if not cgroup_v1:
            append += " cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
        if accel == "kvm":
            machine = ["-accel", "kvm", "-cpu", "host"]
        else:
            machine = ["-accel", "tcg,thread=multi", "-cpu", "max"]
        argv = [QEMU, *machine, "-m", str(memory_mb), "-smp", str(cpus),
                "-nographic", "-nodefaults", "-no-user-config", "-no-reboot", "-nic", "none",
                "-serial", f"file:{console}", "-monitor", "none",
                "-kernel", str(kern.vmlinuz), "-initrd", str(initramfs), "-append", append,
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,"
                           "multidevs=remap",
                "-virtfs", f"local,path={share},mount_tag=vmshare,security_model=passthrough"]
        started = time.monotonic()
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            qemu_output, _ = qemu.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu_output, _ = qemu.communicate()
            qemu_output += f"\n(qemu killed after {timeout}s)"
        wall = time.monotonic() - started
        read = lambda name: (share / name).read_text(errors="replace") if (share / name).is_file() else ""
        code = read("exit-code").strip()
        uptime = read("boot-uptime").split()
        files = {path.name: read(path.name) for path in share.iterdir()
                 if path.is_file() and path.name not in ("initramfs.cpio", "guest.sh", "console.log", "output",
                                                         "exit-code", "boot-uptime")}
        return GuestResult(accel=accel, exit_code=int(code) if code.lstrip("-").isdigit() else None,
                           output=read("output"), console=read("console.log") + qemu_output,
                           boot_seconds=float(uptime[0]) if uptime else None, wall_seconds=wall, files=files)
    finally:
        shutil.rmtree(share, ignore_errors=True)
