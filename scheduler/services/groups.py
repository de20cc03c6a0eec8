"""Marathon's groups: the tree app ids make, the groups that exist on their own, their versions.

Marathon keeps every app in a tree of groups. A group exists once something made it
(a group create, or an app created inside it) and stays, empty, until it is deleted
itself, as Marathon's root group keeps it. `GroupTree` holds those groups (with their
`dependencies`) and the versions of the tree made by group changes, so that
`GET /v2/groups/{id}/versions` and a rollback (`PUT` with `{"version": v}`) find what the
group was.

`plan_update` is Marathon's structural group update (raml/GroupConversion.scala
`UpdateGroupStructureOp`), as a pure function: what the group's apps and subgroups
become. Given `apps`, those are the group's direct apps and the others go; given
`groups`, those are its subgroups (updated the same way, recursively) and the others go
with everything in them; what the update does not name stays as it is.
"""
from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass, field
from typing import Any, Callable

from framework.errors import SpecError

log = logging.getLogger(__name__)

TREE_KEY = "/services/groups"
HISTORY_KEY = "/services/group-versions"
MAX_SNAPSHOTS = 20
MAX_SNAPSHOT_BYTES = 900_000  # one store record each; ZooKeeper refuses a node over 1 MB


def parent_of(path_id: str) -> str:
    return posixpath.dirname(path_id.rstrip("/")) or "/"


def ancestors(path_id: str) -> list[str]:
    """`/a/b/c` -> `["/a", "/a/b"]`: the groups an app or group lives in, root excluded."""
    parts = [p for p in path_id.split("/") if p][:-1]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def inside(path_id: str, group_id: str) -> bool:
    """Whether `path_id` is in the subtree of `group_id` (itself excluded); everything is in `/`."""
    return group_id == "/" or path_id.startswith(group_id.rstrip("/") + "/")


def canonical(raw: str, base: str) -> str:
    """A path id as Marathon resolves it against `base`: absolute stays, relative joins."""
    joined = raw if raw.startswith("/") else posixpath.join(base, raw)
    return posixpath.normpath(joined) if joined.strip("/") else "/"


def child_groups(group_id: str, app_ids: list[str], groups: Any) -> list[str]:
    """The direct subgroups of `group_id`: those that exist on their own, and those its apps'
    ids make."""
    prefix = group_id.rstrip("/") + "/"
    found = {g for g in groups if g != group_id and parent_of(g) == group_id}
    for app_id in app_ids:
        rest = app_id[len(prefix):] if app_id.startswith(prefix) else ""
        if "/" in rest:
            found.add(prefix + rest.split("/", 1)[0])
    return sorted(found)


@dataclass
class GroupChange:
    """What a group update makes of the subtree at `group_id`.

    `apps`: (where in the body, app id, app document) of each app the update names;
    `keep`: app ids left as they are; `groups`: every group the subtree has afterwards,
    with its dependencies; everything else under `group_id` goes."""

    group_id: str
    apps: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    keep: set[str] = field(default_factory=set)
    groups: dict[str, list[str]] = field(default_factory=dict)


def plan_update(group_id: str, document: dict[str, Any], app_ids: list[str], group_deps: dict[str, list[str]],
                path: str = "", check_id: Callable[[str, str], str] | None = None) -> GroupChange:
    """Marathon's structural update of `group_id` by `document` (see the module docstring).

    `app_ids`: every app that exists; `group_deps`: every group that exists, with its
    dependencies; `check_id(raw, where)` normalises an id or raises (422 naming `where`)."""
    check = check_id or (lambda raw, _where: raw)
    change = GroupChange(group_id)
    _walk(change, group_id, document, app_ids, group_deps, path, check)
    return change


def _walk(change: GroupChange, gid: str, document: dict[str, Any], app_ids: list[str],
          group_deps: dict[str, list[str]], path: str, check: Callable[[str, str], str]) -> None:
    dependencies = document.get("dependencies")
    if dependencies is None:
        change.groups[gid] = list(group_deps.get(gid, []))
    elif isinstance(dependencies, list) and all(isinstance(d, str) for d in dependencies):
        change.groups[gid] = [canonical(d, gid) for d in dependencies]
    else:
        raise SpecError(f"{path}/dependencies", "error.expected.jsarray of strings")
    apps = document.get("apps")
    direct = [a for a in app_ids if parent_of(a) == gid]
    if apps is None:
        change.keep.update(direct)
    elif not isinstance(apps, list):
        raise SpecError(f"{path}/apps", "error.expected.jsarray")
    else:
        for index, app in enumerate(apps):
            where = f"{path}/apps({index})"
            app_id = _member_id(app, where, gid, check, "must be a non-empty path such as /group/app")
            change.apps.append((where, app_id, app))
    groups = document.get("groups")
    children = child_groups(gid, app_ids, group_deps)
    if groups is None:
        for child in children:  # untouched: the whole subtree stays
            change.keep.update(a for a in app_ids if inside(a, child))
            change.groups.update({g: list(d) for g, d in group_deps.items() if g == child or inside(g, child)})
            change.groups.setdefault(child, list(group_deps.get(child, [])))
        return
    if not isinstance(groups, list):
        raise SpecError(f"{path}/groups", "error.expected.jsarray")
    for index, sub in enumerate(groups):
        where = f"{path}/groups({index})"
        sub_id = _member_id(sub, where, gid, check, "No group id was given!")
        _walk(change, sub_id, sub, app_ids, group_deps, where, check)


