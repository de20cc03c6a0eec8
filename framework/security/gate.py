"""Every route says who may call it; one gate per server enforces it.

A route is made with `route(path, endpoint, methods=..., access=...)`, and
`access` has no default: a route added without a decision cannot be made, and
the route-matrix test (tests/security/test_route_matrix.py) walks every
server's table. The levels:

- OPEN: anyone (`/health`, Marathon's `/ping`, `/redirect`);
- READ: views (Mesos's readonly realms; the scheduler's viewers and admins);
- WRITE: what changes state (Mesos's readwrite realms; the scheduler's admins);
- FRAMEWORK: the master's scheduler API (`mesos-master-scheduler`);
- AGENT: the master's endpoint for agents (`--authenticate-agents`);
- EXECUTOR: the agent's executor API (executor tokens).

A server's `Gate` maps each level to the realm that authenticates it (a level
without a realm is not authenticated, as in Mesos when its
`--authenticate-*` flag is off), and may refuse an authenticated principal
(the scheduler's viewers on WRITE routes). Handlers find the caller in
`request.state.principal` (None when unauthenticated) and ask the ACLs.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from framework.security.authn import Principal, Realm, Unauthorized


class Access(str, Enum):
    OPEN = "open"
    READ = "read"
    WRITE = "write"
    FRAMEWORK = "framework"
    AGENT = "agent"
    EXECUTOR = "executor"


@dataclass(frozen=True)
class Forbidden:
    message: str


Decision = Principal | None | Unauthorized | Forbidden


def text_refusal(refusal: Unauthorized | Forbidden) -> Response:
    """How Mesos answers (libprocess's Unauthorized and Forbidden)."""
    if isinstance(refusal, Unauthorized):
        return Response(refusal.body, status_code=401, media_type="text/plain; charset=utf-8",
                        headers={"WWW-Authenticate": refusal.challenge})
    return Response(refusal.message, status_code=403, media_type="text/plain; charset=utf-8")


def json_refusal(refusal: Unauthorized | Forbidden) -> Response:
    """How the scheduler answers: Marathon's `{"message": ...}`."""
    if isinstance(refusal, Unauthorized):
        return Response(json.dumps({"message": "Unauthorized: " + refusal.reason}), status_code=401,
                        media_type="application/json", headers={"WWW-Authenticate": refusal.challenge})
    return Response(json.dumps({"message": refusal.message}), status_code=403, media_type="application/json")


@dataclass
class Gate:
    """Who may pass at each access level of one server."""

    realms: Mapping[Access, Realm] = field(default_factory=dict)
    permits: Callable[[Access, Principal], str | None] | None = None  # why not, or None
    render: Callable[[Unauthorized | Forbidden], Response] = text_refusal

    @property
    def authenticating(self) -> bool:
        return bool(self.realms)

    def check(self, access: Access, authorization: str | None) -> Decision:
        """The caller's principal (None: not authenticated, and not asked to be), or a refusal."""
        if access == Access.OPEN:
            return None
        realm = self.realms.get(access)
        if realm is None:
            return None
        outcome = realm.authenticate(authorization)
        if isinstance(outcome, Unauthorized):
            return outcome
        if self.permits is not None:
            why = self.permits(access, outcome)
            if why is not None:
                return Forbidden(why)
        return outcome


OPEN_GATE = Gate()

Endpoint = Callable[[Request], Awaitable[Response]]


def _access_for(access: Access | Mapping[str, Access], method: str) -> Access:
    if isinstance(access, Access):
        return access
    return access.get(method) or access.get("GET" if method == "HEAD" else method) or Access.WRITE


def guarded(endpoint: Endpoint, access: Access | Mapping[str, Access]) -> Endpoint:
    """`endpoint` behind the gate of the app it is served by (`app.state.gate`)."""

    @functools.wraps(endpoint)
    async def handler(request: Request) -> Response:
        gate: Gate = request.app.state.gate
        decision = gate.check(_access_for(access, request.method), request.headers.get("authorization"))
        if isinstance(decision, (Unauthorized, Forbidden)):
            return gate.render(decision)
        request.state.principal = decision
        return await endpoint(request)

    handler.access = access  # type: ignore[attr-defined]
    return handler


def route(path: str, endpoint: Endpoint, *, methods: list[str], access: Access | Mapping[str, Access],
          name: str | None = None) -> Route:
    """A Starlette route with its access decision (per method when a mapping)."""
    if not isinstance(access, Access):
        missing = {m for m in methods if m != "HEAD"} - set(access)
        if missing:
            raise ValueError(f"{path}: no access decision for {', '.join(sorted(missing))}")
    made = Route(path, guarded(endpoint, access), methods=methods, name=name or endpoint.__name__)
    made.access = access  # type: ignore[attr-defined]
    return made


def principal_of(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def principal_name(request: Request) -> str | None:
    principal = principal_of(request)
    return principal.value if principal is not None else None


def access_of(route: Any, method: str) -> Access | None:
    """The decision a route was made with (None: made without `route`, which the matrix test fails)."""
    access = getattr(route, "access", None)
    return _access_for(access, method) if access is not None else None
