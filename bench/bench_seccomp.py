"""Container start with dockyard's default seccomp profile against the same start unconfined.

    .venv/bin/python -m bench.bench_seccomp [--runs N] [--bench-dir DIR]
    .venv/bin/python -m bench seccomp

Prints one JSON document. Needs root (runc, overlay, cgroups).

The same busybox task (`exec sleep 60`) is launched through dockyard's container launcher
with the agent's `--seccomp-profile default` and `unconfined` (what executors read from
$DOCKYARD_SECCOMP_PROFILE), alternating in ABBA order so drift on a shared machine falls
on both alike. Timed: launch to TASK_RUNNING (the runtime started the task's init, which
runs under the filter). Also timed: launch to exit of `true`, where the filter is in place
for the whole of the task's life; and the CPU a launch and destroy take (ours and runc's),
which the machine's load does not bend. Target: filtered over unfiltered start at most 1.1x.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from executor.containers import bundle  # noqa: E402
from framework import seccomp  # noqa: E402
from executor.containers.launcher import ContainerLauncher  # noqa: E402
from executor.images.store import ImageStore  # noqa: E402
from executor.launcher import LaunchSpec  # noqa: E402
from tests.support import images  # noqa: E402

DEFAULT_DIR = Path("/var/tmp/dockyard-bench")
IMAGE = "bench/seccomp-busybox:1"
PROFILES = ("default", "unconfined")
TARGET_RATIO = 1.1


def _cpu_seconds() -> float:
    """CPU used by this process and its reaped children (runc), user and system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _store(bench_dir: Path) -> Path:
    work = bench_dir / "seccomp-work"
    store = ImageStore(work)
    if store.resolve(IMAGE) is None:
        archive = images.busybox_image().write_docker_archive(bench_dir / "seccomp-busybox.tar", IMAGE)
        store.load(archive)
        archive.unlink()
    return work


def _launch(work: Path, scratch: Path, name: str, command: str, profile: str) -> tuple[float, object]:
    os.environ[seccomp.ENV] = profile
    sandbox = scratch / name
    sandbox.mkdir(parents=True)
    spec = LaunchSpec(task_id=name, command={"value": command}, env={}, sandbox=sandbox,
                      resources={"cpus": 1, "mem": 128}, container={"mesos": {"image": {"docker": {"name": IMAGE}}}},
                      work_dir=work)
    started = time.perf_counter()
    container = ContainerLauncher().launch(spec)
    return time.perf_counter() - started, container


def run(bench_dir: Path | None = None, runs: int = 101) -> dict:
    bench_dir = Path(bench_dir or DEFAULT_DIR)
    bench_dir.mkdir(parents=True, exist_ok=True)
    work = _store(bench_dir)
    scratch = Path(tempfile.mkdtemp(prefix="seccomp-", dir=bench_dir))
    saved = os.environ.get(seccomp.ENV)
    start: dict[str, list[float]] = {p: [] for p in PROFILES}
    to_exit: dict[str, list[float]] = {p: [] for p in PROFILES}
    paired: list[float] = []  # filtered over unfiltered start within each round (drift cancels)
    cpu: dict[str, list[float]] = {p: [] for p in PROFILES}  # CPU of a launch and destroy: what load cannot bend
    try:
        for number in range(-2, runs):  # two warm-up rounds, not counted
            order = PROFILES if number % 2 == 0 else tuple(reversed(PROFILES))
            for profile in order:
                used = _cpu_seconds()
                elapsed, container = _launch(work, scratch, f"start-{profile}-{number}", "exec sleep 60", profile)
                config = json.loads((container.config_dir / "config.json").read_text())  # type: ignore[attr-defined]
                if ("seccomp" in config["linux"]) != (profile == "default"):
                    raise RuntimeError(f"{profile}: the container's config.json does not say so")
                container.destroy()  # type: ignore[attr-defined]
                used = _cpu_seconds() - used
                begun = time.perf_counter()
                _, quick = _launch(work, scratch, f"exit-{profile}-{number}", "true", profile)
                info = quick.wait(60)  # type: ignore[attr-defined]
                exited = time.perf_counter() - begun
                quick.destroy()  # type: ignore[attr-defined]
                if info is None or info.exit_code != 0:
                    raise RuntimeError(f"{profile}: `true` did not exit 0: {info}")
                if number >= 0:
                    start[profile].append(elapsed)
                    to_exit[profile].append(exited)
                    cpu[profile].append(used)
            if number >= 0:
                paired.append(start["default"][-1] / start["unconfined"][-1])
    finally:
        if saved is None:
            os.environ.pop(seccomp.ENV, None)
        else:
            os.environ[seccomp.ENV] = saved
        shutil.rmtree(scratch, ignore_errors=True)
    rules = seccomp.for_container("default", bundle.DEFAULT_CAPS)
    median = {kind: {p: statistics.median(values[p]) for p in PROFILES}
              for kind, values in (("start", start), ("exit", to_exit))}
    ratio = median["start"]["default"] / median["start"]["unconfined"]
    return {
        "runs": runs,
        "filtered_start_median_s": round(median["start"]["default"], 4),
        "unfiltered_start_median_s": round(median["start"]["unconfined"], 4),
        "start_ratio": round(ratio, 3),
        "start_ratio_paired_median": round(statistics.median(paired), 3),
        "filtered_launch_to_exit_median_s": round(median["exit"]["default"], 4),
        "unfiltered_launch_to_exit_median_s": round(median["exit"]["unconfined"], 4),
        "launch_to_exit_ratio": round(median["exit"]["default"] / median["exit"]["unconfined"], 3),
        "filtered_cpu_median_ms": round(statistics.median(cpu["default"]) * 1000, 1),
        "unfiltered_cpu_median_ms": round(statistics.median(cpu["unconfined"]) * 1000, 1),
        "added_cpu_median_ms": round((statistics.median(cpu["default"]) - statistics.median(cpu["unconfined"])) * 1000, 1),
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
        "profile_rules": len(rules["syscalls"]),
        "profile_syscalls": sum(len(rule["names"]) for rule in rules["syscalls"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--runs", type=int, default=101)
    args = parser.parse_args()
    result = {"benchmark": "seccomp", **run(args.bench_dir, args.runs)}
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