def _member_id(entry: Any, where: str, gid: str, check: Callable[[str, str], str], missing: str) -> str:
    """The id of an app or subgroup named in `gid`'s update: resolved against `gid`, and one of
    its direct members (Marathon's `validNestedApp`: `identifier ... is not child of ...`)."""
    if not isinstance(entry, dict):
        raise SpecError(where, "error.expected.jsobject")
    raw = entry.get("id")
    if not isinstance(raw, str) or not raw.strip("/"):
        raise SpecError(f"{where}/id", missing)
    member = check(canonical(raw, gid), f"{where}/id")
    if parent_of(member) != gid:
        raise SpecError(f"{where}/id", f"identifier {member} is not child of {gid}. Hint: use relative paths.")
    return member


class GroupTree:
    """The groups that exist (besides the root), with their dependencies, and the versions of
    group changes; kept in the store under `TREE_KEY` and `HISTORY_KEY`."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}  # id -> {"dependencies": [...], "version": v}
        self.snapshots: list[tuple[int, dict[str, Any]]] = []  # (sequence, snapshot), oldest first

    # -- persistence --------------------------------------------------------------------------

    def load(self, store: Any) -> None:
        raw, _ = store.get(TREE_KEY)
        if raw:
            self.groups = json.loads(raw).get("groups", {})
        for name in sorted(store.children(HISTORY_KEY)):
            data, _ = store.get(f"{HISTORY_KEY}/{name}")
            if data:
                try:
                    self.snapshots.append((int(name), json.loads(data)))
                except ValueError:
                    log.error("group version %s cannot be read; skipped", name)

    def persist(self, store: Any) -> None:
        store.put(TREE_KEY, json.dumps({"groups": self.groups}).encode())

    def record(self, store: Any, snapshot: dict[str, Any]) -> None:
        """Keep a version of a group (at most MAX_SNAPSHOTS, oldest dropped)."""
        raw = json.dumps(snapshot).encode()
        if len(raw) > MAX_SNAPSHOT_BYTES:
            log.warning("version %s of group %s is too large to keep (%d bytes)", snapshot["version"],
                        snapshot["id"], len(raw))
            return
        sequence = self.snapshots[-1][0] + 1 if self.snapshots else 1
        store.put(f"{HISTORY_KEY}/{sequence:010d}", raw)
        self.snapshots.append((sequence, snapshot))
        while len(self.snapshots) > MAX_SNAPSHOTS:
            old, _ = self.snapshots.pop(0)
            store.delete(f"{HISTORY_KEY}/{old:010d}")

    # -- questions ----------------------------------------------------------------------------

    def exists(self, group_id: str, app_ids: list[str]) -> bool:
        return group_id == "/" or group_id in self.groups or any(inside(a, group_id) for a in app_ids)

    def dependencies(self) -> dict[str, list[str]]:
        return {gid: list(record.get("dependencies", [])) for gid, record in self.groups.items()}

    @staticmethod
    def _holds(snapshot: dict[str, Any], group_id: str) -> bool:
        return (group_id == "/" or group_id in snapshot.get("groups", {})
                or any(inside(a, group_id) for a in snapshot.get("apps", {})))

    def versions(self, group_id: str) -> list[str]:
        """The kept versions of the tree in which `group_id` exists, newest first (Marathon's
        GroupManager.versions: the root versions holding the group)."""
        return sorted({s["version"] for _, s in self.snapshots if self._holds(s, group_id)}, reverse=True)

    def snapshot_at(self, group_id: str, version: str) -> dict[str, Any] | None:
        """The tree as it was at `version`, when `group_id` was in it."""
        for _, snapshot in reversed(self.snapshots):
            if snapshot["version"] == version and self._holds(snapshot, group_id):
                return snapshot
        return None

    def group_dependency_ids(self, app_id: str, app_ids: list[str]) -> list[str]:
        """The apps `app_id` waits for through its groups' `dependencies` (Marathon orders a group
        after the groups it depends on): every app in each group depended on."""
        out: list[str] = []
        for group_id in ancestors(app_id):
            for dependency in self.groups.get(group_id, {}).get("dependencies", []):
                out += [a for a in app_ids if a == dependency or inside(a, dependency)]
        return [a for a in dict.fromkeys(out) if a != app_id]
