"""The embedded master's allocator alone: CPU time of one full allocation cycle.

1,000 agents (`cpus:16;mem:65536;disk:100000;ports:[31000-32000]`, a third with a
reservation for role `ops`) and 10 frameworks in 3 roles, weighted DRF. Each
cycle starts from every agent free (the previous cycle's offers are declined
with `refuse_seconds: 0`, so no filter), then `Allocator.allocate()` runs once;
only that call is timed, with `time.process_time` (CPU, not wall). A second
phase keeps 5 s filters on half of the declines and a few running tasks per
agent, as in a busy cluster.

    .venv/bin/python -m bench.bench_master [--agents 1000 --frameworks 10 --cycles 50]
Prints one JSON document. Target: full cycle p50 <= 50 ms CPU.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from framework.local.allocator import Allocation, Allocator
from framework.mesos.resources import Resources

ROLES = ("*", "dev", "ops")


def build(agents: int, frameworks: int, seed: int) -> Allocator:
    allocator = Allocator(seed=seed)
    plain = Resources.parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]")
    reserved = Resources.parse("cpus:12;mem:49152;disk:100000;ports:[31000-32000]") + \
        Resources.parse("cpus:4;mem:16384", role="ops")
    for index in range(agents):
        allocator.add_agent(f"S{index}", reserved if index % 3 == 0 else plain)
    for index in range(frameworks):
        allocator.add_framework(f"F{index:04d}", [ROLES[index % len(ROLES)]])
    return allocator


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_cycles(allocator: Allocator, cycles: int, *, filters: bool, rng: random.Random
               ) -> tuple[list[float], int]:
    times: list[float] = []
    offers = 0
    now = 0.0
    task = Resources.parse("cpus:0.5;mem:512")
    for _ in range(cycles):
        start = time.process_time()
        made: list[Allocation] = allocator.allocate(now)
        times.append(time.process_time() - start)
        offers += len(made)
        for allocation in made:  # not timed: answer every offer
            if filters and rng.random() < 0.1 and allocation.resources.contains(task):
                # launch one task, decline the rest with the default filter
                allocator.recover(allocation.framework_id, allocation.agent_id, allocation.role,
                                  allocation.resources - task, refuse_seconds=5.0, now=now)
            else:
                allocator.recover(allocation.framework_id, allocation.agent_id, allocation.role,
                                  allocation.resources,
                                  refuse_seconds=5.0 if filters and rng.random() < 0.5 else 0,
                                  now=now)
        now += 1.0
    return times, offers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--frameworks", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    allocator = build(args.agents, args.frameworks, args.seed)
    full, full_offers = run_cycles(allocator, args.cycles, filters=False, rng=rng)
    busy_alloc = build(args.agents, args.frameworks, args.seed)
    busy, busy_offers = run_cycles(busy_alloc, args.cycles, filters=True, rng=rng)
    full_cpu = sum(full)
    result = {
        "benchmark": "master_allocation_cycle",
        "agents": args.agents, "frameworks": args.frameworks, "cycles": args.cycles,
        "full_cycle_cpu_ms": {"p50": round(statistics.median(full) * 1000, 2),
                              "p99": round(percentile(full, 0.99) * 1000, 2),
                              "max": round(max(full) * 1000, 2)},
        "offers_per_full_cycle": full_offers / args.cycles,
        "offers_per_cpu_second": round(full_offers / full_cpu) if full_cpu else None,
        "busy_cycle_cpu_ms": {"p50": round(statistics.median(busy) * 1000, 2),
                              "p99": round(percentile(busy, 0.99) * 1000, 2)},
        "offers_per_busy_cycle": busy_offers / args.cycles,
        "target_full_cycle_p50_ms": 50,
        "meets_target": statistics.median(full) * 1000 <= 50,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
