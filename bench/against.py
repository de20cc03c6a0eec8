"""One benchmark, this checkout against an earlier revision, alternating in one run.

A refactoring must not cost speed, and these machines are too noisy for figures
taken at different times to be compared. This runs `python -m bench NAME` in a
scratch `git worktree` of REV and in this checkout, in turn, ROUNDS times, and
prints each numeric figure's median for both and the ratio this/REV.

    .venv/bin/python -m bench.against c22646a placement master e2e [--rounds 3]

Prints one JSON object per benchmark. Both trees run with this interpreter (and
its virtual environment), so only the code differs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parents[1]


def run_once(tree: Path, name: str, timeout: float) -> dict[str, Any]:
    """The JSON line `python -m bench NAME` prints in `tree` (an error entry when it fails)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        done = subprocess.run([sys.executable, "-m", "bench", name], cwd=tree, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def numbers(result: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every numeric leaf of a benchmark's JSON, by dotted path."""
    if isinstance(result, dict):
        for key, value in result.items():
            yield from numbers(value, f"{prefix}{key}.")
    elif isinstance(result, (int, float)) and not isinstance(result, bool):
        yield prefix.rstrip("."), float(result)


def with_totals(result: Any) -> Any:
    """`result` with a `cpu_ms_per_task_total` beside every `cpu_ms_per_task` (the sum over
    processes), for trees whose benchmark does not print one: the figure a change of where
    the work happens cannot move."""
    if isinstance(result, dict):
        result = {key: with_totals(value) for key, value in result.items()}
        per_task = result.get("cpu_ms_per_task")
        if isinstance(per_task, dict) and "cpu_ms_per_task_total" not in result:
            result["cpu_ms_per_task_total"] = round(sum(v for v in per_task.values()
                                                        if isinstance(v, (int, float))), 3)
    return result


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per tree, the ratio this/base, and each tree's range over its rounds (how far
    one round strays: a ratio inside the ranges' overlap is noise), for every figure both
    trees reported."""
    samples: dict[str, dict[str, list[float]]] = {}
    for tree, results in runs.items():
        samples[tree] = {}
        for result in results:
            for path, value in numbers(with_totals(result)):
                samples[tree].setdefault(path, []).append(value)
    figures = {}
    for path in sorted(set(samples["base"]) & set(samples["this"])):
        base, this = statistics.median(samples["base"][path]), statistics.median(samples["this"][path])
        figures[path] = {"base": base, "this": this, "ratio": round(this / base, 3) if base else None,
                         "base_range": [min(samples["base"][path]), max(samples["base"][path])],
                         "this_range": [min(samples["this"][path]), max(samples["this"][path])]}
    return figures


def worktree(rev: str, where: Path) -> Path:
    path = where / "base"
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.against", description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the revision to compare with (a commit, tag or branch)")
    parser.add_argument("names", nargs="+", help="benchmarks, as `python -m bench` names them")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree, alternating")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one run may take")
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="bench-against-") as scratch:
        base = worktree(args.rev, Path(scratch))
        try:
            for name in args.names:
                runs: dict[str, list[dict[str, Any]]] = {"base": [], "this": []}
                errors = []
                for _ in range(args.rounds):
                    for tree, path in (("base", base), ("this", HERE)):
                        result = run_once(path, name, args.timeout)
                        if "error" in result:
                            errors.append(f"{tree}: {result['error']}")
                        else:
                            runs[tree].append(result)
                if not runs["base"] or not runs["this"]:
                    failed += 1
                    print(json.dumps({"benchmark": name, "against": args.rev, "errors": errors}), flush=True)
                    continue
                print(json.dumps({"benchmark": name, "against": args.rev, "rounds": args.rounds,
                                  "errors": errors, "figures": compare(runs)}), flush=True)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(base)],
                           capture_output=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
