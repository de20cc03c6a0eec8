"""Container start vs image size, executor overhead vs bare runc, image update bytes.

    .venv/bin/python -m bench.bench_containers [--bench-dir DIR] [--runs N] [--sizes 1,100,1000]
Prints one JSON document. Needs root (runc, overlay, cgroups) and docker-registry.

1. start: launch to "running" (TASK_RUNNING: the runtime started the task's init)
   for ~1 MB, ~100 MB and ~1 GB images (random-content layers, built once and cached
   under the bench dir), next to the copy baseline measured in the same run: `cp -a`
   of the image's layers into a fresh root, then bare `runc run` of it.
   Target: 1 GB starts within 1.2x of 1 MB.
2. overhead: dockyard's launcher (launch + exit) against bare `runc run` of the same
   config.json on an already-mounted root, interleaved, median ratio. Target <= 1.5.
3. update: pull v1 of a 4-layer image, then v2 that changes only the top layer; bytes
   the registry client received for v2 over the top layer's size. Target <= 1.05.
4. host: a command task without an image (`true`) through the host launcher under each
   agent --isolation: plain (posix), own cgroups (the default), cgroups + PID namespace,
   interleaved: wall time launch->exit->destroy and CPU seconds per task (ours plus
   children's), since the end-to-end target is 100 `true` tasks/s on 2 cores.

    .venv/bin/python -m bench.bench_containers --only host      # just section 4
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from executor.containers.launcher import ContainerLauncher  # noqa: E402
from executor.containers.rootfs import mount_overlay, unmount  # noqa: E402
from executor.host import HostLauncher  # noqa: E402
from executor.images.store import ImageStore  # noqa: E402
from executor.launcher import LaunchSpec  # noqa: E402
from framework import cgroups  # noqa: E402
from tests.support import images, registry  # noqa: E402

DEFAULT_DIR = Path("/var/tmp/dockyard-bench")
MB = 1024 * 1024


def _image_for(size_mb: int) -> images.BuiltImage:
    """busybox plus `size_mb` of incompressible files spread over up to 8 layers."""
    extra_total = max(0, size_mb - 1) * MB
    layers: list[list[images.Entry]] = []
    if extra_total:
        count = min(8, max(1, size_mb // 64))
        per = extra_total // count
        layers = [images.random_file_entries(f"data{n}", per) for n in range(count)]
    return images.busybox_image(layers, compressed=False)


def build_store(bench_dir: Path, sizes: list[int]) -> tuple[Path, dict[int, str]]:
    """A work dir whose store holds one image per size (built once, then reused)."""
    work = bench_dir / "work"
    store = ImageStore(work)
    names = {}
    for size in sizes:
        name = f"bench/size-{size}mb:1"
        names[size] = name
        if store.resolve(name) is None:
            layout = bench_dir / f"layout-{size}"
            shutil.rmtree(layout, ignore_errors=True)
            _image_for(size).write_oci_layout(layout, "1")
            store.load(layout, tag=name)
            shutil.rmtree(layout, ignore_errors=True)
    return work, names


def spec_for(work: Path, name: str, sandbox: Path, command: str) -> LaunchSpec:
    sandbox.mkdir(parents=True, exist_ok=True)
    return LaunchSpec(task_id=sandbox.name, command={"value": command}, env={}, sandbox=sandbox,
                      resources={"cpus": 1, "mem": 256},
                      container={"mesos": {"image": {"docker": {"name": name}}}}, work_dir=work)


def bare_runc(bundle: Path, container_id: str, detach_wait_pid: bool) -> float:
    """Seconds for `runc run` of `bundle` until its init is started (pid file) or, if not
    `detach_wait_pid`, until it exits."""
    root = bundle.parent / "runc-root"
    pid_file = bundle.parent / f"{container_id}.pid"
    started = time.perf_counter()
    process = subprocess.Popen(["runc", "--root", str(root), "run", "--bundle", str(bundle), "--pid-file",
                                str(pid_file), container_id], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if detach_wait_pid:
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if process.poll() is not None:
                raise RuntimeError("bare runc failed to start")
            time.sleep(0.0005)
        elapsed = time.perf_counter() - started
        subprocess.run(["runc", "--root", str(root), "kill", container_id, "KILL"], capture_output=True)
        process.wait(30)
    else:
        process.wait(60)
        elapsed = time.perf_counter() - started
    pid_file.unlink(missing_ok=True)
    subprocess.run(["runc", "--root", str(root), "delete", "--force", container_id], capture_output=True)
    return elapsed


def bench_start(work: Path, names: dict[int, str], runs: int, scratch: Path) -> dict:
    """Sizes interleaved run by run, so the machine's noise falls on every size alike."""
    launcher = ContainerLauncher()
    store = ImageStore(work)
    layered: dict[int, list[float]] = {size: [] for size in names}
    copied: dict[int, list[float]] = {size: [] for size in names}
    layer_dirs = {size: store.prepare(name)[1] for size, name in names.items()}
    for size, name in names.items():
        warm = launcher.launch(spec_for(work, name, scratch / f"warm-{size}", "true"))  # caches, not timed
        warm.wait(60)
        warm.destroy()
    for run in range(runs):
        for size, name in names.items():
            sandbox = scratch / f"start-{size}-{run}"
            spec = spec_for(work, name, sandbox, "exec sleep 60")
            started = time.perf_counter()
            container = launcher.launch(spec)
            layered[size].append(time.perf_counter() - started)
            config = json.loads((container.bundle / "config.json").read_text())
            container.destroy()
            shutil.rmtree(sandbox, ignore_errors=True)
            if run >= (runs if size < 500 else 2):
                continue
            # copy baseline: a full copy of the image's files, then bare runc on it
            bundle = scratch / f"copy-{size}-{run}" / "bundle"
            rootfs = bundle / "rootfs"
            rootfs.mkdir(parents=True)
            config["linux"]["cgroupsPath"] = f"dockyard-bench/copy-{size}-{run}"
            config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/mnt/mesos/sandbox"]
            (bundle / "config.json").write_text(json.dumps(config))
            started = time.perf_counter()
            for layer in layer_dirs[size]:  # whiteouts aside, this is what unpacking per container costs
                subprocess.run(["cp", "-a", f"{layer}/.", str(rootfs)], check=True)
            elapsed_copy = time.perf_counter() - started
            copied[size].append(elapsed_copy + bare_runc(bundle, f"copy-{size}-{run}", True))
            shutil.rmtree(bundle.parent, ignore_errors=True)
    results: dict = {}
    for size in names:
        dirs = {d.name for d in layer_dirs[size]}
        results[f"{size}MB"] = {
            "image_bytes": sum(int(p.read_text()) for p in (work / "images" / "layers").glob("*.size")
                               if p.stem in dirs),
            "layers": len(dirs),
            "layered_start_median_s": round(statistics.median(layered[size]), 4),
            "copy_start_median_s": round(statistics.median(copied[size]), 4),
            "copy_over_layered": round(statistics.median(copied[size]) / statistics.median(layered[size]), 2),
        }
    small, big = min(names), max(names)
    results["largest_over_smallest"] = round(results[f"{big}MB"]["layered_start_median_s"]
                                             / results[f"{small}MB"]["layered_start_median_s"], 3)
    results["target_largest_over_smallest"] = 1.2
    results["runs"] = runs
    return results


