"""Job dependencies: cycles refused, children start when all parents succeeded."""
from __future__ import annotations

from scheduler.jobs.dependencies import find_cycle, ready_children


def test_no_cycle_in_a_diamond() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) is None


def test_cycle_is_found_and_named() -> None:
    cycle = find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_self_loop_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_diamond_child_waits_for_both_parents() -> None:
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert ready_children(graph, "a", {"a": 1}, {}) == ["b", "c"]
    assert ready_children(graph, "b", {"a": 1, "b": 2}, {"b": 1, "c": 1}) == []
    assert ready_children(graph, "c", {"a": 1, "b": 2, "c": 3}, {"b": 1, "c": 1}) == ["d"]
    # d ran at 4: a new success of b alone does not start it again
    assert ready_children(graph, "b", {"a": 1, "b": 5, "c": 3}, {"d": 4}) == []
