"""The scheduler's secret store: encrypted values under `/secrets/default/` of its state store.

One record per secret, in whichever backend the scheduler keeps its state (the
embedded journal or ZooKeeper): its metadata in the clear (path, version, size,
who created and last changed it, when, and which key sealed it) and its value
sealed with the current key of `--secrets-key-file` (crypto.py). The key never
enters the state store, so a copy of the journal or of the znodes is no copy of
the secrets.

The leading scheduler keeps every record in memory (ciphertext only) and opens
a value when a launch needs it (`resolve`), on the core's thread, without I/O.
A secret has one value at a time; its version counts the writes, and each task
records the versions it was given (`TaskRecord.secrets`).
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from framework.errors import DockyardError, Forbidden, NotFound, SecurityError, SpecError
from framework.store import ABSENT, Store
from scheduler.secrets.acl import ALLOW_ALL, SecretAcls
from scheduler.secrets.crypto import Keyring, generate_key, read_key_file, write_key_file
from scheduler.secrets.refs import SecretUse, acting_principal

ROOT = "/secrets/default"
MAX_VALUE_BYTES = 64 * 1024  # ZooKeeper's znodes stay far below their 1 MB limit
MAX_PATH = 255
_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
FEATURE_OFF = ("Feature secrets is not enabled. Enable with --secrets-key-file FILE "
               "(dockyard's --enable_features secrets)")


class SecretUnavailable(DockyardError):
    """A launch's secret cannot be given (deleted since the deploy, or not decryptable)."""


def check_path(path: str, where: str = "/path") -> str:
    """A secret's path: slash-separated segments of letters, digits, `_`, `.` and `-`."""
    path = path.strip("/")
    if not path or len(path) > MAX_PATH or not _PATH.match(path) or any(
            part in (".", "..") for part in path.split("/")):
        raise SpecError(where, f"invalid secret path {path!r}: use segments of letters, digits, '_', '.' "
                               f"and '-' separated by '/', at most {MAX_PATH} characters")
    return path


def _key(path: str) -> str:
    return f"{ROOT}/{path.replace('/', ':')}"  # ':' is never in a path: one store key per secret


@dataclass
class SecretMeta:
    """What anyone allowed to look may know of a secret: never its value."""

    path: str
    version: int
    size: int
    created_at: float
    created_by: str | None
    updated_at: float
    updated_by: str | None
    key: str  # fingerprint of the key that sealed it

    def to_api(self) -> dict:
        return {"path": self.path, "version": self.version, "size": self.size,
                "createdAt": _iso(self.created_at), "createdBy": self.created_by,
                "updatedAt": _iso(self.updated_at), "updatedBy": self.updated_by, "key": self.key}


def _iso(seconds: float) -> str:
    from scheduler.jobs.specs import timestamp

    return timestamp(seconds) or ""


@dataclass
class _Entry:
    meta: SecretMeta
    token: str
    stored: int  # the state store's version of the record


