"""Who may reference which secrets in an app or a job, and who may write which (`--secrets-acls FILE`).

Shaped like the Mesos ACLs the master reads (framework/security/acls.py), with
path prefixes as objects:

    {"permissive": false,
     "reference_secrets": [{"principals": {"values": ["alice"]}, "paths": {"values": ["team-a/"]}},
                           {"principals": {"values": ["operator"]}, "paths": {"type": "ANY"}}],
     "write_secrets":     [{"principals": {"values": ["operator"]}, "paths": {"type": "ANY"}}]}

A path value names that secret and everything below it at a segment boundary
(`team-a/` and `team-a` both cover `team-a/db`, not `team-ab`; `/` covers all).
Entries are tried in order; the first whose principal and path both match
decides (`{"type": "NONE"}` as `paths` is a deny). No entry matches: `permissive`
(default true). Writing needs the admin role besides (the API's gate).
Without a file every principal that may change apps may reference every secret.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.security.acls import Entity, Kind, parse_policy, read_document

ACTIONS = ("reference_secrets", "write_secrets")


def covers(prefix: str, path: str) -> bool:
    """Whether an ACL path value names `path` (itself, or a folder above it; `/` is every path)."""
    prefix = prefix.strip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Rule:
    principals: Entity
    paths: Entity

    def matches(self, principal: str | None, path: str) -> bool:
        subject = Entity.request(principal)
        if not subject.matched_by(self.principals):
            return False
        if self.paths.kind != Kind.SOME:
            return True
        return any(covers(prefix, path) for prefix in self.paths.values)

    def allows(self, principal: str | None) -> bool:
        return Entity.request(principal).allowed_by(self.principals) and self.paths.kind != Kind.NONE


class SecretAcls:
    """The file, read once; `allowed(action, principal, path)` answers one question."""

    def __init__(self, rules: dict[str, list[Rule]] | None = None, permissive: bool = True) -> None:
        self.rules = rules or {}
        self.permissive = permissive

    @classmethod
    def load(cls, path: str | Path) -> "SecretAcls":
        return cls.from_json(read_document(path, "--secrets-acls"), f"--secrets-acls {path}")

    @classmethod
    def from_json(cls, document: Any, where: str = "secrets ACLs") -> "SecretAcls":
        parsed, permissive = parse_policy(document, where, {action: "paths" for action in ACTIONS})
        return cls({action: [Rule(*pair) for pair in pairs] for action, pairs in parsed.items()}, permissive)

    def allowed(self, action: str, principal: str | None, path: str) -> bool:
        if action not in ACTIONS:
            raise ValueError(f"unknown secrets action {action!r}")
        for rule in self.rules.get(action, ()):
            if rule.matches(principal, path):
                return rule.allows(principal)
        return self.permissive


ALLOW_ALL = SecretAcls()
