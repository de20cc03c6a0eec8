"""`task exec`: time to run `true` in a task against `runc exec`, and bytes/s through a session.

    .venv/bin/python -m bench.bench_exec [--runs N] [--megabytes M]      (python -m bench exec)
Prints one JSON document. Needs root (runc, overlay, cgroups).

One secured cluster (the test harness's: HTTP Basic, ACLs, executor tokens, as `dockyard up`
on loopback), one busybox task. Side by side, interleaved, in the same run:

1. latency: `exec_task(TASK, ["true"])` as the CLI runs it (the master's view to find the
   task, the session on the agent, WAIT for the exit status), against `runc exec` of the same
   container directly. Median of each and their ratio; target at most 2x. The client's
   process start is not in it (it is the same for any command); `cold_cli_ms` says what a
   whole `python -m framework.mesos.attach exec` costs, for information.
2. throughput: `cat` of an M MB file (default 100) in the task's sandbox through a session's
   stdout, into a sink that counts, against `cat` of the same file on the host into the same
   sink through a pipe, and against `runc exec … cat` of it (the runtime in the foreground,
   which relays the command's output through a pipe of its own). Bytes per second of each,
   start to end, and their ratios; target at least 0.5x of the host's. `exec_stream_mb_s` is
   the same sessions from their first byte to their last: a session's start (tens of ms, the
   latency above) weighs on a transfer the host's `cat` makes in about as long.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from framework.local.agent import checkpoint  # noqa: E402
from framework.mesos import attach  # noqa: E402
from framework.security.client import ClientConfig  # noqa: E402
from tests.support.cluster import Cluster  # noqa: E402
from tests.support.framework import RawFramework, command_task  # noqa: E402
from tests.support import images  # noqa: E402

CHUNK = 1 << 20


class Sink:
    """Counts what is written, keeps nothing: stdout for a benchmark. It notes when the first and
    the last bytes came, to tell a session's streaming from its start."""

    def __init__(self) -> None:
        self.bytes = 0
        self.first = self.last = 0.0

    def write(self, data: bytes) -> int:
        self.last = time.perf_counter()
        if not self.bytes:
            self.first = self.last
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def latency(settings: ClientConfig, task_id: str, runc: list[str], runs: int) -> dict:
    ours, direct = [], []
    for _ in range(runs):
        started = time.perf_counter()
        code = attach.exec_task(settings, task_id, ["true"], stdout=Sink(), stderr=Sink())  # type: ignore[arg-type]
        ours.append(time.perf_counter() - started)
        if code != 0:
            raise RuntimeError(f"exec true exited {code}")
        started = time.perf_counter()
        subprocess.run([*runc, "true"], check=True)
        direct.append(time.perf_counter() - started)
    exec_ms, runc_ms = statistics.median(ours) * 1000, statistics.median(direct) * 1000
    cold = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "framework.mesos.attach", "--config", str(settings.source), "exec",
                        task_id, "--", "true"], cwd=REPO, check=True)
        cold.append(time.perf_counter() - started)
    return {"exec_true_ms": round(exec_ms, 1), "runc_exec_true_ms": round(runc_ms, 1),
            "latency_ratio": round(exec_ms / runc_ms, 2), "latency_target": 2.0,
            "cold_cli_ms": round(statistics.median(cold) * 1000, 1)}


def throughput(settings: ClientConfig, task_id: str, inside: str, outside: Path, runc: list[str],
               runs: int) -> dict:
    size = outside.stat().st_size
    ours, streaming, local, runtime = [], [], [], []
    for _ in range(runs):
        sink = Sink()
        started = time.perf_counter()
        attach.exec_task(settings, task_id, ["cat", inside], stdout=sink, stderr=Sink())  # type: ignore[arg-type]
        ours.append(sink.bytes / (time.perf_counter() - started))
        if sink.bytes != size:
            raise RuntimeError(f"the session relayed {sink.bytes} bytes of {size}")
        streaming.append(sink.bytes / (sink.last - sink.first))
        local.append(_piped(["cat", str(outside)]))
        runtime.append(_piped([*runc, "cat", inside]))
    session, baseline, direct = statistics.median(ours), statistics.median(local), statistics.median(runtime)
    return {"file_mb": size >> 20, "exec_cat_mb_s": round(session / 1e6, 1), "local_cat_mb_s": round(baseline / 1e6, 1),
            "throughput_ratio": round(session / baseline, 2), "throughput_target": 0.5,
            "runc_exec_cat_mb_s": round(direct / 1e6, 1), "runc_ratio": round(session / direct, 2),
            # the same sessions from their first byte to their last: without the start (the task
            # found through the master, the runtime's exec) that `exec_true_ms` measures
            "exec_stream_mb_s": round(statistics.median(streaming) / 1e6, 1),
            "stream_ratio": round(statistics.median(streaming) / baseline, 2)}


def _piped(argv: list[str]) -> float:
    """Bytes per second of `argv`'s stdout into a sink, through a pipe."""
    sink = Sink()
    started = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        while chunk := process.stdout.read1(CHUNK):
            sink.write(chunk)
    return sink.bytes / (time.perf_counter() - started)


def run(runs: int = 15, megabytes: int = 100) -> dict:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-exec-") as tmp:
        work = Path(tmp)
        (work / "archives").mkdir()
        images.cli_archive(work / "archives", "busybox:bench")
        image = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox:bench"}}}}
        with Cluster(work / "cluster", agents=1, agent_args=["--docker-registry", str(work / "archives")]).start() \
                as cluster:
            framework = RawFramework(cluster.master_api()).start()
            try:
                framework.launch(framework.offer(), [command_task("sleep 3600", task_id="bench-exec", mem=512,
                                                                  cpus=1, container=image)])
                status = framework.wait_state("bench-exec", "TASK_RUNNING", timeout=60)
                operator = cluster.operator
                assert operator is not None
                document = {"master": cluster.master_url, "principal": operator.principal, "secret": operator.secret}
                (work / "client.json").write_text(json.dumps(document))
                settings = ClientConfig(**document, source=str(work / "client.json"))
                value = status["container_status"]["container_id"]["value"]
                record = checkpoint.read_json(cluster.workdir / "agent0" / "containers" / value / "state.json")
                assert isinstance(record, dict)
                runc = ["runc", "--root", str(cluster.workdir / "agent0" / "runtime" / "runc"), "exec", value]
                big = Path(record["sandbox"]) / "big"
                subprocess.run([*runc, "dd", "if=/dev/urandom", "of=/mnt/mesos/sandbox/big", "bs=1M",
                                f"count={megabytes}"], check=True, capture_output=True)
                result = {**latency(settings, "bench-exec", runc, runs),
                          **throughput(settings, "bench-exec", "/mnt/mesos/sandbox/big", big, runc,
                                       max(3, runs // 3))}
            finally:
                framework.stop()
    result["ok"] = (result["latency_ratio"] <= result["latency_target"]
                    and result["throughput_ratio"] >= result["throughput_target"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--megabytes", type=int, default=100)
    options = parser.parse_args()
    print(json.dumps(run(options.runs, options.megabytes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
