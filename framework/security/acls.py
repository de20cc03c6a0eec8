"""Authorization: the Mesos local authorizer's ACLs (`--acls FILE`).

Format (include/mesos/authorizer/acls.proto): a JSON object with `permissive`
(default true) and one list per action; each entry has `principals` and the
action's object field, both entities: `{"values": [...]}`, `{"type": "ANY"}` or
`{"type": "NONE"}`.

Rules (src/authorizer/local/authorizer.cpp, `matches`, `allows`, `approved`):
entries are tried in order; the first whose subject and object both *match*
decides, and it allows when both are *allowed*. No matching entry: `permissive`.
A caller without a principal is ANY; a `values` entry never matches it.

                 matches (request vs entry)     allows (request vs entry)
                 SOME        NONE    ANY        SOME        NONE    ANY
    SOME         subset      yes     yes        subset      no      yes
    NONE         no          yes     no         no          yes     no
    ANY          no          yes     yes        no          no      yes

So `{"type": "NONE"}` as an entry's object is how a deny is written.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

from framework.errors import SecurityError

log = logging.getLogger(__name__)


class Kind(Enum):
    SOME = "SOME"
    ANY = "ANY"
    NONE = "NONE"


@dataclass(frozen=True)
class Entity:
    kind: Kind
    values: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: Any, where: str) -> "Entity":
        if not isinstance(raw, dict):
            raise SecurityError(f"{where}: expected an entity ({{\"values\": [...]}}, {{\"type\": \"ANY\"}} "
                                f"or {{\"type\": \"NONE\"}})")
        kind = raw.get("type", "SOME")
        if kind not in ("SOME", "ANY", "NONE"):
            raise SecurityError(f"{where}: type {kind!r} is not ANY, NONE or SOME")
        values = raw.get("values", [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SecurityError(f"{where}: 'values' must be a list of strings")
        if kind == "SOME" and not values:
            raise SecurityError(f"{where}: an entity without 'type' needs 'values'")
        return cls(Kind(kind), frozenset(values))

    @classmethod
    def request(cls, values: str | Iterable[str] | None) -> "Entity":
        """What is asked about: None (no principal, no object) is ANY."""
        if values is None:
            return cls(Kind.ANY)
        return cls(Kind.SOME, frozenset([values] if isinstance(values, str) else values))

    def matched_by(self, entry: "Entity") -> bool:
        if self.kind == Kind.NONE:
            return entry.kind == Kind.NONE
        if self.kind == Kind.ANY:
            return entry.kind in (Kind.ANY, Kind.NONE)
        if entry.kind in (Kind.ANY, Kind.NONE):
            return True
        return self.values <= entry.values

    def allowed_by(self, entry: "Entity") -> bool:
        if self.kind == Kind.NONE:
            return entry.kind == Kind.NONE
        if self.kind == Kind.ANY:
            return entry.kind == Kind.ANY
        if entry.kind == Kind.ANY:
            return True
        if entry.kind == Kind.NONE:
            return False
        return self.values <= entry.values


# action -> the name of its object field (acls.proto), and what the object is
ACTIONS: dict[str, str] = {
    "register_frameworks": "roles",                 # the framework's roles
    "run_tasks": "users",                           # task user, else executor user, else framework user
    "teardown_frameworks": "framework_principals",  # the target framework's principal
    "view_frameworks": "users",                     # the framework's user
    "view_tasks": "users",                          # the task's user, else the framework's
    "view_executors": "users",                      # the executor's user, else the framework's
    "access_sandboxes": "users",                    # the executor's user, else the framework's
    "launch_nested_container_sessions_as_user": "users",
    "launch_nested_container_sessions_under_parent_with_user": "users",
    "launch_nested_containers_as_user": "users",
    "launch_nested_containers_under_parent_with_user": "users",
    "attach_containers_input": "users",
    "attach_containers_output": "users",
    "wait_nested_containers": "users",
    "kill_nested_containers": "users",
    "remove_nested_containers": "users",
    "register_agents": "agents",                    # ANY or NONE: agents are not named
    "get_quotas": "roles",                          # GET_QUOTA: each quota's role (filters)
    "update_quotas": "roles",                       # UPDATE_QUOTA: each config's role
    "drain_agents": "agents",                       # DRAIN_AGENT: ANY or NONE
    "deactivate_agents": "agents",                  # DEACTIVATE_AGENT: ANY or NONE
    "reactivate_agents": "agents",                  # REACTIVATE_AGENT: ANY or NONE
}

# Actions of Mesos's acls.proto that no dockyard server performs: a file written for a Mesos
# cluster may hold them. They are read and ignored (with a warning), not refused, but a name
# in neither table is a typo and refuses the file.
MESOS_ONLY_ACTIONS = frozenset({
    "reserve_resources", "unreserve_resources", "create_volumes", "destroy_volumes", "resize_volumes",
    "update_weights", "get_endpoints", "access_mesos_logs", "view_roles",
    "view_flags", "view_containers", "set_log_level", "update_maintenance_schedules",
    "get_maintenance_schedules", "start_maintenances", "stop_maintenances", "get_maintenance_statuses",
    "mark_agents_gone", "launch_standalone_containers", "kill_standalone_containers",
    "wait_standalone_containers", "remove_standalone_containers", "view_standalone_containers",
    "modify_resource_provider_configs", "view_resource_providers", "mark_resource_providers_gone",
    "prune_images",
})


@dataclass(frozen=True)
class Rule:
    principals: Entity
    objects: Entity


def read_document(path: str | Path, what: str) -> Any:
    """A JSON policy file, or a SecurityError that names it (`what`: how the operator gave it)."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as error:
        raise SecurityError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise SecurityError(f"{what} {path} is not JSON: {error}") from None


