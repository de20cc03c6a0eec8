"""Who may press which button, and which form posts are the UI's own.

The gate (framework/security/gate.py) has already authenticated every UI request
and refused a viewer's POST (403) before a handler runs; pages only ask
`may_change` to leave out the buttons a viewer could not use.

A browser sends the credentials it holds for the scheduler (Basic, cached after
the prompt) with any request to it, also one that another site's page starts: a
form on `evil.example` (or on a task's own port, which is the same *site*) could
post to `/ui/apps/x` as the logged-in admin. So every UI form post must also:

- come from this origin: `Sec-Fetch-Site` (sent by current browsers on every
  request) must be `same-origin` or `none` (typed or bookmarked); without it,
  an `Origin` header, when present, must name this host;
- carry the form token: an HMAC of the caller's principal under a key this process
  made, which another origin cannot read from our pages (no CORS here).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Mapping

from starlette.requests import Request

from framework.security import origin
from framework.security.authn import Unauthorized
from framework.security.gate import Access, Forbidden, principal_name

TOKEN_FIELD = "csrf"


def may_change(request: Request) -> bool:
    """Whether the caller passes the gate on WRITE routes (an admin, or nobody is asked)."""
    gate = request.app.state.gate
    decision = gate.check(Access.WRITE, request.headers.get("authorization"))
    return not isinstance(decision, (Unauthorized, Forbidden))


def _key(ctx: Any) -> bytes:
    key = ctx.extras.get("ui_form_key")
    if key is None:
        key = ctx.extras["ui_form_key"] = secrets.token_bytes(32)
    return key


def form_token(request: Request, ctx: Any) -> str:
    """The token this caller's forms carry (the same on every page while this process runs)."""
    who = (principal_name(request) or "").encode("utf-8", "surrogateescape")
    return hmac.new(_key(ctx), b"ui-form\0" + who, hashlib.sha256).hexdigest()


def cross_site(request: Request) -> str | None:
    """Why the request did not come from one of our own pages (None when it did)."""
    return origin.cross_site(request.headers)


def refusal(request: Request, ctx: Any, form: Mapping[str, str]) -> tuple[int, str] | None:
    """Why a form post is refused, with its status (None: accept it): 403 when the browser
    says it came from elsewhere, 400 when the form's token is missing or wrong."""
    why = cross_site(request)
    if why is not None:
        return 403, why
    token = form.get(TOKEN_FIELD, "")
    if not hmac.compare_digest(token.encode(), form_token(request, ctx).encode()):
        return 400, "the form's token is missing or out of date: reload the page and try again"
    return None
