"""Task output read from the agent's `/files/read` API, so output reaches any machine that
reaches the cluster (`job run --wait`, `job logs`, `task logs`).

The agent does not push: a tail is read from its offset whenever the caller pumps it.
"""
from __future__ import annotations

import sys

import httpx

from framework.security.client import ClientConfig
from scheduler.cli.client import err_console, server_message


class LogTail:
    """Follows one sandbox file through the agent's /files/read, from an offset.

    `client` carries the user's credentials and CA (`Api.files_client`); an agent that
    refuses them leaves `refusal` set (said once by `pump`) and the tail stops.
    """

    def __init__(self, client: httpx.Client, agent_url: str, path: str,
                 settings: ClientConfig | None = None) -> None:
        self.client = client
        self.agent_url = agent_url
        self.path = path
        self.offset = 0
        self.settings = settings or ClientConfig()
        self.refusal: str | None = None
        self.reported = False

    def read(self) -> str:
        chunks: list[str] = []
        while self.refusal is None:
            try:
                response = self.client.get(f"{self.agent_url}/files/read",
                                           params={"path": self.path, "offset": self.offset,
                                                   "length": 1 << 20})
            except httpx.HTTPError:
                return "".join(chunks)
            if response.status_code in (401, 403):
                self.refusal = self.settings.refusal(response.status_code, f"the agent at {self.agent_url}",
                                                     server_message(response))
                break
            if response.status_code != 200:
                return "".join(chunks)
            try:
                data = response.json().get("data", "")
            except (ValueError, AttributeError):  # not the agent's files API: nothing to show
                return "".join(chunks)
            if not data:
                return "".join(chunks)
            self.offset += len(data.encode("utf-8", errors="replace"))
            chunks.append(data)
        return "".join(chunks)


Tails = list[tuple[str, LogTail]]


def tails(client: httpx.Client, task: dict, cache: dict, settings: ClientConfig | None = None) -> Tails:
    """The stdout and stderr tails of a task whose sandbox is known (kept in `cache` by task id)."""
    if not task.get("sandbox") or not task.get("agentUrl"):
        return []
    key = task["id"]
    if key not in cache:
        cache[key] = [(name, LogTail(client, task["agentUrl"], f"{task['sandbox']}/{name}", settings))
                      for name in ("stdout", "stderr")]
    return cache[key]


def pump(found: Tails) -> None:
    """Copy what is new in each tail to our own stdout or stderr."""
    for name, tail in found:
        text = tail.read()
        if tail.refusal is not None and not tail.reported:
            tail.reported = True
            err_console.print(f"cannot read {name}: {tail.refusal}", style="yellow")
        if text:
            stream = sys.stdout if name == "stdout" else sys.stderr
            stream.write(text)
            stream.flush()
