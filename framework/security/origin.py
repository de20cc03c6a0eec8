"""Whether a browser sent a request from one of our own pages.

A browser keeps the Basic credentials a person typed for a server and sends them with
every request to it, also with one that another site's page starts (a form posted
cross-site needs no CORS permission). So a request that changes state and that a
browser marks as coming from elsewhere is refused, whatever its credentials. Clients
that are not browsers (the CLI, curl, framework libraries) send neither header and
are not affected.
"""
from __future__ import annotations

from typing import Mapping
from urllib.parse import urlsplit


def cross_site(headers: Mapping[str, str]) -> str | None:
    """Why a request did not come from this origin's own pages (None when it did, or when no
    browser says otherwise): `Sec-Fetch-Site` must be `same-origin` or `none` (typed or
    bookmarked); without it, an `Origin` header, when present, must name this host."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site in ("same-origin", "none"):
            return None
        return f"a request from another site ({fetch_site}) may not change anything here"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin == "null" or urlsplit(origin).netloc != headers.get("host", ""):
        return f"a request from {origin} may not change anything here"
    return None
