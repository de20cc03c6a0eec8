"""App dependencies (Marathon's `dependencies`): ids resolved as paths, and the cycle check.

Pure graph code: the service manager refuses a change that would make the apps'
dependencies a cycle, and holds a deployment until what it depends on is up.
"""
from __future__ import annotations

import posixpath

from scheduler.services.specs import AppDefinition


def dependency_ids(app: AppDefinition) -> list[str]:
    return absolute_ids(app.id, app.dependencies)


def absolute_ids(app_id: str, dependencies: list[str]) -> list[str]:
    """`dependencies` as absolute app ids: relative ones ("db", "../db") are resolved against
    the app's group, as Marathon resolves a PathId."""
    group = posixpath.dirname(app_id.rstrip("/")) or "/"
    return [posixpath.normpath(posixpath.join(group, d)) if not d.startswith("/") else posixpath.normpath(d)
            for d in dependencies if d]


def find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One cycle of app ids (first id repeated at the end), or [] (depth-first, iterative)."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                path.append(node)
                on_path.add(node)
            children = graph.get(node, [])
            if index < len(children):
                stack.append((node, index + 1))
                child = children[index]
                if child in on_path:
                    return path[path.index(child):] + [child]
                if child not in done:
                    stack.append((child, 0))
            else:
                done.add(node)
                on_path.discard(path.pop())
    return []
