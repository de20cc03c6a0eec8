"""`python -m bench.against`: this checkout against a revision, in one run, as ratios."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.against import compare, numbers

REPO = Path(__file__).resolve().parents[1]


def test_figures_are_medians_of_each_tree_and_their_ratio() -> None:
    runs = {"base": [{"rate": 100, "p": {"p99": 2.0}, "label": "x"}, {"rate": 200, "p": {"p99": 4.0}},
                     {"rate": 300, "p": {"p99": 6.0}}],
            "this": [{"rate": 150, "p": {"p99": 4.0}}, {"rate": 100, "p": {"p99": 4.0}},
                     {"rate": 200, "p": {"p99": 2.0}}]}
    figures = compare(runs)
    assert figures["rate"] == {"base": 200.0, "this": 150.0, "ratio": 0.75,
                               "base_range": [100.0, 300.0], "this_range": [100.0, 200.0]}
    assert figures["p.p99"]["base"] == 4.0 and figures["p.p99"]["ratio"] == 1.0
    assert "label" not in figures
    assert dict(numbers({"ok": True, "n": 3})) == {"n": 3.0}  # booleans are not figures


def test_cpu_per_task_gets_its_sum_over_processes_in_both_trees() -> None:
    """A benchmark that splits CPU per task by process gets the total beside it, also from a
    tree whose benchmark predates the total: work moved between processes cancels out."""
    runs = {"base": [{"mode": {"cpu_ms_per_task": {"agent": 2.0, "master": 1.0}}}],
            "this": [{"mode": {"cpu_ms_per_task": {"agent": 1.0, "master": 1.5, "executor": 0.25}}}]}
    figures = compare(runs)
    assert figures["mode.cpu_ms_per_task_total"]["base"] == 3.0
    assert figures["mode.cpu_ms_per_task_total"]["this"] == 2.75
    assert figures["mode.cpu_ms_per_task_total"]["ratio"] == round(2.75 / 3.0, 3)
    assert "mode.cpu_ms_per_task.executor" not in figures  # only figures both trees have


def scratch_trees() -> set[str]:
    listed = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if "bench-against-" in line}


def test_a_real_benchmark_against_head_runs_both_trees(tmp_path: Path) -> None:
    before = scratch_trees()  # another comparison may be running
    done = subprocess.run([sys.executable, "-m", "bench.against", "HEAD", "nosuch", "--rounds", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "nosuch" and len(line["errors"]) == 2, line
    assert "unknown benchmark" in line["errors"][0]
    assert scratch_trees() <= before  # its scratch tree is gone
