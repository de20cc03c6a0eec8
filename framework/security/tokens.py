"""Executor tokens: one HS256 JWT per executor launch, with Mesos's claims.

As a Mesos agent makes them (src/authentication/executor/jwt_secret_generator.cpp,
slave.cpp `generateSecret`): header `{"alg":"HS256","typ":"JWT"}`, payload
`{"cid": <executor container id>, "eid": <executor id>, "fid": <framework id>}`,
both compact JSON with sorted keys, signed with the raw bytes of the agent's
`--executor-secret-key` file. There is no `exp`; one is honoured when present.
The token reaches the executor in `MESOS_EXECUTOR_AUTHENTICATION_TOKEN` and comes
back as `Authorization: Bearer <token>` on every executor call.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
from pathlib import Path

import jwt

from framework.errors import DockyardError, SecurityError

CLAIMS = ("cid", "eid", "fid")
MIN_KEY_BYTES = 32  # HS256 keys shorter than the hash are weak (RFC 7518 section 3.2)


class TokenError(DockyardError):
    """A token that does not authenticate; the message is what a 401 describes."""


def issue(key: bytes, *, framework_id: str, executor_id: str, container_id: str) -> str:
    """The token of one executor container (deterministic: the same claims give the same token)."""
    return jwt.encode({"cid": container_id, "eid": executor_id, "fid": framework_id}, key, algorithm="HS256")


def verify(key: bytes, token: str) -> dict[str, str]:
    """The claims of a token signed with `key`, or TokenError saying why not."""
    return _verify(key, token)[0]


TIMED_CLAIMS = ("exp", "nbf", "iat")  # a token holding one may stop (or start) verifying later


class Verifier:
    """`verify` with one key, remembering the tokens that verified and hold no time claim.

    An executor presents the same token on every call (two UPDATEs per task), and
    PyJWT spends ~50 us on each; a token signed with our key and without `exp`,
    `nbf` or `iat` verifies the same way every time, so its claims are kept
    (at most SIZE tokens, the oldest dropped first), looked up by the token's
    SHA-256. Tokens that fail are never kept, so garbage cannot fill the table.
    """

    SIZE = 1024

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._verified: dict[bytes, dict[str, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str) -> dict[str, str]:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            known = self._verified.get(digest)
        if known is not None:
            return dict(known)
        claims, timed = _verify(self.key, token)
        if not timed:
            with self._lock:
                if len(self._verified) >= self.SIZE:
                    self._verified.pop(next(iter(self._verified)))
                self._verified[digest] = dict(claims)
        return claims


def _verify(key: bytes, token: str) -> tuple[dict[str, str], bool]:
    """(the claims we use, whether the token holds a time claim) or TokenError."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") not in (None, "JWT"):
            raise TokenError(f"Invalid JWT: unsupported token type {header.get('typ')!r}")
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"verify_aud": False})
    except TokenError:
        raise
    except jwt.ExpiredSignatureError:
        raise TokenError("Invalid JWT: token has expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("Invalid JWT: token signature is invalid") from None
    except jwt.PyJWTError as error:
        raise TokenError(f"Invalid JWT: {error}") from None
    found = {name: claims[name] for name in CLAIMS if isinstance(claims.get(name), str)}
    if not found:
        raise TokenError("JWT claims missing")
    return found, any(name in claims for name in TIMED_CLAIMS)


def load_key(path: str | Path) -> bytes:
    """The raw bytes of a secret key file (as Mesos reads `--jwt_secret_key`)."""
    try:
        key = Path(path).read_bytes()
    except OSError as error:
        raise SecurityError(f"cannot read the executor secret key {path}: {error.strerror or error}") from None
    if len(key) < MIN_KEY_BYTES:
        raise SecurityError(f"the executor secret key {path} holds {len(key)} bytes; "
                            f"at least {MIN_KEY_BYTES} are needed for HS256")
    return key


def new_key() -> bytes:
    """A fresh random key, in the printable form `up` writes to disk."""
    return secrets.token_urlsafe(48).encode()
