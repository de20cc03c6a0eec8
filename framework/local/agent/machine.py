"""What this machine can offer when `--resources` does not say.

Mesos's defaults, in spirit: every CPU; memory minus a reserve for the system
(1 GiB, or half of it on small machines); the work dir's filesystem minus a
reserve (5 GiB, or half); ports 31000-32000. Several agents on one machine
(`dockyard up --agents N`) each get an Nth of the CPUs, memory and disk: each
advertising the whole machine would promise N times what it has.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from framework.mesos.resources import Resources

DEFAULT_PORTS = "[31000-32000]"
MEM_RESERVE_MB = 1024.0
DISK_RESERVE_MB = 5 * 1024.0


def total_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> float:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("MemTotal missing from /proc/meminfo")


def detected(work_dir: Path) -> dict[str, str]:
    """Detected values as `--resources` text pieces, name -> value."""
    mem = total_memory_mb()
    disk = shutil.disk_usage(work_dir).total / (1024.0 * 1024.0)
    return {
        "cpus": str(float(os.cpu_count() or 1)),
        "mem": str(int(mem - min(MEM_RESERVE_MB, mem / 2))),
        "disk": str(int(disk - min(DISK_RESERVE_MB, disk / 2))),
        "ports": DEFAULT_PORTS,
    }


def agent_resources(text: str | None, work_dir: Path) -> Resources:
    """`--resources` text, with each of cpus/mem/disk/ports it leaves out detected."""
    given = Resources.parse(text) if text else Resources([])
    missing = [f"{name}:{value}" for name, value in detected(work_dir).items() if name not in given.names()]
    return given + Resources.parse(";".join(missing)) if missing else given


def share(work_dir: Path, agents: int) -> dict[str, str]:
    """cpus, mem and disk of this machine split evenly among `agents` agents, as `--resources` pieces."""
    existing = next(path for path in [work_dir, *work_dir.parents] if path.exists())
    whole = detected(existing)
    count = max(agents, 1)
    return {"cpus": str(max(round(float(whole["cpus"]) / count, 2), 0.01)),
            "mem": str(int(float(whole["mem"]) / count)),
            "disk": str(int(float(whole["disk"]) / count))}


def with_share(text: str | None, agents: int, work_dir: Path) -> str:
    """`--resources` text, with each of cpus, mem and disk it leaves out set to an `agents`th of
    this machine's (ports are left to the caller: agents on one network must split them)."""
    given = Resources.parse(text).names() if text else set()
    missing = [name for name in ("cpus", "mem", "disk") if name not in given]
    shares = share(work_dir, agents) if missing else {}
    return ";".join([*([text] if text else []), *(f"{name}:{shares[name]}" for name in missing)])
