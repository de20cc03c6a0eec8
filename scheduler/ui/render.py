"""Pages as HTML: one Jinja2 environment (autoescaped), the UI's response headers, its filters.

Everything a page shows comes from users at some point (app ids, labels, commands,
environment values, log lines, error messages that quote them), so every template is
autoescaped and no template marks anything safe. The Content-Security-Policy allows
scripts, styles and connections from this origin only and no inline script or style,
so even markup that slipped through could not run. Live regions are rendered alone
when htmx asks for one (`HX-Target` names it): the page and its refresh share a template.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}  # pages carry the form token


def app_href(app_id: str) -> str:
    """`/ui/apps/group/app`, each segment percent-encoded."""
    return "/ui/apps/" + "/".join(quote(part, safe="") for part in app_id.strip("/").split("/"))


def task_href(task_id: str) -> str:
    return "/ui/tasks/" + quote(task_id, safe="")


def job_href(job_id: str) -> str:
    return "/ui/jobs/" + quote(job_id, safe="")


def agent_href(agent_id: str) -> str:
    return "/ui/agents/" + quote(agent_id, safe="")


def ago(seconds: float | None, now: float | None = None) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago` (`in 5m` for the future); `-` for None."""
    if seconds is None:
        return "-"
    delta = (now if now is not None else time.time()) - seconds
    text = duration(abs(delta), coarse=True)
    return f"{text} ago" if delta >= 0 else f"in {text}"


def duration(seconds: float | None, coarse: bool = False) -> str:
    """`850ms`, `42s`, `3m 5s`, `2h 10m` (`coarse`: the largest unit only)."""
    if seconds is None:
        return "-"
    if seconds < 1 and not coarse:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    for size, unit, smaller, small_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")):
        if whole >= size:
            rest = (whole % size) // smaller
            return f"{whole // size}{unit}" + ("" if coarse or not rest else f" {rest}{small_unit}")
    return f"{whole}s"


def utc(seconds: float | None) -> str:
    """ISO 8601 UTC, for `<time datetime>` and titles."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch from Marathon's or Metronome's timestamps; None when absent or odd."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def number(value: Any) -> str:
    """`0.5`, `128`, `1.25` (no trailing zeros)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


@lru_cache(maxsize=None)
def static_version(name: str) -> str:
    """A short hash of a static file, so its URL changes when it does (it may then be cached)."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    return f"/ui/static/{quote(name)}?v={static_version(name)}"


def query(base: str, **params: Any) -> str:
    """`base?k=v` with the empty parameters left out."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return f"{base}?{urlencode(kept)}" if kept else base


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(ago=ago, duration=duration, utc=utc, pretty_json=pretty_json, number=number,
                       app_href=app_href, task_href=task_href, job_href=job_href, agent_href=agent_href)
    env.globals.update(static_url=static_url, query=query, parse_time=parse_time)
    return env


def page(request: Request, template: str, values: Mapping[str, Any], *, status: int = 200,
         parts: Mapping[str, str] | None = None) -> Response:
    """The page `template`, or only the live region htmx asked for (`parts`: region id ->
    template), with the UI's security headers."""
    target = request.headers.get("hx-target") if request.headers.get("hx-request") else None
    name = (parts or {}).get(target or "", template)
    context = {"request": request, "now": time.time(), **values}
    return HTMLResponse(environment().get_template(name).render(context), status_code=status,
                        headers=PAGE_HEADERS)
