"""The secrets key file and what it encrypts with: Fernet keys, the first one current.

`--secrets-key-file FILE` holds one Fernet key per line (`#` comments and blank
lines skipped). The first key encrypts; every key decrypts (MultiFernet), so a
new key goes on top and the old ones stay below it until `dockyard secret
rotate-key` has encrypted every secret again with the new one. The file must be
readable by its owner only, and it never lives in the state store it protects.

Each ciphertext is bound to its secret's path (the path is part of what is
encrypted and is checked on the way out): a value copied in the store from one
path to another does not decrypt there.
"""
from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from framework.errors import SecurityError
from framework.security.bundle import write_private

SEPARATOR = b"\0"


def generate_key() -> str:
    return Fernet.generate_key().decode()


def fingerprint(key: str) -> str:
    """A short name for a key (safe to show: 8 hex digits of its SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def parse_keys(text: str, where: str) -> list[str]:
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            Fernet(line.encode())
        except (ValueError, TypeError):
            raise SecurityError(f"{where}, line {number}: not a Fernet key (32 url-safe base64 bytes; "
                                f"`dockyard secret gen-key` makes one)") from None
        keys.append(line)
    if not keys:
        raise SecurityError(f"{where}: no key in the file")
    return keys


def read_key_file(path: str | Path) -> list[str]:
    """The keys of a key file, current first; refuses a file others may read."""
    path = Path(path)
    try:
        info = path.stat()
        text = path.read_text()
    except OSError as error:
        raise SecurityError(f"cannot read --secrets-key-file {path}: {error.strerror or error}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecurityError(f"--secrets-key-file {path} is readable by others (mode "
                            f"{stat.S_IMODE(info.st_mode):o}): chmod 600 it")
    return parse_keys(text, f"--secrets-key-file {path}")


def write_key_file(path: str | Path, keys: list[str]) -> None:
    """Replace the key file atomically, mode 0600 from the first byte."""
    text = ("# dockyard secrets keys: the first encrypts, all decrypt (docs/secrets.md)\n"
            + "".join(f"{key}\n" for key in keys))
    write_private(Path(path), text)


class DecryptError(SecurityError):
    """A stored secret does not decrypt with any key of the key file (or not for its path)."""


@dataclass(frozen=True, eq=False)
class Keyring:
    """The keys, current first; `seal`/`open` a value bound to its path."""

    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fernet", MultiFernet([Fernet(k.encode()) for k in self.keys]))

    def __repr__(self) -> str:  # never print a key
        return f"Keyring(current={self.current}, retired={list(self.retired)})"

    @classmethod
    def load(cls, path: str | Path) -> "Keyring":
        return cls(tuple(read_key_file(path)))

    @property
    def current(self) -> str:
        return fingerprint(self.keys[0])

    @property
    def retired(self) -> tuple[str, ...]:
        return tuple(fingerprint(k) for k in self.keys[1:])

    def seal(self, path: str, value: bytes) -> str:
        return self._fernet.encrypt(path.encode() + SEPARATOR + value).decode()  # type: ignore[attr-defined]

    def open(self, path: str, token: str) -> bytes:
        try:
            plain = self._fernet.decrypt(token.encode())  # type: ignore[attr-defined]
        except InvalidToken:
            raise DecryptError(f"secret '{path}' does not decrypt with any key of --secrets-key-file "
                               f"(current {self.current}, retired {', '.join(self.retired) or 'none'})") from None
        bound, _, value = plain.partition(SEPARATOR)
        if bound != path.encode():
            raise DecryptError(f"secret '{path}' holds a value sealed for another path")
        return value

    def reseal(self, path: str, token: str) -> str:
        """The same value under the current key (what rotation does to each secret)."""
        return self.seal(path, self.open(path, token))