def bench_overhead(work: Path, name: str, runs: int, scratch: Path) -> dict:
    """dockyard launch->exit against bare `runc run` (to exit) of the same bundle, interleaved."""
    launcher = ContainerLauncher()
    ours, bare, destroy = [], [], []
    store = ImageStore(work)
    _, layer_dirs = store.prepare(name)
    bundle = scratch / "bare" / "bundle"
    mount_overlay(layer_dirs, scratch / "bare" / "upper", scratch / "bare" / "work", bundle / "rootfs")
    try:
        for run in range(-2, runs):  # two warm-up rounds, not counted
            sandbox = scratch / f"overhead-{run}"
            spec = spec_for(work, name, sandbox, "true")
            started = time.perf_counter()
            container = launcher.launch(spec)
            container.wait(60)
            ours.append(time.perf_counter() - started)
            config = json.loads((container.bundle / "config.json").read_text())
            started = time.perf_counter()
            container.destroy()
            destroy.append(time.perf_counter() - started)
            shutil.rmtree(sandbox, ignore_errors=True)
            config["linux"]["cgroupsPath"] = f"dockyard-bench/bare-{run + 2}"
            bare_sandbox = scratch / "bare" / "sandbox"
            bare_sandbox.mkdir(exist_ok=True)
            for mount in config["mounts"]:
                if mount["destination"] == "/mnt/mesos/sandbox":
                    mount["source"] = str(bare_sandbox)
            (bundle / "config.json").write_text(json.dumps(config))
            bare_time = bare_runc(bundle, f"bare-{run + 2}", False)
            if run < 0:
                ours.pop()
                destroy.pop()
            else:
                bare.append(bare_time)
    finally:
        unmount(bundle / "rootfs")
        _remove_bench_cgroups()
    ratio = statistics.median(ours) / statistics.median(bare)
    return {"dockyard_launch_to_exit_median_s": round(statistics.median(ours), 4),
            "bare_runc_run_median_s": round(statistics.median(bare), 4),
            "ratio": round(ratio, 3), "target_ratio": 1.5,
            # bare `runc run` deletes its container before exiting; ours defers that to destroy()
            "ratio_with_destroy": round((statistics.median(ours) + statistics.median(destroy))
                                        / statistics.median(bare), 3),
            "dockyard_destroy_median_s": round(statistics.median(destroy), 4), "runs": runs}


