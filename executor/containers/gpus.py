"""A task's GPUs: which of the agent's GPUs it holds, and how it is kept to them.

As Mesos's `gpu/nvidia` isolator (src/slave/containerizer/mesos/isolators/gpu/):
a task with `gpus: N` holds N of the agent's GPUs for its lifetime, sees only
those (the devices cgroup allows their device nodes and no other GPU's), and is
told which they are (`NVIDIA_VISIBLE_DEVICES`, the NVIDIA container runtime's
variable, with the GPUs' indices). A task without `gpus` on such an agent can
open none of them.

The agent's GPUs are `DOCKYARD_GPU_DEVICES` when set (Mesos's
`--nvidia_gpu_devices`, with each GPU's device numbers, so a test can use fake
ones: `0=195:0,1=195:1`), else the `/dev/nvidia<N>` character devices present.
Which GPU a task holds is decided among all executors of the agent by a lock file
per GPU under `<work_dir>/gpus/` (flock: released when the holder dies). Standard
library only: this module is on the executor's start-up path.
"""
from __future__ import annotations

import fcntl
import functools
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from framework.errors import ContainerError

DEVICES_ENV = "DOCKYARD_GPU_DEVICES"
VISIBLE_ENV = "NVIDIA_VISIBLE_DEVICES"
# What a GPU task needs besides its GPUs (the nvidia isolator's control devices), when present.
CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
# The devices every container may use (Mesos's cgroups/devices isolator's default whitelist).
DEFAULT_ALLOWED = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                   "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 4:0 rwm", "c 4:1 rwm", "c 136:* rwm",
                   "c 10:200 rwm")


@dataclass(frozen=True)
class Device:
    """A character device node: where it lives and its numbers."""

    path: str
    major: int
    minor: int

    @property
    def rule(self) -> str:
        """Its devices-cgroup rule (`c MAJOR:MINOR rwm`)."""
        return f"c {self.major}:{self.minor} rwm"


@dataclass(frozen=True)
class Gpu:
    index: int
    device: Device


def agent_gpus(environ: dict[str, str] | None = None) -> list[Gpu]:
    """The GPUs of this agent, by index (see the module's docstring for where they come from).

    Asked on every task's launch, so both answers are kept: the devices variable's by its text,
    the /dev listing for the executor's lifetime (as Mesos's nvidia isolator, which lists the
    agent's GPUs once, at start-up)."""
    text = (environ if environ is not None else os.environ).get(DEVICES_ENV, "").strip()
    return list(_listed_gpus(text) if text else _device_gpus())


@functools.lru_cache(maxsize=8)
def _listed_gpus(text: str) -> tuple[Gpu, ...]:
    gpus = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*=\s*(\d+):(\d+)\s*", item)
        if match is None:
            raise ContainerError(f"{DEVICES_ENV}: {item!r} is not INDEX=MAJOR:MINOR")
        index, major, minor = (int(group) for group in match.groups())
        gpus.append(Gpu(index, Device(f"/dev/nvidia{index}", major, minor)))
    return tuple(sorted(gpus, key=lambda gpu: gpu.index))


@functools.lru_cache(maxsize=1)
def _device_gpus() -> tuple[Gpu, ...]:
    found = []
    for path in Path("/dev").glob("nvidia[0-9]*"):
        if re.fullmatch(r"nvidia\d+", path.name) and (device := _device(str(path))) is not None:
            found.append(Gpu(int(path.name[6:]), device))
    return tuple(sorted(found, key=lambda gpu: gpu.index))


def _device(path: str) -> Device | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISCHR(info.st_mode):
        return None
    return Device(path, os.major(info.st_rdev), os.minor(info.st_rdev))


class GpuClaim:
    """The GPUs one task holds (none: a task without `gpus` on a GPU agent), until `release`."""

    def __init__(self, gpus: list[Gpu], others: list[Gpu], locks: list[int]) -> None:
        self.gpus = gpus
        self.others = others  # the agent's GPUs this task may not use
        self._locks = locks

    @property
    def devices(self) -> list[Device]:
        """The device nodes the task gets: its GPUs, and the control devices when it has any."""
        if not self.gpus:
            return []
        control = [d for d in (_device(path) for path in CONTROL_DEVICES) if d is not None]
        return [gpu.device for gpu in self.gpus] + control

    def environment(self) -> dict[str, str]:
        return {VISIBLE_ENV: ",".join(str(gpu.index) for gpu in self.gpus)} if self.gpus else {}

    def release(self) -> None:
        for fd in self._locks:
            os.close(fd)  # closing the file drops its flock
        self._locks = []


def claim(work_dir: Path, count: float, environ: dict[str, str] | None = None) -> GpuClaim | None:
    """Take `count` free GPUs of this agent for a task; None when the agent knows no GPU devices
    (no GPU isolation then: its `gpus` are a number like any other resource). ContainerError
    when a task asks for more than are free, or for a fraction."""
    gpus = agent_gpus(environ)
    if not gpus:
        return None
    if count != int(count):
        raise ContainerError("The 'gpus' resource must be an unsigned integer")
    wanted = int(count)
    directory = Path(work_dir) / "gpus"
    directory.mkdir(parents=True, exist_ok=True)
    held: list[Gpu] = []
    locks: list[int] = []
    for gpu in gpus:
        if len(held) == wanted:
            break
        fd = os.open(directory / f"{gpu.index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held.append(gpu)
        locks.append(fd)
    if len(held) < wanted:
        for fd in locks:
            os.close(fd)
        raise ContainerError(f"the task asks for {wanted} gpus but only {len(held)} of this agent's "
                             f"{len(gpus)} are free")
    return GpuClaim(held, [gpu for gpu in gpus if gpu not in held], locks)


def devices_cgroup(parent: str, name: str) -> Path | None:
    """`<devices mount>/<parent>/<name>` on a host with a cgroup v1 devices controller, else None."""
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if len(fields) >= 3 and fields[0] == "cgroup" and "devices" in fields[2].split(","):
                return Path(left.split()[4]) / parent.lstrip("/") / name
    return None


def restrict(directory: Path, gpu_claim: GpuClaim) -> None:
    """Make a devices cgroup that allows the default devices and the claim's, nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        (directory / "devices.deny").write_text("a")
        for rule in [*DEFAULT_ALLOWED, *(device.rule for device in gpu_claim.devices)]:
            (directory / "devices.allow").write_text(rule)
    except OSError as error:
        raise ContainerError(f"cannot restrict the devices of {directory}: {error.strerror}") from error
