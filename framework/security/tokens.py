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

import secrets
from pathlib import Path

import jwt

from framework.errors import SecurityError

CLAIMS = ("cid", "eid", "fid")
MIN_KEY_BYTES = 32  # HS256 keys shorter than the hash are weak (RFC 7518 section 3.2)


class TokenError(Exception):
    """A token that does not authenticate; the message is what a 401 describes."""


def issue(key: bytes, *, framework_id: str, executor_id: str, container_id: str) -> str:
    """The token of one executor container (deterministic: the same claims give the same token)."""
    return jwt.encode({"cid": container_id, "eid": executor_id, "fid": framework_id}, key, algorithm="HS256")


def verify(key: bytes, token: str) -> dict[str, str]:
    """The claims of a token signed with `key`, or TokenError saying why not."""
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
    return found


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
