"""Credentials: Mesos's files, Marathon's `user:password`, and dockyard's roles.

Formats (docs/security.md):

- a credentials file (Mesos's `--credentials`, `--http_credentials`): JSON
  `{"credentials": [{"principal": "ops", "secret": "s3cret"}, ...]}`; dockyard's
  scheduler reads the same file with an optional `"role"` per entry
  (`admin`, the default, or `viewer`);
- one credential (Mesos's `--credential`, an agent's or a framework's own):
  `{"principal": "agent", "secret": "s3cret"}`;
- Marathon's `--http_credentials user:password`, split as Marathon splits it
  (the regex `(.+):(.+)`: the last colon separates);
- a secret file (Marathon's `--mesos_authentication_secret_file`): read whole,
  as Marathon reads it, trailing newline included.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping

from framework.errors import SecurityError

log = logging.getLogger(__name__)


class Role(str, Enum):
    """What a principal may do on the scheduler's API."""

    ADMIN = "admin"    # everything
    VIEWER = "viewer"  # every GET and event stream, nothing that changes state


@dataclass(frozen=True)
class Credential:
    principal: str
    secret: str
    role: Role = Role.ADMIN

    def __repr__(self) -> str:  # never print a secret, not even in a traceback
        return f"Credential(principal={self.principal!r}, role={self.role.value})"


class Credentials:
    """A set of principals and their secrets; `check` compares in constant time."""

    def __init__(self, entries: Iterable[Credential] = ()) -> None:
        self._by_principal: dict[str, Credential] = {}
        for entry in entries:
            self._by_principal[entry.principal] = entry

    def __len__(self) -> int:
        return len(self._by_principal)

    def __contains__(self, principal: object) -> bool:
        return principal in self._by_principal

    def principals(self) -> list[str]:
        return list(self._by_principal)

    def role(self, principal: str) -> Role | None:
        entry = self._by_principal.get(principal)
        return entry.role if entry else None

    def check(self, principal: str, secret: str) -> bool:
        entry = self._by_principal.get(principal)
        # Compare against something even for an unknown principal: the time taken
        # then says nothing about which principals exist.
        expected = entry.secret if entry else "\0" * max(len(secret), 1)
        same = hmac.compare_digest(expected.encode("utf-8", "surrogateescape"),
                                   secret.encode("utf-8", "surrogateescape"))
        return entry is not None and same

    def merged(self, other: "Credentials") -> "Credentials":
        """These and `other`'s (other's win on the same principal)."""
        return Credentials([*self._by_principal.values(), *other._by_principal.values()])

    def to_json(self) -> dict:
        """Mesos's file format (with dockyard's role when it is not the default)."""
        return {"credentials": [
            {"principal": c.principal, "secret": c.secret, **({"role": c.role.value} if c.role != Role.ADMIN else {})}
            for c in self._by_principal.values()]}


def _read_json(path: str | Path, what: str) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise SecurityError(f"cannot read the {what} file {path}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise SecurityError(f"the {what} file {path} is not JSON: {error}") from None


def _credential(item: Any, where: str) -> Credential:
    if not isinstance(item, dict):
        raise SecurityError(f"{where}: expected an object with 'principal' and 'secret'")
    principal, secret = item.get("principal"), item.get("secret")
    if not isinstance(principal, str) or not principal:
        raise SecurityError(f"{where}: 'principal' must be a non-empty string")
    if not isinstance(secret, str) or not secret:
        raise SecurityError(f"{where}: 'secret' of principal {principal!r} must be a non-empty string")
    if ":" in principal:
        # HTTP Basic splits user and password at a colon: such a principal could never log in.
        raise SecurityError(f"{where}: principal {principal!r} holds a ':', which HTTP Basic cannot carry")
    raw_role = item.get("role", Role.ADMIN.value)
    try:
        role = Role(raw_role)
    except ValueError:
        raise SecurityError(f"{where}: role {raw_role!r} of principal {principal!r} is not one of "
                            f"{', '.join(r.value for r in Role)}") from None
    return Credential(principal, secret, role)


def load_credentials(path: str | Path) -> Credentials:
    """A Mesos credentials file (`{"credentials": [...]}`); roles are read when present."""
    document = _read_json(path, "credentials")
    if not isinstance(document, dict) or not isinstance(document.get("credentials"), list):
        raise SecurityError(f"the credentials file {path} must be an object with a 'credentials' list")
    entries = [_credential(item, f"{path}: credentials[{index}]")
               for index, item in enumerate(document["credentials"])]
    if not entries:
        raise SecurityError(f"the credentials file {path} holds no credentials")
    return Credentials(entries)


def load_credential(path: str | Path) -> Credential:
    """One credential (Mesos's `--credential` file: `{"principal": ..., "secret": ...}`)."""
    return _credential(_read_json(path, "credential"), str(path))


def parse_user_password(text: str) -> Credential:
    """Marathon's `--http_credentials user:password` (split at the last colon, both non-empty)."""
    match = re.fullmatch(r"(.+):(.+)", text, flags=re.DOTALL)
    if match is None:
        raise SecurityError("--http-credentials must be USER:PASSWORD, both non-empty")
    return Credential(match.group(1), match.group(2))


def read_secret_file(path: str | Path) -> str:
    """The whole file, as Marathon reads `--mesos_authentication_secret_file`.

    A trailing newline is part of the secret there, and so here; it is only
    worth a warning, since most editors add one.
    """
    try:
        secret = Path(path).read_text()
    except OSError as error:
        raise SecurityError(f"cannot read the secret file {path}: {error.strerror or error}") from None
    if not secret:
        raise SecurityError(f"the secret file {path} is empty")
    if secret.endswith("\n"):
        log.warning("the secret file %s ends with a newline, which is part of the secret (as in Marathon)",
                    path)
    return secret


def credentials_from(entries: Mapping[str, str]) -> Credentials:
    """Admin credentials from a principal -> secret mapping (tests, generated bundles)."""
    return Credentials(Credential(p, s) for p, s in entries.items())
