"""What secrets add to a launch: the same container app with and without 10 secrets.

On `dockyard up --agents 2` (secured as `up` is, so the scheduler has its
secrets key), 10 secrets are stored; then the same busybox container service
(`sleep`, `instances` of them) is deployed twice per round, alternating: plain,
and with the 10 secrets (5 environment variables, 5 files). For each task the
launch latency is POST -> TASK_RUNNING (`startedAt`), which with secrets
includes opening them in the scheduler, carrying them in the launch, the
executor's tmpfs, the files, the bind mounts and config.json on the tmpfs.
Rounds alternate so the machine's noise falls on both sides alike.

Target: the p50 launch latency with secrets at most 1.2x the plain one.

    .venv/bin/python -m bench secrets             # DOCKYARD_BENCH_SECRETS_INSTANCES=10, _ROUNDS=3
    .venv/bin/python -m bench.bench_secrets
"""
from __future__ import annotations

import os
import secrets as random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._up import Up, quantile
from bench.bench_services import IMAGE, _epoch, build_image, registry_env

TARGET_RATIO = 1.2
SECRETS = 10


def app(app_id: str, instances: int, with_secrets: bool) -> dict[str, Any]:
    """The service; with secrets: 5 as environment variables and 5 as files (`secrets/s5`...)."""
    spec: dict[str, Any] = {"id": app_id, "cmd": "sleep 600", "cpus": 0.05, "mem": 16, "instances": instances,
                            "portDefinitions": [], "container": {"type": "MESOS", "docker": {"image": IMAGE}}}
    if with_secrets:
        names = [f"s{i}" for i in range(SECRETS)]
        spec["secrets"] = {name: {"source": f"bench/{name}"} for name in names}
        spec["env"] = {f"SECRET_{i}": {"secret": name} for i, name in enumerate(names[:SECRETS // 2])}
        spec["container"]["volumes"] = [{"containerPath": f"secrets/{name}", "secret": name}
                                        for name in names[SECRETS // 2:]]
    return spec


def deploy(client: httpx.Client, spec: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """POST, wait until every instance runs; per task POST -> running, seconds."""
    posted = time.time()
    started = time.monotonic()
    client.post("/v2/apps", json=spec).raise_for_status()
    tasks: list[dict] = []
    while time.monotonic() < started + timeout:
        tasks = client.get(f"/v2/apps{spec['id']}/tasks").json()["tasks"]
        if len([t for t in tasks if t["state"] == "TASK_RUNNING"]) >= spec["instances"]:
            break
        time.sleep(0.1)
    all_running = time.monotonic() - started
    latencies = [s - posted for t in tasks if (s := _epoch(t.get("startedAt")))]
    if len(latencies) < spec["instances"]:
        raise RuntimeError(f"{spec['id']}: {len(latencies)} of {spec['instances']} instances ran in {timeout:.0f}s")
    return {"latencies": latencies, "all_running": all_running}


def delete(client: httpx.Client, app_id: str, timeout: float = 120.0) -> None:
    client.delete(f"/v2/apps{app_id}", params={"force": "true"}).raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(t["appId"] == app_id for t in client.get("/v2/tasks").json()["tasks"]):
            return
        time.sleep(0.2)


def run(instances: int | None = None, rounds: int | None = None) -> dict:
    """The whole benchmark (what `python -m bench secrets` calls): one JSON-able dict."""
    count = instances or int(os.environ.get("DOCKYARD_BENCH_SECRETS_INSTANCES", "10"))
    rounds = rounds or int(os.environ.get("DOCKYARD_BENCH_SECRETS_ROUNDS", "3"))
    registry = Path(tempfile.mkdtemp(prefix="dockyard-bench-registry-"))
    keys = Path(tempfile.mkdtemp(prefix="dockyard-bench-keys-"))
    try:
        build_image(registry)
        extra: tuple[str, ...] = ()
        if (os.environ.get("DOCKYARD_BENCH_SECURITY") or "auth") == "insecure":  # no bundle: a key of our own
            from scheduler.secrets.crypto import generate_key, write_key_file

            write_key_file(keys / "secrets.key", [generate_key()])
            extra = ("--secrets-key-file", str(keys / "secrets.key"))
        with registry_env(registry), Up(agents=2, resources="cpus:4;mem:4096", scheduler_args=extra) as up:
            client = up.client()
            for index in range(SECRETS):
                client.put(f"/secrets/v1/secret/default/bench/s{index}",
                           json={"value": random.token_urlsafe(32)}).raise_for_status()
            plain: list[float] = []
            secret: list[float] = []
            whole: dict[str, list[float]] = {"plain": [], "secrets": []}
            # A warm-up deploy: the executors start and the image is unpacked once, for both sides.
            deploy(client, app("/bench/warmup", 2, True))
            delete(client, "/bench/warmup")
            for number in range(rounds):
                order = [(False, plain), (True, secret)] if number % 2 == 0 else [(True, secret), (False, plain)]
                for with_secrets, into in order:
                    app_id = f"/bench/{'secrets' if with_secrets else 'plain'}-{number}"
                    result = deploy(client, app(app_id, count, with_secrets))
                    into.extend(result["latencies"])
                    whole["secrets" if with_secrets else "plain"].append(round(result["all_running"], 2))
                    delete(client, app_id)
    finally:
        shutil.rmtree(registry, ignore_errors=True)
        shutil.rmtree(keys, ignore_errors=True)
    plain_p50, secret_p50 = quantile(plain, 0.5), quantile(secret, 0.5)
    ratio = secret_p50 / plain_p50 if plain_p50 else float("inf")
    return {
        "instances": count, "rounds": rounds, "secrets_per_task": SECRETS,
        "plain_launch_p50_s": round(plain_p50, 3), "secrets_launch_p50_s": round(secret_p50, 3),
        "plain_launch_p90_s": round(quantile(plain, 0.9), 3), "secrets_launch_p90_s": round(quantile(secret, 0.9), 3),
        "plain_launch_mean_s": round(statistics.fmean(plain), 3),
        "secrets_launch_mean_s": round(statistics.fmean(secret), 3),
        "all_running_s": whole,
        "ratio_p50": round(ratio, 3), "target_ratio": TARGET_RATIO, "ok": ratio <= TARGET_RATIO,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
