"""Authentication: an `Authorization` header in, a `Principal` or a 401 out.

As libprocess does it (3rdparty/libprocess/src/authenticator.cpp,
jwt_authenticator.cpp; mesos/src/authentication/http/combined_authenticator.cpp):

- Basic: exactly `Basic <base64>`, decoding to exactly two `:`-separated parts
  that match a credential. Anything else is a 401 with
  `WWW-Authenticate: Basic realm="<realm>"` and the body `401 Unauthorized.`
- Bearer (executor tokens): a 401 names what was wrong in the challenge,
  `Bearer realm="<realm>", error="invalid_token", error_description="..."`.
- A realm with both joins the challenges with a comma.

Every input, however hostile (no header, bad base64, non-ASCII, 64 KB), ends
in a `Principal` or an `Unauthorized`; nothing here raises.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Mapping

from framework.security.credentials import Credentials

MAX_HEADER = 8192  # longer Authorization headers are refused unread


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named principal, or (executor tokens) a set of claims."""

    value: str | None
    claims: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.value if self.value is not None else f"claims {dict(self.claims)}"


@dataclass(frozen=True)
class Unauthorized:
    """A refusal: the `WWW-Authenticate` challenge to send with the 401."""

    challenge: str
    reason: str = ""
    body: str = "401 Unauthorized."


class BasicAuthenticator:
    scheme = "Basic"

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def challenge(self, realm: str, error: str | None = None) -> str:
        return f'Basic realm="{realm}"'

    def authenticate(self, header: str) -> Principal | str:
        """The principal, or why the header does not authenticate."""
        parts = header.split(" ")
        if len(parts) != 2:
            return "Malformed 'Authorization' header"
        if parts[0] != "Basic":
            return f"Expected 'Basic' scheme, received '{parts[0][:32]}'"
        try:
            decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return "Failed to decode 'Authorization' header"
        pair = decoded.split(":")
        if len(pair) != 2 or not self.credentials.check(pair[0], pair[1]):
            return "Invalid credentials"
        return Principal(pair[0])


class BearerAuthenticator:
    """Executor tokens (framework/security/tokens.py), checked with the agent's key."""

    scheme = "Bearer"

    def __init__(self, key: bytes) -> None:
        from framework.security.tokens import Verifier

        self.key = key
        self._verify = Verifier(key)  # an executor's token is checked in full once, then looked up

    def challenge(self, realm: str, error: str | None = None) -> str:
        if error is None:
            return f'Bearer realm="{realm}"'
        # The description quotes what the token's parser said: keep it one safe header value.
        safe = "".join(c if c.isprintable() and c not in '"\\' else "'" for c in error)[:200]
        return f'Bearer realm="{realm}", error="invalid_token", error_description="{safe}"'

    def authenticate(self, header: str) -> Principal | str:
        from framework.security.tokens import TokenError

        parts = header.split(" ")
        if len(parts) != 2:
            return "Malformed 'Authorization' header"
        if parts[0] != "Bearer":
            return f"Scheme '{parts[0][:32]}' unsupported"
        try:
            claims = self._verify(parts[1])
        except TokenError as error:
            return str(error)
        return Principal(None, claims)


Authenticator = BasicAuthenticator | BearerAuthenticator


class Realm:
    """A named protection space (`mesos-master-readonly`, ...) and who may enter it."""

    def __init__(self, name: str, authenticators: list[Authenticator]) -> None:
        if not authenticators:
            raise ValueError(f"realm {name} needs at least one authenticator")
        self.name = name
        self.authenticators = authenticators

    def authenticate(self, header: str | None) -> Principal | Unauthorized:
        if header is None or not header.strip():
            return Unauthorized(self._challenges({}), "no credentials")
        if len(header) > MAX_HEADER:
            return Unauthorized(self._challenges({}), "'Authorization' header too long")
        errors: dict[str, str] = {}
        for authenticator in self.authenticators:
            outcome = authenticator.authenticate(header)
            if isinstance(outcome, Principal):
                return outcome
            errors[authenticator.scheme] = outcome
        scheme = header.split(" ", 1)[0]
        # Only the scheme the caller used gets an error description (the others just challenge).
        described = {scheme: errors[scheme]} if scheme in errors else {}
        return Unauthorized(self._challenges(described), errors.get(scheme) or next(iter(errors.values())))

    def _challenges(self, errors: dict[str, str]) -> str:
        return ",".join(a.challenge(self.name, errors.get(a.scheme)) for a in self.authenticators)
