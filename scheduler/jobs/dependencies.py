"""Job dependencies (as Chronos's parents): a job runs after all its parents succeed.

Pure graph code: cycle detection at submission, and the readiness rule the
manager applies when a run succeeds.
"""
from __future__ import annotations

from typing import Mapping


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle in job -> parents edges, as a path `[a, b, ..., a]`, or None."""
    white, grey, black = 0, 1, 2
    color = {node: white for node in graph}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for parent in graph.get(node, []):
            state = color.get(parent, black if parent not in graph else white)
            if state == grey:
                return stack[stack.index(parent):] + [parent]
            if state == white:
                found = visit(parent)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for node in sorted(graph):
        if color[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def ready_children(graph: Mapping[str, list[str]], succeeded: str, last_success: Mapping[str, float],
                   last_triggered: Mapping[str, float]) -> list[str]:
    """Children of `succeeded` whose every parent succeeded since the child last ran."""
    out = []
    for child, parents in sorted(graph.items()):
        if succeeded not in parents:
            continue
        since = last_triggered.get(child, float("-inf"))
        if all(last_success.get(parent, float("-inf")) > since for parent in parents):
            out.append(child)
    return out
