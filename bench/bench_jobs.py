"""10,000 one-second jobs queued at once on `dockyard up --agents 2`.

Reports the drain rate against the rate the cluster's free resources allow
(concurrent slots / job duration), scheduling latency p50/p99 (the scheduler's
offer-round decision time, and submit-to-launch which includes waiting for a
free slot), and the scheduler's memory per queued run (RSS growth while runs
that cannot be placed pile up). Targets: drain >= 90% of the allowed rate,
scheduling latency p99 <= 1 s, <= 5 KB per queued run.

    python -m bench jobs     # DOCKYARD_BENCH_JOBS=10000, DOCKYARD_BENCH_JOB_CPUS=0.1,
                             # DOCKYARD_BENCH_SECURITY=auth (or tls, insecure: see bench/_up.py)
"""
from __future__ import annotations

import os
import time

import httpx

from bench._up import Up, cpu_by_role, histogram_quantile, rss_kb

DURATION = 1.0


def submit(client: httpx.Client, job: str, count: int) -> float:
    started = time.monotonic()
    for _ in range(count):
        client.post(f"/v1/jobs/{job}/runs").raise_for_status()
    return time.monotonic() - started


def run() -> dict:
    count = int(os.environ.get("DOCKYARD_BENCH_JOBS", "10000"))
    cpus = float(os.environ.get("DOCKYARD_BENCH_JOB_CPUS", "0.1"))
    mem = 32.0
    with Up(agents=2, job_history=count + 10) as up:
        client = up.client(timeout=60)  # client.json's credentials (and CA), one keep-alive connection
        total = up.cluster_resources()
        slots = int(min(total["cpus"] / cpus, total["mem"] / mem))
        allowed = slots / DURATION
        # Memory: runs that can never be placed stay queued while we measure.
        client.put("/v1/jobs/probe", json={"id": "probe", "run": {"cmd": "true", "cpus": cpus,
                                                                  "mem": 10_000_000}}).raise_for_status()
        time.sleep(1.0)
        before = rss_kb(up.scheduler.pid)
        probe_submit = submit(client, "probe", count)
        after = rss_kb(up.scheduler.pid)
        client.delete("/v1/jobs/probe", params={"stopCurrentJobRuns": "true"}).raise_for_status()
        # Drain: one-second jobs, all queued at once.
        client.put("/v1/jobs/drain", json={"id": "drain", "run": {"cmd": f"sleep {DURATION:g}",
                                                                  "cpus": cpus, "mem": mem}}).raise_for_status()
        cpu_before = cpu_by_role(up.workdir)
        started = time.monotonic()
        submit_seconds = submit(client, "drain", count)
        done = 0
        while done < count:
            summary = client.get("/v1/jobs/drain", params={"embed": "historySummary"}).json()["historySummary"]
            done = summary["successCount"] + summary["failureCount"]
            if time.monotonic() - started > 3600:
                break
            time.sleep(0.5)
        drain_seconds = time.monotonic() - started
        cpu_after = cpu_by_role(up.workdir)
        failures = summary["failureCount"]
        metrics = client.get("/metrics").text
        security = up.security
    rate = done / drain_seconds if drain_seconds else 0.0

    def q(name: str, quantile: float, label: str = "") -> float | None:
        text = metrics if not label else "\n".join(
            line.replace(label + ",", "") for line in metrics.splitlines() if label in line)
        value = histogram_quantile(text, name, quantile)
        return None if value is None else round(value * 1000, 1)

    return {
        "jobs": count, "security": security, "job_cpus": cpus, "job_seconds": DURATION, "cluster": total,
        "slots": slots, "allowed_runs_per_s": round(allowed, 1),
        "drain_runs_per_s": round(rate, 2), "drain_vs_allowed": round(rate / allowed, 3) if allowed else None,
        "drain_seconds": round(drain_seconds, 1), "finished": done, "failed": failures,
        "submit_runs_per_s": round(count / submit_seconds, 1),
        "offer_round_ms": {"p50": q("dockyard_scheduler_offer_round_seconds", 0.5),
                           "p99": q("dockyard_scheduler_offer_round_seconds", 0.99)},
        "status_apply_ms": {"p50": q("dockyard_scheduler_status_apply_seconds", 0.5),
                            "p99": q("dockyard_scheduler_status_apply_seconds", 0.99)},
        "status_core_wait_ms": {"p50": q("dockyard_scheduler_status_queue_seconds", 0.5),
                                "p99": q("dockyard_scheduler_status_queue_seconds", 0.99)},
        "status_received_to_ack_ms": {"p50": q("dockyard_scheduler_status_ack_seconds", 0.5),
                                      "p99": q("dockyard_scheduler_status_ack_seconds", 0.99)},
        "ack_call_ms": {"p50": q('dockyard_scheduler_mesos_call_seconds', 0.5, 'call="acknowledgeStatusUpdate"'),
                        "p99": q('dockyard_scheduler_mesos_call_seconds', 0.99, 'call="acknowledgeStatusUpdate"')},
        "submit_to_launch_ms": {"p50": q("dockyard_scheduler_queue_seconds", 0.5),
                                "p99": q("dockyard_scheduler_queue_seconds", 0.99)},
        "cpu_share_during_drain": {role: round((cpu_after.get(role, 0) - cpu_before.get(role, 0)) / drain_seconds, 3)
                                   for role in sorted(cpu_after)},
        "machine_load_1m": round(os.getloadavg()[0], 2),
        "scheduler_kb_per_queued_run": round((after - before) / count, 2),
        "probe_submit_runs_per_s": round(count / probe_submit, 1),
        "targets": {"drain_vs_allowed": 0.9, "latency_p99_ms": 1000, "kb_per_queued_run": 5},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
