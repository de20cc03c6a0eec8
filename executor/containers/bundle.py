"""The OCI runtime spec (config.json) for a task: process, mounts, namespaces, security.

Semantics follow Mesos (CommandInfo, ContainerInfo volumes, the sandbox at
/mnt/mesos/sandbox) and Docker/OCI for the image config (Env, WorkingDir, User,
Entrypoint, Cmd). Pure functions: no runtime is called here.
"""
from __future__ import annotations

import os
import posixpath
import resource
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from executor.containers.gpus import Device
from executor.containers.rootfs import secure_join
from executor.launcher import command_env
from framework import seccomp
from framework.container_policy import ContainerPolicy
from framework.errors import ContainerError

SANDBOX = "/mnt/mesos/sandbox"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The container's PID 1, as Docker's `--init`: the kernel drops signals sent to a PID
# namespace's init unless it has a handler, so the task must not be PID 1. tini (Debian's
# `tini`, the static build: images need no libc) blocks and forwards every signal to the
# task's process group (-g), reaps orphans, and exits with the task's status (128+N when
# signal N killed it). It is bind-mounted read-only at INIT_PATH, on the /dev tmpfs the
# runtime makes, so nothing is written into the image's root.
INIT_BINARY = "/usr/bin/tini-static"
INIT_PATH = "/dev/init"


def init_ready(pid: int, name: str) -> bool:
    """Whether tini, running as `pid` under the name `name`, is past the point from which it
    forwards signals (or `pid` is gone). Before it, a signal sent to it is dropped."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            fields = dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)
    except OSError:
        return True  # gone
    if fields.get("State", "")[:1] in ("Z", "X"):
        return True
    # tini blocks every signal it forwards, then ignores SIGTTOU: either shows it is past
    # that point. (Its main loop waits in sigtimedwait, which lifts the block while it
    # waits, SigBlk then reads 0; the kernel still counts those signals as blocked.)
    blocked = int(fields.get("SigBlk", "0"), 16)
    ignored = int(fields.get("SigIgn", "0"), 16)
    return (fields.get("Name") == name
            and bool((blocked & (1 << (signal.SIGTERM - 1))) or (ignored & (1 << (signal.SIGTTOU - 1)))))

# Docker's default capability set less CAP_NET_RAW (CIS Docker Benchmark 5.3): with it,
# a container opens raw and packet sockets and, on the host network, reads every
# neighbour's traffic on the loopback. Everything else is dropped from every set.
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
# Every capability the kernel defines (linux/capability.h, up to CAP_CHECKPOINT_RESTORE):
# a privileged container's set, as Docker's --privileged.
ALL_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
            "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]

# Docker's (and runc's `spec`) masked and read-only paths: kernel state a container must
# neither read (masked: /dev/null over files, an empty read-only tmpfs over directories)
# nor change.
MASKED = ["/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
          "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def privileged_caps() -> list[str]:
    """ALL_CAPS less any the host does not let us hold (our bounding set): a runtime cannot give
    a container a capability it lacks itself."""
    try:
        with open("/proc/self/status") as handle:
            bounding = next(int(line.split()[1], 16) for line in handle if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return list(ALL_CAPS)
    return [name for number, name in enumerate(ALL_CAPS) if bounding & (1 << number)]


def masked_paths() -> list[str]:
    """MASKED plus each CPU's thermal_throttle counters (as Docker masks them: they leak host
    activity and writing them resets the host's)."""
    cpus = sorted(str(p) for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/thermal_throttle"))
    return MASKED + cpus


@dataclass(frozen=True)
class IdMap:
    """A user namespace's mapping: container ids 0..size-1 are host ids host_uid.., host_gid.."""

    host_uid: int
    host_gid: int
    size: int = 65536

    def host(self, uid: int, gid: int) -> tuple[int, int]:
        return self.host_uid + uid, self.host_gid + gid


@dataclass(frozen=True)
class Security:
    """How a container is confined. The defaults are the hardened ones; only the agent's
    flags (framework/container_policy.py) loosen them."""

    seccomp: str = "default"  # "default", "unconfined" or a profile file (framework.seccomp)
    privileged: bool = False  # every capability, every device, no seccomp, no masked paths
    id_map: IdMap | None = None  # a user namespace (--isolation namespaces/user)
    pids_limit: int = 4096
    devices: tuple[Device, ...] = ()  # host devices the container gets (its GPUs, executor/containers/gpus.py)


@dataclass
class Volume:
    container_path: str
    host_path: Path
    read_only: bool


@dataclass
class ProcessSpec:
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    groups: list[int] = field(default_factory=list)



def find_init() -> Path | None:
    """The host's init binary for containers, or None when it is not installed."""
    path = Path(INIT_BINARY)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def init_args(args: list[str]) -> list[str]:
    """The process args with the init in front: `INIT_PATH -g -- args...`."""
    return [INIT_PATH, "-g", "--", *args]


def command_args(command: dict, image_config: dict) -> list[str]:
    """argv as Mesos runs a CommandInfo in an image.

    shell (default): `/bin/sh -c value`, Entrypoint/Cmd ignored. shell=false with a
    value: that program with `arguments[1:]` (arguments carry argv[0], as in Mesos).
    shell=false without a value: Entrypoint + (`arguments` if given, else Cmd) as in Docker.
    """
    config = image_config.get("config") or {}
    value = command.get("value") or ""
    arguments = list(command.get("arguments") or [])
    if command.get("shell", True) and value:
        return ["/bin/sh", "-c", value]
    if value:
        return [value] + arguments[1:]
    entrypoint = list(config.get("Entrypoint") or [])
    cmd = arguments or list(config.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise ContainerError("the task has no command and the image has no Entrypoint or Cmd")
    return args


def _passwd(rootfs: Path, name: str) -> list[list[str]]:
    try:
        text = secure_join(rootfs, f"/etc/{name}").read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int], str]:
    """(uid, gid, extra gids, home) for a Docker `User` (name, uid, `u:g`), read inside the image."""
    user = user or "0"
    name, _, group = user.partition(":")
    passwd = _passwd(rootfs, "passwd")
    groups = _passwd(rootfs, "group")
    uid = gid = None
    home = "/"
    username = None
    for entry in passwd:
        if len(entry) >= 6 and (entry[0] == name or entry[2] == name):
            uid, gid, home, username = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
            break
    if uid is None:
        if not name.isdigit():
            raise ContainerError(f"user {name!r} is not in the image's /etc/passwd")
        uid, gid = int(name), 0 if int(name) == 0 else int(name)
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = [g for g in groups if len(g) >= 3 and g[0] == group]
            if not match:
                raise ContainerError(f"group {group!r} is not in the image's /etc/group")
            gid = int(match[0][2])
    extra = []
    if username:
        extra = [int(g[2]) for g in groups
                 if len(g) >= 4 and username in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid]
    return uid, int(gid or 0), extra, home


