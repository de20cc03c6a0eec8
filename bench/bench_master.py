"""The embedded master's allocator alone: CPU time of one allocation cycle.

1,000 agents (`cpus:16;mem:65536;disk:100000;ports:[31000-32000]`, a third with a
reservation for role `ops`) and 10 frameworks in 3 roles, weighted DRF.

* full: every cycle starts from every agent free (the previous cycle's offers
  are declined with `refuse_seconds: 0`, so no filter);
* busy: half of the declines keep the default 5 s filter and one offer in ten
  launches a task that keeps running, as in a busy cluster.

Only `Allocator.allocate()` is timed, with `time.process_time` (CPU, not wall;
the garbage collector stays on, its pauses are part of the cost; as `dockyard
master` does after start-up, objects that exist before the cluster state is
built are frozen out of its full passes). Each phase
runs twice: the real allocator alone (the headline figures), then, interleaved
cycle by cycle on identical state, the real allocator and
`bench/_allocator_reference.py` (shares recomputed from scratch), which must
produce the very same allocations; ratios are reference / real, so noise on a
shared machine hits both sides alike.

    .venv/bin/python -m bench.bench_master [--agents 1000 --frameworks 10 --cycles 50]
Prints one JSON document. Targets: full cycle p50 <= 50 ms, busy cycle p99 <= 50 ms.
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time

from bench._allocator_reference import ReferenceAllocator
from framework.local.master.allocator import Allocation, Allocator
from framework.mesos.resources import Resources

ROLES = ("*", "dev", "ops")
TARGET_MS = 50.0


def build(agents: int, frameworks: int, seed: int, cls: type[Allocator] = Allocator
          ) -> Allocator:
    allocator = cls(seed=seed)
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


def _timed(allocator: Allocator, now: float) -> tuple[float, list[Allocation]]:
    start = time.process_time()
    made = allocator.allocate(now)
    return time.process_time() - start, made


def _answer(allocator: Allocator, made: list[Allocation], decisions: list[tuple[bool, float]],
            task: Resources, now: float) -> None:
    """Answer every offer as decided: launch one task, or decline (maybe with a filter)."""
    for allocation, (launch, refuse) in zip(made, decisions):
        resources = allocation.resources - task if launch else allocation.resources
        allocator.recover(allocation.framework_id, allocation.agent_id, allocation.role,
                          resources, refuse_seconds=refuse, now=now)


def run_phase(agents: int, frameworks: int, cycles: int, seed: int, *, busy: bool,
              paired: bool) -> dict[str, list[float] | int | bool]:
    """Run `cycles` cycles on the real allocator, and the reference beside it if `paired`."""
    real = build(agents, frameworks, seed)
    reference = build(agents, frameworks, seed, ReferenceAllocator) if paired else None
    rng = random.Random(seed)
    task = Resources.parse("cpus:0.5;mem:512")
    real_times: list[float] = []
    reference_times: list[float] = []
    offers = 0
    same = True
    now = 0.0
    for cycle in range(cycles):
        # alternate which side goes first, so neither always runs on a warm cache
        if reference is not None and cycle % 2:
            ref_time, ref_made = _timed(reference, now)
            real_time, made = _timed(real, now)
        else:
            real_time, made = _timed(real, now)
            if reference is not None:
                ref_time, ref_made = _timed(reference, now)
        real_times.append(real_time)
        offers += len(made)
        if reference is not None:
            reference_times.append(ref_time)
            same = same and made == ref_made
        decisions = []
        for allocation in made:
            if busy and rng.random() < 0.1 and allocation.resources.contains(task):
                decisions.append((True, 5.0))
            else:
                decisions.append((False, 5.0 if busy and rng.random() < 0.5 else 0.0))
        _answer(real, made, decisions, task, now)
        if reference is not None:
            _answer(reference, ref_made, decisions, task, now)
        now += 1.0
    return {"real": real_times, "reference": reference_times, "offers": offers, "same": same}


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values) * 1000, 2),
            "p99": round(percentile(values, 0.99) * 1000, 2),
            "max": round(max(values) * 1000, 2)}


def run(agents: int = 1000, frameworks: int = 10, cycles: int = 50, seed: int = 7) -> dict:
    """Both phases; what `python -m bench master` reports."""
    result: dict = {"benchmark": "master_allocation_cycle", "agents": agents,
                    "frameworks": frameworks, "cycles": cycles,
                    "baseline": "bench/_allocator_reference.py (textbook DRF, same results)"}
    gc.collect()
    gc.freeze()  # what framework/local/master/main.py does before serving
    try:
        _phases(result, agents, frameworks, cycles, seed)
    finally:
        gc.unfreeze()
    return result


def _phases(result: dict, agents: int, frameworks: int, cycles: int, seed: int) -> None:
    for name, busy in (("full", False), ("busy", True)):
        # Alone first: the headline figures, with the heap a master would have.
        alone = run_phase(agents, frameworks, cycles, seed, busy=busy, paired=False)
        real = alone["real"]
        assert isinstance(real, list)
        result[f"{name}_cycle_cpu_ms"] = _ms(real)
        result[f"{name}_offers_per_cycle"] = round(int(alone["offers"]) / cycles, 2)
        # Then side by side with the reference (twice the heap, so both sides pay
        # more for garbage collection): the ratios and the same-results check.
        paired = run_phase(agents, frameworks, cycles, seed, busy=busy, paired=True)
        real, reference = paired["real"], paired["reference"]
        assert isinstance(real, list) and isinstance(reference, list)
        result[f"{name}_paired_cpu_ms"] = _ms(real)
        result[f"{name}_reference_cpu_ms"] = _ms(reference)
        result[f"{name}_speedup_p50"] = round(statistics.median(reference)
                                              / statistics.median(real), 2)
        result[f"{name}_speedup_total"] = round(sum(reference) / sum(real), 2)
        result[f"{name}_same_allocations_as_reference"] = paired["same"]
    full_p50 = result["full_cycle_cpu_ms"]["p50"]
    busy_p99 = result["busy_cycle_cpu_ms"]["p99"]
    result["busy_over_full_p50"] = round(result["busy_cycle_cpu_ms"]["p50"] / full_p50, 2)
    result["target_ms"] = TARGET_MS
    result["full_p50_over_target"] = round(full_p50 / TARGET_MS, 2)
    result["busy_p99_over_target"] = round(busy_p99 / TARGET_MS, 2)
    result["meets_target"] = (full_p50 <= TARGET_MS and busy_p99 <= TARGET_MS
                              and result["full_same_allocations_as_reference"]
                              and result["busy_same_allocations_as_reference"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--frameworks", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.agents, args.frameworks, args.cycles, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
