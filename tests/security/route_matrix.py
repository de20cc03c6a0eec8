"""The route matrix: every route x method x caller of an ASGI app, against its access decision.

Generic over servers (tests/security/test_route_matrix.py walks the master's, the
agent's and the scheduler's tables with it):

    cases, undecided = route_cases(app.routes)        # undecided: routes without a decision
    failures = run_matrix(app, cases, callers, expect, challenges, json_body=False)
    assert not (undecided or failures), "\\n".join(undecided + failures)

A caller is a name and the `Authorization` header it sends; `expect[access][caller]`
is what that caller must get: `"401"`, `"403"` or `"pass"` (anything but 401/403).
No answer may be a server error (5xx; 503 excepted: a server not ready to act, e.g.
a scheduler not yet subscribed, says so), and a refusal must carry the gate's shape
(`check_refusal`): a 401 challenges with the realm of the route's level
(`challenges[access]`), and the body is Marathon's `{"message": ...}` (`json_body`)
or libprocess's text (`401 Unauthorized.`). Requests go straight to the ASGI app:
an event stream is cut once its status is known.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Union

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


async def ask_async(app: Callable, method: str, path: str,
                    headers: Mapping[str, str] | list[tuple[bytes, bytes]], body: bytes = b"",
                    timeout: float = 10.0) -> Answer:
    """`ask` on the running event loop (to send many requests at once)."""
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
    return asyncio.run(ask_async(app, method, path, headers, body, timeout))


def server_error(status: int) -> bool:
    """A 5xx that is a fault (503 is a server telling the caller it cannot act yet)."""
    return status >= 500 and status != 503


# A realm's name (its challenge is `Basic realm="<name>"`), or the challenge of each level.
Challenges = Union[str, Mapping[Access, str]]
TEXT_UNAUTHORIZED = b"401 Unauthorized."  # libprocess's body of a 401


def challenge_of(challenges: Challenges, access: Access) -> str:
    """The challenge a 401 at this level must carry ("" for a level without a realm)."""
    if isinstance(challenges, str):
        return f'Basic realm="{challenges}"'
    return challenges.get(access, "")


def check_refusal(answer: Answer, challenge: str, json_body: bool = True) -> str | None:
    """Why a 401/403 does not have the gate's shape (None when it does).

    `challenge` is the `WWW-Authenticate` a 401 must carry; a Bearer challenge may go on
    with what was wrong (`, error="invalid_token", ...`). A plain realm name stands for
    its Basic challenge.
    """
    if not challenge.startswith(("Basic ", "Bearer ")):
        challenge = f'Basic realm="{challenge}"'
    got = answer.headers.get("www-authenticate")
    if answer.status == 401 and not (got == challenge or (got or "").startswith(challenge + ",")):
        return f"401 without the challenge {challenge!r} (got {got!r})"
    if answer.status not in (401, 403):
        return None
    if json_body:
        try:
            message = json.loads(answer.body).get("message")
        except (ValueError, AttributeError):
            return f"{answer.status} body is not JSON: {answer.body[:80]!r}"
        if not isinstance(message, str) or not message:
            return f"{answer.status} JSON without a message: {answer.body[:80]!r}"
    elif answer.status == 401 and answer.body != TEXT_UNAUTHORIZED:
        return f"401 body is not {TEXT_UNAUTHORIZED!r}: {answer.body[:80]!r}"
    elif answer.status == 403 and not answer.body.strip():
        return "403 without a body"
    return None


def judge(label: str, answer: Answer, wanted: str, challenge: str, json_body: bool) -> str | None:
    """What is wrong with one answer (None: as expected)."""
    got = answer.status
    if server_error(got):
        return f"{label}: {got} {answer.body[:120]!r}"
    if wanted == "pass" and got in (401, 403):
        return f"{label}: refused {got}, expected to pass"
    if wanted != "pass" and str(got) != wanted:
        return f"{label}: {got}, expected {wanted}"
    if got in (401, 403) and (why := check_refusal(answer, challenge, json_body)):
        return f"{label}: {why}"
    return None


def run_matrix(app: Callable, cases: list[Case], callers: list[Caller], expect: Mapping[Access, Mapping[str, str]],
               challenges: Challenges, json_body: bool = True, path_of: Callable[[Case], str] | None = None,
               body: bytes = b"", overrides: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """Every case for every caller; the list of what went wrong (empty: all as expected).

    `path_of` gives the path to ask for a case (default: its own); `body` goes with every
    method but GET and HEAD (as JSON); `overrides[(template, caller)]` replaces what the
    level expects for one route (an ACL that refuses a caller the gate lets in).
    """
    async def walk() -> list[str]:
        failures = []
        for case in cases:
            path = path_of(case) if path_of is not None else case.path
            payload = b"" if case.method in ("GET", "HEAD") else body
            for caller in callers:
                headers = {"Authorization": caller.authorization} if caller.authorization is not None else {}
                label = f"{case.method} {case.path} ({case.template}, {case.access.value}) as {caller.name}"
                try:
                    answer = await ask_async(app, case.method, path, headers, payload)
                except asyncio.TimeoutError:
                    failures.append(f"{label}: no answer")
                    continue
                wanted = (overrides or {}).get((case.template, caller.name)) or expect[case.access][caller.name]
                why = judge(label, answer, wanted, challenge_of(challenges, case.access), json_body)
                if why is not None:
                    failures.append(why)
        return failures

    return asyncio.run(walk())
