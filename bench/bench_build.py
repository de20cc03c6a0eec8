"""`dockyard image build` against `buildah bud` on the same Dockerfile, side by side in one run.

    .venv/bin/python -m bench build
    .venv/bin/python -m bench.bench_build [--bench-dir DIR] [--runs N]

Prints one JSON document. Needs root (overlay, runc, cgroups), buildah, docker-registry.
The Dockerfile starts `FROM scratch` with busybox-static from the context (no network
for base images here) and has three RUN steps, a 300-file COPY and a last COPY of one
file. Both builders run through their command line, RUN under runc, with no network;
buildah with its overlay storage and `--layers` (its cache).

1. cold: an empty store and cache for each (an empty buildah storage for buildah),
   interleaved, medians; target: ours at most 1.2x buildah's time.
2. unchanged: a rebuild with nothing changed: `build()` in this process and the whole
   command, medians, and the layers it wrote; target: at most 0.2 s, no layer written.
3. one file: the file of the last COPY changed, rebuilt with `--push` to a registry
   that has the first version: the steps rebuilt (only the last may be) and the bytes
   sent over that layer's size; target: at most 1.05.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from executor.images.dockerfile import BuildOptions, build  # noqa: E402
from executor.images.store import ImageStore  # noqa: E402
from tests.support import registry  # noqa: E402

DEFAULT_DIR = Path("/var/tmp/dockyard-bench")
COLD_TARGET = 1.2
UNCHANGED_TARGET_S = 0.2
PUSH_TARGET = 1.05
DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp /srv && chmod 1777 /tmp && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
WORKDIR /srv
COPY app/ ./app/
RUN find app -type f | wc -l > app.count
ENV MODE=bench
COPY main.sh ./
CMD ["/srv/main.sh"]
"""


def make_context(root: Path) -> Path:
    (root / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "rootfs" / "bin" / "busybox")
    for number in range(300):
        path = root / "app" / f"module{number % 10}" / f"file{number}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"line {number}\n" * (number * 7 % 2000 + 50))
    write_main(root, "v1")
    (root / "Dockerfile").write_text(DOCKERFILE)
    return root


def write_main(root: Path, version: str) -> None:
    """The app's entry point with a bundle of data in it (about 200 kB that gzip cannot shrink),
    so the layer dwarfs the config and manifest a push also sends."""
    bundle = base64.b64encode(os.urandom(150_000)).decode()
    (root / "main.sh").write_text(f"#!/bin/sh\necho {version}\n: '{bundle}'\n")
    (root / "main.sh").chmod(0o755)


def dockyard(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "dockyard.py"), "image", "build", *args],
                          capture_output=True, text=True, timeout=600)


def buildah(storage: Path, context: Path) -> None:
    argv = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", "overlay", "bud", "--runtime", shutil.which("runc") or "runc",
            "--network", "none", "--layers", "--identity-label=false", "-t", "bench", str(context)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"buildah bud failed: {done.stderr.strip()[-800:]}")


def drop_buildah(storage: Path) -> None:
    subprocess.run(["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
                    "--storage-driver", "overlay", "rmi", "--all", "--force"], capture_output=True, timeout=300)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(str(storage)):
            subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(storage, ignore_errors=True)


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def ours_cli(work: Path, context: Path, *extra: str, tag: str = "bench:1") -> dict:
    done = dockyard("--work-dir", str(work), "-t", tag, "--json", *extra, str(context))
    if done.returncode != 0:
        raise RuntimeError(f"dockyard image build failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def run(bench_dir: Path | None = None, runs: int = 5) -> dict:
    if shutil.which("buildah") is None:
        raise RuntimeError("buildah is not installed (Debian package buildah)")
    bench_dir = Path(bench_dir or DEFAULT_DIR)
    bench_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=bench_dir))
    server = None
    try:
        context = make_context(scratch / "context")
        cold: dict[str, list[float]] = {"dockyard": [], "buildah": []}
        for number in range(runs):
            order = ("dockyard", "buildah") if number % 2 == 0 else ("buildah", "dockyard")
            for builder in order:
                if builder == "dockyard":
                    work = scratch / f"cold-{number}"
                    cold[builder].append(timed(lambda: ours_cli(work, context)))
                    shutil.rmtree(work)
                else:
                    storage = scratch / f"buildah-{number}"
                    cold[builder].append(timed(lambda: buildah(storage, context)))
                    drop_buildah(storage)
        cold_ratio = statistics.median(cold["dockyard"]) / statistics.median(cold["buildah"])

        work = scratch / "warm"
        ours_cli(work, context)
        store = ImageStore(work)
        in_process, cli, written = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            result = build(BuildOptions(context, tags=["bench:1"]), store)
            in_process.append(time.perf_counter() - started)
            written.append(result.layers_written)
            cli.append(timed(lambda: written.append(ours_cli(work, context)["layers_written"])))
        storage = scratch / "buildah-warm"
        buildah(storage, context)
        buildah_unchanged = statistics.median([timed(lambda: buildah(storage, context)) for _ in range(runs)])
        drop_buildah(storage)

        server = registry.Registry(scratch / "registry").start()
        name = f"{server.host}/bench/app:1"
        first = ours_cli(work, context, "--push", tag=name)
        write_main(context, "v2")
        second = ours_cli(work, context, "--push", tag=name)
        rebuilt = [step["instruction"] for step in second["steps"] if step["layer"] and not step["cached"]]
        last_layer = second["steps"][-2]["size"]  # COPY main.sh ./ (CMD comes after it)
        sent = second["pushed"][0]["bytes_sent"]
        unchanged = statistics.median(in_process)
        return {
            "runs": runs,
            "cold_dockyard_median_s": round(statistics.median(cold["dockyard"]), 3),
            "cold_buildah_median_s": round(statistics.median(cold["buildah"]), 3),
            "cold_ratio": round(cold_ratio, 3),
            "cold_target_ratio": COLD_TARGET,
            "unchanged_build_median_s": round(unchanged, 4),
            "unchanged_cli_median_s": round(statistics.median(cli), 3),
            "unchanged_buildah_median_s": round(buildah_unchanged, 3),
            "unchanged_layers_written": max(written),
            "unchanged_target_s": UNCHANGED_TARGET_S,
            "changed_steps_rebuilt": rebuilt,
            "changed_layer_bytes": last_layer,
            "changed_bytes_pushed": sent,
            "first_push_bytes": first["pushed"][0]["bytes_sent"],
            "push_ratio": round(sent / last_layer, 3),
            "push_target_ratio": PUSH_TARGET,
            "within_target": (cold_ratio <= COLD_TARGET and unchanged <= UNCHANGED_TARGET_S and max(written) == 0
                              and rebuilt == ["COPY main.sh ./"] and sent <= PUSH_TARGET * last_layer),
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result = {"benchmark": "build", **run(args.bench_dir, args.runs)}
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