def process_spec(command: dict, env: dict[str, str], image_config: dict, rootfs: Path) -> ProcessSpec:
    """The container's process: args, merged env (image, then task), cwd, user."""
    config = image_config.get("config") or {}
    merged: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(command_env(env, command))
    merged["MESOS_SANDBOX"] = SANDBOX
    merged.setdefault("PATH", DEFAULT_PATH)
    # The task's own user (CommandInfo.user: the app's or the job's), named in the image's
    # /etc/passwd or by number; else the image's User; else root, as Docker runs an image.
    user = command.get("user") or config.get("User") or ""
    uid, gid, groups, home = resolve_user(rootfs, user)
    merged.setdefault("HOME", home)
    cwd = config.get("WorkingDir") or SANDBOX
    return ProcessSpec(command_args(command, image_config), [f"{k}={v}" for k, v in merged.items()],
                       cwd, uid, gid, groups)


def _under(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def program_error(rootfs: Path, process: ProcessSpec, mounts: list[str]) -> str | None:
    """Why the task's program cannot be executed, worded as runc words it; None if it can.

    Behind an init, a missing program would only show once the container runs (the init
    exits 127); checking the image first keeps it a launch failure, as without an init.
    Paths under `mounts` (volumes, the sandbox) are not in the image: given the benefit of
    the doubt (the init reports them if they are missing).
    """
    program = process.args[0]
    if "/" in program:
        path = posixpath.normpath(posixpath.join(process.cwd, program))
        problem = _executable(rootfs, path, mounts)
        if problem is None:
            return None
        if problem == "missing":
            return f'exec: "{program}": stat {program}: no such file or directory'
        return f'exec: "{program}": permission denied'
    env = dict(item.partition("=")[::2] for item in process.env)
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        path = posixpath.normpath(posixpath.join(process.cwd, directory or ".", program))
        if _executable(rootfs, path, mounts) is None:
            return None
    return f'exec: "{program}": executable file not found in $PATH'


def _executable(rootfs: Path, path: str, mounts: list[str]) -> str | None:
    """None (executable, or under a mount), "missing" or "denied" for `path` in the image."""
    if _under(path, mounts):
        return None
    try:
        found = secure_join(rootfs, path)
    except ContainerError:
        return "missing"
    inside = "/" + str(found.relative_to(rootfs)) if found != rootfs else "/"
    if _under(inside, mounts):
        return None
    try:
        info = found.stat()
    except OSError:
        return "missing"
    if not found.is_file() or not info.st_mode & 0o111:
        return "denied"
    return None


def volumes_from(container: dict | None, sandbox: Path, policy: ContainerPolicy | None = None) -> list[Volume]:
    """Mesos `volumes` (snake_case) or Marathon's (camelCase): host or sandbox-relative paths,
    each resolved (symlinks followed now, on the host) and checked: a host path only where the
    agent's `policy` allows one (none by default), a relative one only inside the sandbox."""
    policy = policy or ContainerPolicy()
    found = []
    for item in (container or {}).get("volumes") or []:
        container_path = item.get("container_path") or item.get("containerPath")
        host = item.get("host_path") or item.get("hostPath")
        if not container_path:
            raise ContainerError("a volume needs a container path")
        if not host:
            host = container_path  # Mesos: a sandbox volume named by its container path
            if host.startswith("/"):
                raise ContainerError(f"volume {container_path}: no host path given")
        mode = str(item.get("mode") or "RW").upper()
        if host.startswith("/"):
            if not os.path.lexists(host):
                raise ContainerError(f"volume {container_path}: host path {host} does not exist")
            try:
                host_path = policy.host_path(host)
            except ContainerError as error:
                raise ContainerError(f"volume {container_path}: {error}") from None
        else:
            host_path = (sandbox / host).resolve()
            if not host_path.is_relative_to(sandbox.resolve()):
                raise ContainerError(f"volume {container_path}: {host!r} leaves the sandbox")
            host_path.mkdir(parents=True, exist_ok=True)
        target = container_path if container_path.startswith("/") else f"{SANDBOX}/{container_path}"
        found.append(Volume(target, host_path, mode == "RO"))
    return found


def runtime_config(process: ProcessSpec, sandbox: Path, cgroups_path: str, volumes: list[Volume],
                   network: str = "host", hostname: str | None = None,
                   nofile: int | None = None, init: Path | None = None, security: Security | None = None) -> dict:
    """The whole config.json. `network`: "host" (default) or "none" (loopback only).
    `init`: the host's init binary (`find_init()`), PID 1 with the task as its child;
    None runs the task itself as PID 1. `security`: Docker's defaults hardened (see Security)."""
    security = security or Security()
    privileged = security.privileged
    id_map = None if privileged else security.id_map
    namespaces = [{"type": t} for t in ("pid", "mount", "uts", "ipc", "cgroup")]
    if network == "none":
        namespaces.append({"type": "network"})
    if id_map is not None:
        namespaces.append({"type": "user"})
    sys_options = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        *([{"destination": INIT_PATH, "type": "bind", "source": str(init),
            "options": ["bind", "ro", "nosuid", "nodev"]}] if init is not None else []),
        # sysfs can be mounted only from the network namespace's owner: a user-namespaced
        # container on the host network gets the host's /sys bound instead (its own root
        # has no power over it), where Docker refuses the combination.
        ({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", *sys_options]}
         if id_map is not None and network != "none" else
         {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options}),
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime"] + ([] if privileged else ["ro"])},
        {"destination": SANDBOX, "type": "bind", "source": str(sandbox), "options": ["rbind", "rw", "nosuid", "nodev"]},
    ]
    if network == "host":
        for name in ("resolv.conf", "hosts"):
            if Path(f"/etc/{name}").is_file():
                mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": f"/etc/{name}",
                               "options": ["rbind", "ro", "nosuid", "nodev"]})
    for volume in volumes:
        mounts.append({"destination": volume.container_path, "type": "bind", "source": str(volume.host_path),
                       "options": ["rbind", "ro" if volume.read_only else "rw", "nosuid", "nodev"]})
    caps = privileged_caps() if privileged else list(DEFAULT_CAPS)
    if nofile is None:  # raising the hard limit needs CAP_SYS_RESOURCE, which we may lack
        nofile = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    linux: dict = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": {"devices": [{"allow": privileged, "access": "rwm"},
                                  *({"allow": True, "type": "c", "major": d.major, "minor": d.minor, "access": "rwm"}
                                    for d in security.devices)],
                      "pids": {"limit": security.pids_limit}},
        "devices": [{"path": d.path, "type": "c", "major": d.major, "minor": d.minor, "fileMode": 0o666,
                     "uid": 0, "gid": 0} for d in security.devices],
        "maskedPaths": [] if privileged else masked_paths(),
        "readonlyPaths": [] if privileged else READONLY,
    }
    profile = None if privileged else seccomp.for_container(security.seccomp, caps)
    if profile is not None:
        linux["seccomp"] = profile
    if network == "none":
        # Unprivileged ICMP echo sockets, as Docker sets it for a container with its own
        # network: ping works without CAP_NET_RAW.
        linux["sysctl"] = {"net.ipv4.ping_group_range": "0 2147483647"}
    if id_map is not None:
        linux["uidMappings"] = [{"containerID": 0, "hostID": id_map.host_uid, "size": id_map.size}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": id_map.host_gid, "size": id_map.size}]
    return {
        "ociVersion": "1.0.2-dev",
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname or (socket.gethostname() if network == "host" else "dockyard"),
        "process": {
            "terminal": False,
            "user": {"uid": process.uid, "gid": process.gid, "additionalGids": process.groups},
            "args": init_args(process.args) if init is not None else process.args,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {"bounding": caps, "effective": caps if process.uid == 0 else [],
                             "permitted": caps if process.uid == 0 else [], "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": not privileged,
        },
        "mounts": mounts,
        "linux": linux,
    }