def parse_policy(document: Any, where: str, fields: dict[str, str], ignored: frozenset[str] = frozenset(),
                 ) -> tuple[dict[str, list[tuple["Entity", "Entity"]]], bool]:
    """A Mesos-shaped policy document: `permissive` and, per action, entries of exactly
    `principals` and the action's object field (`fields[action]`), as (subject, object) entities.

    An action in `ignored` is skipped with a warning; any other unknown one refuses the file,
    since a misspelt action silently ignored would leave what it guards open."""
    if not isinstance(document, dict):
        raise SecurityError(f"{where}: expected a JSON object")
    permissive = document.get("permissive", True)
    if not isinstance(permissive, bool):
        raise SecurityError(f"{where}: 'permissive' must be true or false")
    rules: dict[str, list[tuple[Entity, Entity]]] = {}
    for action, entries in document.items():
        if action == "permissive":
            continue
        if action in ignored:
            log.warning("%s: ACL action %r is Mesos's, but no dockyard server performs it: ignored", where, action)
            continue
        if action not in fields:
            raise SecurityError(f"{where}: unknown ACL action {action!r} (known: {', '.join(sorted(fields))})")
        if not isinstance(entries, list):
            raise SecurityError(f"{where}: {action} must be a list")
        field = fields[action]
        parsed = []
        for index, entry in enumerate(entries):
            at = f"{where}: {action}[{index}]"
            if not isinstance(entry, dict) or set(entry) != {"principals", field}:
                raise SecurityError(f"{at}: expected exactly 'principals' and '{field}'")
            parsed.append((Entity.parse(entry["principals"], f"{at}.principals"),
                           Entity.parse(entry[field], f"{at}.{field}")))
        rules[action] = parsed
    return rules, permissive


class Acls:
    """An ACL file, read once; `authorized` answers one question."""

    def __init__(self, rules: dict[str, list[Rule]] | None = None, permissive: bool = True) -> None:
        self.rules = rules or {}
        self.permissive = permissive

    @classmethod
    def load(cls, path: str | Path) -> "Acls":
        return cls.from_json(read_document(path, "the ACL file"), str(path))

    @classmethod
    def from_json(cls, document: Any, where: str = "acls") -> "Acls":
        parsed, permissive = parse_policy(document, where, ACTIONS, MESOS_ONLY_ACTIONS)
        return cls({action: [Rule(*pair) for pair in pairs] for action, pairs in parsed.items()}, permissive)

    def authorized(self, action: str, principal: str | None, objects: str | Iterable[str] | None) -> bool:
        """May `principal` (None: unauthenticated) do `action` on `objects` (None: any)?

        Several objects (a framework's roles) must each be allowed, as Mesos asks
        once per role.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown ACL action {action!r}")
        if objects is not None and not isinstance(objects, str):
            return all(self._one(action, principal, value) for value in objects)
        return self._one(action, principal, objects)

    def _one(self, action: str, principal: str | None, value: str | None) -> bool:
        subject, target = Entity.request(principal), Entity.request(value)
        for rule in self.rules.get(action, ()):
            if subject.matched_by(rule.principals) and target.matched_by(rule.objects):
                return subject.allowed_by(rule.principals) and target.allowed_by(rule.objects)
        return self.permissive


ALLOW_ALL = Acls()  # no --acls: Mesos authorizes everything