class SecretStore:
    """Secrets of one scheduler: write, list, delete, resolve for launches, rotate the key."""

    enabled = True

    def __init__(self, store: Store, keyring: Keyring, *, key_file: str | Path | None = None,
                 acls: SecretAcls = ALLOW_ALL, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.keyring = keyring
        self.key_file = Path(key_file) if key_file is not None else None
        self.acls = acls
        self.clock = clock
        self.lock = threading.RLock()
        self.entries: dict[str, _Entry] = {}

    def __repr__(self) -> str:
        return f"SecretStore({len(self.entries)} secrets, {self.keyring!r})"

    def load(self) -> int:
        """Read every record (ciphertext) into memory; returns how many."""
        with self.lock:
            self.entries.clear()
            for name in self.store.children(ROOT):
                raw, version = self.store.get(f"{ROOT}/{name}")
                if raw is None:
                    continue
                data = json.loads(raw)
                meta = SecretMeta(**{k: v for k, v in data.items() if k != "value"})
                self.entries[meta.path] = _Entry(meta, data["value"], version)
        return len(self.entries)

    # -- the API's calls ----------------------------------------------------------------
    def put(self, path: str, value: bytes, principal: str | None, *, must_exist: bool = False) -> tuple[SecretMeta, bool]:
        """Create or replace a secret's value; (metadata, created)."""
        path = check_path(path)
        self._may("write_secrets", principal, path)
        if len(value) > MAX_VALUE_BYTES:
            raise SpecError("/value", f"a secret holds at most {MAX_VALUE_BYTES} bytes, not {len(value)}")
        with self.lock:
            entry = self.entries.get(path)
            if entry is None and must_exist:
                raise NotFound(f"Secret '{path}' does not exist")
            now = self.clock()
            if entry is None:
                meta = SecretMeta(path, 1, len(value), now, principal, now, principal, self.keyring.current)
            else:
                old = entry.meta
                meta = SecretMeta(path, old.version + 1, len(value), old.created_at, old.created_by, now,
                                  principal, self.keyring.current)
            token = self.keyring.seal(path, value)
            stored = self._write(meta, token, entry.stored if entry is not None else ABSENT)
            self.entries[path] = _Entry(meta, token, stored)
            return meta, entry is None

    def get(self, path: str) -> SecretMeta:
        path = check_path(path)
        with self.lock:
            entry = self.entries.get(path)
        if entry is None:
            raise NotFound(f"Secret '{path}' does not exist")
        return entry.meta

    def list(self, prefix: str = "") -> list[SecretMeta]:
        """Every secret at or below `prefix` (all when empty), by path."""
        prefix = prefix.strip("/")
        with self.lock:
            metas = [e.meta for e in self.entries.values()]
        return sorted((m for m in metas if not prefix or m.path == prefix or m.path.startswith(prefix + "/")),
                      key=lambda m: m.path)

    def delete(self, path: str, principal: str | None) -> None:
        path = check_path(path)
        self._may("write_secrets", principal, path)
        with self.lock:
            entry = self.entries.get(path)
            if entry is None:
                raise NotFound(f"Secret '{path}' does not exist")
            self.store.delete(_key(path), expected_version=entry.stored)
            del self.entries[path]

    def rotate(self, *, generate: bool = False, prune: bool = False) -> dict:
        """Seal every secret again with the current key of the key file (read again now).

        `generate` first puts a new key on top of the file (the old ones stay below, so
        nothing is ever unreadable); `prune` then leaves only the current key in it. With
        several schedulers (HA) each has its own copy of the file: give them the new key
        first, then rotate without `generate`.
        """
        with self.lock:
            keys = list(self.keyring.keys)
            if self.key_file is not None:
                keys = read_key_file(self.key_file)
                if generate:
                    keys = [generate_key(), *keys]
                    write_key_file(self.key_file, keys)
            elif generate or prune:
                raise SpecError("/", "this scheduler has no key file to change")
            self.keyring = Keyring(tuple(keys))
            rotated = 0
            for path, entry in sorted(self.entries.items()):
                if entry.meta.key == self.keyring.current:
                    continue
                token = self.keyring.reseal(path, entry.token)
                meta = SecretMeta(**{**entry.meta.__dict__, "key": self.keyring.current})
                stored = self._write(meta, token, entry.stored)
                self.entries[path] = _Entry(meta, token, stored)
                rotated += 1
            retired = list(self.keyring.retired)
            if prune and self.key_file is not None and len(keys) > 1:
                write_key_file(self.key_file, keys[:1])
                self.keyring = Keyring(tuple(keys[:1]))
            return {"rotated": rotated, "secrets": len(self.entries), "key": self.keyring.current,
                    "retired": retired, "pruned": bool(prune and retired)}

    # -- apps and jobs ---------------------------------------------------------------------
    def check(self, defined: dict[str, str], where: Callable[[str], str]) -> None:
        """Refuse (422) a source that does not exist, and (403) one the caller may not reference.

        `defined`: the spec's secrets, name -> store path; `where(name)` is the field to blame."""
        principal = acting_principal()
        for name, source in sorted(defined.items()):
            try:
                check_path(source, where(name))
            except SpecError as error:
                raise SpecError(where(name), f"secret '{name}': {error.message}") from None
            with self.lock:
                known = source in self.entries
            if not known:
                raise SpecError(where(name), f"secret '{name}' has source '{source}', which does not exist "
                                             f"in the secret store")
            self._may("reference_secrets", principal, source)

    def resolve(self, uses: Iterable[SecretUse]) -> list[tuple[SecretUse, bytes, int]]:
        """(use, value, version) for a launch; SecretUnavailable names the first one missing."""
        out = []
        with self.lock:
            for use in uses:
                entry = self.entries.get(use.source)
                if entry is None:
                    raise SecretUnavailable(f"secret '{use.name}': source '{use.source}' no longer exists "
                                            f"in the secret store")
                value = self.keyring.open(use.source, entry.token)
                if use.env is not None and (b"\0" in value or not _is_text(value)):
                    raise SecretUnavailable(f"secret '{use.name}' ({use.source}) is not UTF-8 text without "
                                            f"NUL bytes, so it cannot be the environment variable {use.env}")
                out.append((use, value, entry.meta.version))
        return out

    # -- helpers -----------------------------------------------------------------------------
    def _may(self, action: str, principal: str | None, path: str) -> None:
        if not self.acls.allowed(action, principal, path):
            verb = "reference" if action == "reference_secrets" else "write"
            raise Forbidden(f"Not Authorized to perform this action! Principal '{principal}' may not {verb} "
                            f"secret '{path}' (--secrets-acls {action})")

    def _write(self, meta: SecretMeta, token: str, expected: int) -> int:
        record = {**meta.__dict__, "value": token}
        return self.store.put(_key(meta.path), json.dumps(record, separators=(",", ":")).encode(),
                              expected_version=expected)


def _is_text(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


class SecretsOff:
    """No `--secrets-key-file`: apps and jobs that use secrets are refused, as Marathon does
    without `--enable_features secrets`."""

    enabled = False

    def check(self, defined: dict[str, str], where: Callable[[str], str]) -> None:
        for name in sorted(defined):
            raise SpecError(where(name), FEATURE_OFF)

    def resolve(self, uses: Iterable[SecretUse]) -> list[tuple[SecretUse, bytes, int]]:
        if list(uses):
            raise SecretUnavailable(FEATURE_OFF)
        return []


def check_settings(key_file: str | None, acls_file: str | None) -> None:
    """Read the key file and the ACLs once at start-up: SecurityError names what is wrong."""
    if acls_file and not key_file:
        raise SecurityError("--secrets-acls needs --secrets-key-file (secrets are off without a key)")
    if key_file:
        read_key_file(key_file)
    if acls_file:
        SecretAcls.load(acls_file)


def open_secrets(store: Store, key_file: str | None, acls_file: str | None = None,
                 clock: Callable[[], float] = time.time) -> SecretStore | SecretsOff:
    """The scheduler's secrets: a loaded store with a key file, refusal without one."""
    if not key_file:
        return SecretsOff()
    acls = SecretAcls.load(acls_file) if acls_file else ALLOW_ALL
    secrets = SecretStore(store, Keyring.load(key_file), key_file=key_file, acls=acls, clock=clock)
    secrets.load()
    return secrets
