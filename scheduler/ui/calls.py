"""The UI's changes go through the scheduler's own REST API, in process.

A button on a page becomes the very call the CLI or curl would make (`PUT
/v2/apps/x`, `POST /v1/jobs/j/runs`, ...), sent to this process's app through
httpx's ASGI transport with the caller's own `Authorization`: the gate
authenticates it again, and every check the API makes (roles, `run_tasks` ACLs,
privileged fields, secrets, deployment locks, validation) applies unchanged, with
the API's own answers (422 `details` naming fields, 409 with the locking
deployments) to show. Nothing leaves the process; no second implementation of a
change can drift from the API's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import httpx
from starlette.requests import Request

INTERNAL = "http://scheduler.internal"


@dataclass(frozen=True)
class Answer:
    """The API's answer: status, JSON body (None when empty or not JSON), headers."""

    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def message(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return self.body["message"]
        return f"HTTP {self.status}"

    @property
    def details(self) -> list[dict]:
        """Marathon's `details`: `[{"path": "/cmd", "errors": [...]}]`."""
        found = self.body.get("details") if isinstance(self.body, dict) else None
        return [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []


async def call_api(request: Request, method: str, path: str, *, body: Any = None,
                   params: Mapping[str, str] | None = None) -> Answer:
    """`method path` on this scheduler's API, as the caller of `request`."""
    client_host = request.client.host if request.client else "127.0.0.1"
    transport = httpx.ASGITransport(app=request.app, client=(client_host, 0))
    headers = {"Accept": "application/json"}
    if request.headers.get("authorization"):
        headers["Authorization"] = request.headers["authorization"]
    content = None
    if body is not None:
        content = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(transport=transport, base_url=INTERNAL) as client:
        response = await client.request(method, path, content=content, params=params, headers=headers)
    try:
        parsed = response.json() if response.content.strip() else None
    except ValueError:
        parsed = None
    return Answer(response.status_code, parsed, dict(response.headers))
