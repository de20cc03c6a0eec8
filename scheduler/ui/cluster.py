"""What the master and the agents say, read as the person looking.

The scheduler knows its own apps, jobs and tasks; the agents' capacity, the other
frameworks and the sandboxes belong to Mesos. The UI reads them as the CLI does
(`dockyard status`, `task logs`): with the caller's own credentials, passed on
unchanged, so the master's `view_*` and the agents' `access_sandboxes` ACLs decide
what each person sees, never the scheduler's broader principal. TLS towards them
uses the scheduler's CA (and its certificate where mutual TLS asks for one).

The master's state is kept a few seconds per caller: a page that refreshes on
every status update must not have the master serialise every task each time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
from starlette.requests import Request

from framework.errors import MesosError
from framework.local.cluster.status import summarize

STATE_SECONDS = 1.0
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
TAIL_BYTES = 64 * 1024


class Unreadable(MesosError):
    """The master or an agent would not answer: why, for the page, and the status to answer
    with (404: no such file; 403: refused to this caller; 502: unreachable or failing)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def _client(ctx: Any) -> httpx.AsyncClient:
    """One client for the UI's calls to Mesos (made on first use; closed with the process)."""
    client = ctx.extras.get("ui_mesos_client")
    if client is None:
        context = ctx.config.security.peer.ssl_context()
        client = ctx.extras["ui_mesos_client"] = httpx.AsyncClient(
            timeout=TIMEOUT, verify=context if context is not None else True)
    return client


def _caller(request: Request) -> dict[str, str]:
    authorization = request.headers.get("authorization")
    return {"Authorization": authorization} if authorization else {}


def _refused(response: httpx.Response, what: str) -> Unreadable:
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    if response.status_code in (401, 403):
        return Unreadable(f"{what} refuses to show this to you ({response.status_code} {text})".strip(), 403)
    if response.status_code == 404:
        return Unreadable(f"{what} has no such file", 404)
    return Unreadable(f"{what} answered {response.status_code} {text}".strip())


def master_url(ctx: Any) -> str | None:
    """The leading master's URL: the one the driver follows, else `--master` when it names one."""
    driver_master = getattr(ctx.driver, "master", None) if ctx.driver is not None else None
    master = driver_master or ("" if str(ctx.config.master).startswith("zk://") else ctx.config.master)
    return ctx.config.security.peer.base_url(master) if master else None


@dataclass
class _Cached:
    at: float
    state: dict


async def master_state(request: Request, ctx: Any) -> dict:
    """The master's `/master/state` as the caller may see it (kept `STATE_SECONDS` per caller)."""
    cache: dict[str, _Cached] = ctx.extras.setdefault("ui_master_states", {})
    key = request.headers.get("authorization", "")
    found = cache.get(key)
    if found is not None and time.monotonic() - found.at < STATE_SECONDS:
        return found.state
    url = master_url(ctx)
    if url is None:
        raise Unreadable("no leading master is known yet")
    try:
        response = await _client(ctx).get(f"{url}/master/state", headers=_caller(request))
    except httpx.HTTPError as error:
        raise Unreadable(f"the master at {url} is not reachable: {error}") from None
    if response.status_code != 200:
        raise _refused(response, f"the master at {url}")
    state = response.json()
    if len(cache) > 64:  # one entry per distinct caller: keep it small
        cache.clear()
    cache[key] = _Cached(time.monotonic(), state)
    return state


async def cluster_summary(request: Request, ctx: Any) -> dict:
    """Agents (total, used, free), frameworks and live tasks, as `dockyard status` shows them,
    or `{"error": why}` when the master cannot be read."""
    try:
        state = await master_state(request, ctx)
    except Unreadable as error:
        return {"error": str(error), "agents": [], "frameworks": [], "tasks": [], "task_agents": {}}
    summary = summarize(state)
    for agent in summary["agents"]:
        agent["share"] = {k: (float(agent["used"][k]) / float(agent["total"][k]) if float(agent["total"][k]) else 0.0)
                          for k in agent["total"]}
    by_id = {a["id"]: a for a in summary["agents"]}
    for slave in state.get("slaves", []):
        if slave.get("id") in by_id:
            by_id[slave["id"]]["reserved"] = slave.get("reserved_resources") or {}
            by_id[slave["id"]]["port"] = slave.get("port")
    summary["task_agents"] = {t.get("id"): t.get("slave_id") for f in state.get("frameworks", [])
                              for t in f.get("tasks", [])}
    return summary


# -- sandboxes ---------------------------------------------------------------------------------

def sandbox_path(sandbox: str, relative: str) -> str:
    """`relative` below the task's sandbox; ValueError when it would lead anywhere else."""
    if "\0" in relative or "\\" in relative:
        raise ValueError("a path below the sandbox, please")
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError("'..' leads out of the sandbox")
    return "/".join([sandbox.rstrip("/"), *parts])


async def browse(request: Request, ctx: Any, agent_url: str, path: str) -> list[dict]:
    """The agent's `/files/browse` listing of `path`, as the caller."""
    try:
        response = await _client(ctx).get(f"{agent_url}/files/browse", params={"path": path},
                                          headers=_caller(request))
    except httpx.HTTPError as error:
        raise Unreadable(f"the agent at {agent_url} is not reachable: {error}") from None
    if response.status_code != 200:
        raise _refused(response, f"the agent at {agent_url}")
    listing = response.json()
    return listing if isinstance(listing, list) else []


async def read(request: Request, ctx: Any, agent_url: str, path: str, offset: int | None,
               length: int = 1 << 20) -> tuple[str, int, int]:
    """`(text, offset it starts at, offset after it)`: from `offset`, or the last
    `TAIL_BYTES` of the file when `offset` is None."""
    client, headers = _client(ctx), _caller(request)
    try:
        if offset is None:
            size = await _read(client, headers, agent_url, path, -1, 0)
            offset = max(size[1] - TAIL_BYTES, 0)
        data, start = await _read(client, headers, agent_url, path, offset, length)
    except httpx.HTTPError as error:
        raise Unreadable(f"the agent at {agent_url} is not reachable: {error}") from None
    return data, start, start + len(data.encode("utf-8", errors="replace"))


async def _read(client: httpx.AsyncClient, headers: dict, agent_url: str, path: str, offset: int,
                length: int) -> tuple[Any, int]:
    response = await client.get(f"{agent_url}/files/read",
                                params={"path": path, "offset": offset, "length": length}, headers=headers)
    if response.status_code == 404:
        return "", max(offset, 0)  # not written yet
    if response.status_code != 200:
        raise _refused(response, f"the agent at {agent_url}")
    found = response.json()
    return found.get("data", ""), int(found.get("offset", 0))


async def download(request: Request, ctx: Any, agent_url: str, path: str) -> tuple[httpx.Response, AsyncIterator[bytes]]:
    """The agent's `/files/download` answer, streamed (the caller closes it by reading to the end)."""
    client = _client(ctx)
    outgoing = client.build_request("GET", f"{agent_url}/files/download", params={"path": path},
                                    headers=_caller(request))
    try:
        response = await client.send(outgoing, stream=True)
    except httpx.HTTPError as error:
        raise Unreadable(f"the agent at {agent_url} is not reachable: {error}") from None
    if response.status_code != 200:
        await response.aread()
        await response.aclose()
        raise _refused(response, f"the agent at {agent_url}")

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    return response, body()