def bench_update(scratch: Path) -> dict:
    server = registry.Registry(scratch / "registry").start()
    try:
        base = [images.random_file_entries(f"base{n}", 5 * MB) for n in range(3)]
        v1 = images.busybox_image(base + [images.random_file_entries("app", 2 * MB)])
        v2 = images.busybox_image(base + [images.random_file_entries("app", 2 * MB)])
        refs = []
        for tag, image in (("v1", v1), ("v2", v2)):
            layout = image.write_oci_layout(scratch / f"update-{tag}", tag)
            ref = f"{server.host}/bench/app:{tag}"
            images.skopeo_copy(f"oci:{layout}:{tag}", f"docker://{ref}")
            refs.append(ref)
        store = ImageStore(scratch / "update-work")
        store.pull(refs[0])
        v1_bytes = store.last_client.bytes_received
        store.pull(refs[1])
        v2_bytes = store.last_client.bytes_received
        top = v2.layer_descriptors[-1]["size"]
        return {"v1_bytes": v1_bytes, "v2_bytes": v2_bytes, "top_layer_bytes": top,
                "ratio": round(v2_bytes / top, 4), "target_ratio": 1.05}
    finally:
        server.stop()


def _cpu_seconds() -> float:
    """CPU used so far by this process and its reaped children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


HOST_MODES = {"plain": "posix/cpu,posix/mem", "cgroups": "cgroups/cpu,cgroups/mem",
              "cgroups_pid": "cgroups/cpu,cgroups/mem,namespaces/pid"}


def bench_host(scratch: Path, runs: int) -> dict:
    """`true` as a host task under each agent --isolation (plain, cgroups, cgroups + PID
    namespace: the default), interleaved."""
    launcher = HostLauncher()
    samples: dict[str, dict[str, list[float]]] = {mode: {"wall": [], "cpu": []} for mode in HOST_MODES}
    saved = os.environ.get("DOCKYARD_ISOLATION")
    try:
        for run in range(-3, runs):  # three warm-up rounds, not counted
            for mode, isolation in HOST_MODES.items():
                os.environ["DOCKYARD_ISOLATION"] = isolation
                spec = LaunchSpec(task_id=f"host-{mode}-{run}", command={"value": "true"},
                                  env={"PATH": "/usr/bin:/bin"}, sandbox=scratch / f"host-{mode}-{run}",
                                  resources={"cpus": 0.1, "mem": 32}, work_dir=scratch / "host-work")
                cpu, started = _cpu_seconds(), time.perf_counter()
                process = launcher.launch(spec)
                info = process.wait(30)
                process.destroy()
                wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
                if info is None or info.exit_code != 0:
                    raise RuntimeError(f"{mode} `true` did not exit 0: {info}")
                if mode != "plain" and process.isolation is None:
                    raise RuntimeError("host isolation is not available here (root, cgroups)")
                if mode == "cgroups_pid" and not process.isolation.pid_namespace:
                    raise RuntimeError("no PID namespace for host tasks here (nsenter, a C compiler)")
                if run >= 0:
                    samples[mode]["wall"].append(wall)
                    samples[mode]["cpu"].append(cpu)
                shutil.rmtree(spec.sandbox, ignore_errors=True)
    finally:
        if saved is None:
            os.environ.pop("DOCKYARD_ISOLATION", None)
        else:
            os.environ["DOCKYARD_ISOLATION"] = saved
    result: dict = {"runs": runs}
    for mode, values in samples.items():
        result[f"{mode}_wall_median_s"] = round(statistics.median(values["wall"]), 4)
        result[f"{mode}_cpu_median_s"] = round(statistics.median(values["cpu"]), 4)
    for mode in ("cgroups", "cgroups_pid"):
        extra = result[f"{mode}_cpu_median_s"] - result["plain_cpu_median_s"]
        result[f"{mode}_extra_cpu_s"] = round(extra, 4)
        # what the isolation alone would allow on 2 cores if nothing else used CPU
        result[f"{mode}_isolation_tasks_per_s_on_2_cores"] = round(2 / max(extra, 1e-4), 1)
    return result


def _remove_bench_cgroups() -> None:
    """The bare-runc runs leave empty `dockyard-bench` parents in each hierarchy: remove them."""
    roots = {Path(point) for _root, point, _fstype, _options in cgroups._mountinfo()}
    for root in roots:
        for directory, subdirs, _files in os.walk(root, topdown=False):
            if Path(directory).name == "dockyard-bench" or "/dockyard-bench/" in directory:
                try:
                    os.rmdir(directory)
                except OSError:
                    pass


SECTIONS = ("start", "overhead", "update", "host")


def run(bench_dir: Path | None = None, runs: int = 9, sizes: list[int] | None = None,
        only: tuple[str, ...] = SECTIONS) -> dict:
    bench_dir = Path(bench_dir or DEFAULT_DIR)
    bench_dir.mkdir(parents=True, exist_ok=True)
    sizes = sizes or [1, 100, 1000]
    result: dict = {"benchmark": "containers"}
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=bench_dir))
    try:
        if "start" in only or "overhead" in only:
            started = time.monotonic()
            work, names = build_store(bench_dir, sizes)
            result["image_build_s"] = round(time.monotonic() - started, 1)
            if "start" in only:
                result["start"] = bench_start(work, names, runs, scratch)
            if "overhead" in only:
                result["overhead"] = bench_overhead(work, names[min(sizes)], max(runs * 3, 15), scratch)
        if "update" in only:
            result["update"] = bench_update(scratch)
        if "host" in only:
            result["host"] = bench_host(scratch, max(runs * 5, 30))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _remove_bench_cgroups()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    print(json.dumps(run(args.bench_dir, args.runs, sizes, only), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
