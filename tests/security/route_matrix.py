"""The route matrix: every route x method x caller of an ASGI app, against its access decision.

Generic over servers, so the master's and the agents' tables can be walked the
same way as the scheduler's:

    cases = route_cases(app.routes)                   # fails on a route without a decision
    failures = run_matrix(app, cases, callers, EXPECT)
    assert not failures, "\\n".join(failures)

A caller is a name and the `Authorization` header it sends; `EXPECT[access][caller]`
is what that caller must get: `"401"`, `"403"` or `"pass"` (anything but 401/403).
No answer may be a server error (5xx; 503 excepted: a server not ready to act, e.g.
a scheduler not yet subscribed, says so), and a refusal must carry the gate's shape
(`check_refusal`). Requests go straight to the ASGI app: an event stream is cut
once its status is known.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from starlette.routing import BaseRoute, Route

from framework.security.gate import Access, access_of

SAMPLE_PARAM = "x"


@dataclass(frozen=True)
class Case:
    path: str        # a concrete path (parameters filled in)
    method: str
    access: Access
    template: str    # the route's own path, for messages


@dataclass(frozen=True)
class Caller:
    name: str
    authorization: str | None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


# What each kind of caller gets at each access level (the scheduler's; a server with other realms
# passes its own table).
EXPECT: dict[Access, dict[str, str]] = {
    Access.OPEN: {"none": "pass", "wrong": "pass", "viewer": "pass", "admin": "pass"},
    Access.READ: {"none": "401", "wrong": "401", "viewer": "pass", "admin": "pass"},
    Access.WRITE: {"none": "401", "wrong": "401", "viewer": "403", "admin": "pass"},
}


def concrete(path: str) -> str:
    """A route path with each `{param}` / `{param:path}` replaced by a sample value."""
    return re.sub(r"{\w+(?::\w+)?}", SAMPLE_PARAM, path)


def route_cases(routes: Iterable[BaseRoute]) -> tuple[list[Case], list[str]]:
    """(cases, undecided): one case per route and method; `undecided` names the routes and
    methods made without an access decision (the test fails on any)."""
    cases, undecided = [], []
    for route in routes:
        if not isinstance(route, Route):
            undecided.append(f"{route!r}: not a plain route, cannot be walked")
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            access = access_of(route, method)
            if access is None:
                undecided.append(f"{method} {route.path}: made without an access decision")
                continue
            cases.append(Case(concrete(route.path), method, access, route.path))
    return cases, undecided


async def _ask(app: Callable, method: str, path: str, headers: Mapping[str, str] | list[tuple[bytes, bytes]],
               body: bytes = b"", timeout: float = 10.0) -> Answer:
    raw_headers = headers if isinstance(headers, list) else [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if body:
        raw_headers = [*raw_headers, (b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode())]
    path_part, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path_part, "raw_path": path_part.encode(), "root_path": "",
             "query_string": query.encode(), "headers": raw_headers, "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", 8080)}
    started = asyncio.Event()
    done = asyncio.Event()
    answer: dict[str, Any] = {"body": b""}
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # the client stays until we have what we came for
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1")
                                 for k, v in message.get("headers", [])}
            started.set()
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")
            if not message.get("more_body") or answer["headers"].get("content-type", "").startswith(
                    "text/event-stream"):
                done.set()

    task = asyncio.ensure_future(app(scope, receive, send))
    try:
        await asyncio.wait_for(started.wait(), timeout)
        await asyncio.wait_for(asyncio.shield(done.wait()), timeout)
    finally:
        done.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return Answer(answer["status"], answer["headers"], answer["body"])


def ask(app: Callable, method: str, path: str, headers: Mapping[str, str] | list[tuple[bytes, bytes]],
        body: bytes = b"", timeout: float = 10.0) -> Answer:
    """One request straight to an ASGI app (a stream is cut once it has started)."""
    return asyncio.run(_ask(app, method, path, headers, body, timeout))


def server_error(status: int) -> bool:
    """A 5xx that is a fault (503 is a server telling the caller it cannot act yet)."""
    return status >= 500 and status != 503


def check_refusal(answer: Answer, realm: str, json_body: bool = True) -> str | None:
    """Why a 401/403 does not have the gate's shape (None when it does)."""
    if answer.status == 401 and answer.headers.get("www-authenticate") != f'Basic realm="{realm}"':
        return f"401 without the challenge (got {answer.headers.get('www-authenticate')!r})"
    if json_body and answer.status in (401, 403):
        try:
            message = json.loads(answer.body).get("message")
        except (ValueError, AttributeError):
            return f"{answer.status} body is not JSON: {answer.body[:80]!r}"
        if not isinstance(message, str) or not message:
            return f"{answer.status} JSON without a message: {answer.body[:80]!r}"
    return None


def run_matrix(app: Callable, cases: list[Case], callers: list[Caller], expect: Mapping[Access, Mapping[str, str]],
               realm: str, json_body: bool = True) -> list[str]:
    """Every case for every caller; the list of what went wrong (empty: all as expected)."""
    async def walk() -> list[str]:
        failures = []
        for case in cases:
            for caller in callers:
                headers = {"Authorization": caller.authorization} if caller.authorization is not None else {}
                label = f"{case.method} {case.path} ({case.template}, {case.access.value}) as {caller.name}"
                try:
                    answer = await _ask(app, case.method, case.path, headers)
                except asyncio.TimeoutError:
                    failures.append(f"{label}: no answer")
                    continue
                wanted = expect[case.access][caller.name]
                got = answer.status
                if server_error(got):
                    failures.append(f"{label}: {got} {answer.body[:120]!r}")
                elif wanted == "pass" and got in (401, 403):
                    failures.append(f"{label}: refused {got}, expected to pass")
                elif wanted != "pass" and str(got) != wanted:
                    failures.append(f"{label}: {got}, expected {wanted}")
                elif got in (401, 403) and (why := check_refusal(answer, realm, json_body)):
                    failures.append(f"{label}: {why}")
        return failures

    return asyncio.run(walk())
