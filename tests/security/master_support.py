"""Helpers for the master's security tests: a secured `dockyard master` process and its clients.

    bundle = Bundle(tmp / "security").ensure(agents=["a", "b"])
    master = SecuredMaster(tmp, "--credentials", str(bundle.credentials_file), "--authenticate-agents")
    agent = AuthAgent(master.url, bundle.identity("agent-a"))   # speaks docs/internal-protocol.md
    stream = subscribe(master.url, {"user": "u", "name": "f"}, bundle.identity("dockyard"))

The master's `/health` is open, so readiness never needs credentials.
"""
from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

from framework.mesos.messages import new_uuid
from framework.mesos.resources import Resources
from framework.security.bundle import Identity
from tests.support.mesos_http import JSON_HEADERS, EventStream
from tests.support.procs import Process, dockyard, free_port, wait_for
from tests.support.security import authorization


class SecuredMaster:
    """One `dockyard master` process on loopback with the given flags; `restart()` keeps its port
    and work dir (so its registry)."""

    def __init__(self, workdir: Path, *flags: str, env: dict[str, str] | None = None,
                 context: ssl.SSLContext | None = None, name: str = "master") -> None:
        self.workdir = workdir
        self.flags = list(flags)
        self.env = env
        self.context = context
        self.name = name
        self.port = free_port()
        self.process: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return dockyard("master", "--ip", "127.0.0.1", "--port", str(self.port),
                        "--work-dir", str(self.workdir / self.name), "--allocation-interval", "0.2",
                        *self.flags)

    def start(self) -> None:
        self.process = Process(self.argv(), self.workdir / f"{self.name}.log", env=self.env)
        process = self.process

        def healthy() -> bool | str:
            if not process.alive():
                return "exited"
            try:
                return httpx.get(self.url + "/health", verify=self.context or True, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            outcome = wait_for(healthy, timeout=30, what="master /health")
        except TimeoutError:
            process.stop()  # never leave a master behind a failed start
            raise
        if outcome == "exited":
            process.stop()
            raise RuntimeError(f"master exited:\n{process.output()[-3000:]}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def output(self) -> str:
        return self.process.output() if self.process else ""


def headers(identity: Identity | None, **extra: str) -> dict[str, str]:
    merged = dict(JSON_HEADERS)
    if identity is not None:
        merged.update(authorization(identity))
    merged.update(extra)
    return merged


def subscribe(url: str, info: dict[str, Any], identity: Identity | None,
              framework_id: str | None = None) -> EventStream:
    """A raw SUBSCRIBE (read on a thread): `.status`, `.body`, `.next()`, `.stream_id`."""
    body: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
    if framework_id is not None:
        body["framework_id"] = {"value": framework_id}
        body["subscribe"]["framework_info"] = {**info, "id": {"value": framework_id}}
    return EventStream("POST", url + "/api/v1/scheduler", body, headers=headers(identity))


def scheduler_call(url: str, identity: Identity | None, framework_id: str, stream_id: str,
                   kind: str, **payload: Any) -> httpx.Response:
    body = {"type": kind, "framework_id": {"value": framework_id}, **payload}
    return httpx.post(url + "/api/v1/scheduler", content=json.dumps(body),
                      headers=headers(identity, **{"Mesos-Stream-Id": stream_id}), timeout=10)


def operator_call(url: str, identity: Identity | None, kind: str, **payload: Any) -> httpx.Response:
    return httpx.post(url + "/api/v1", content=json.dumps({"type": kind, **payload}),
                      headers=headers(identity), timeout=10)


def get(url: str, identity: Identity | None = None, **extra: str) -> httpx.Response:
    merged = authorization(identity) if identity is not None else {}
    merged.update(extra)
    return httpx.get(url, headers=merged, timeout=10)


class AuthAgent:
    """A client of the internal agent protocol that authenticates with Basic (an agent's
    `--credential`); like tests/support/mesos_http.FakeAgent otherwise."""

    def __init__(self, url: str, identity: Identity | None, hostname: str = "agent1", port: int = 5051,
                 agent_id: str | None = None, reregister: dict[str, Any] | None = None) -> None:
        self.url = url
        self.identity = identity
        self.resources = Resources.parse("cpus:4;mem:4096;disk:1000;ports:[31000-32000]").to_json()
        info: dict[str, Any] = {"hostname": hostname, "port": port, "resources": self.resources,
                                "attributes": []}
        if agent_id is None:
            body: dict[str, Any] = {"type": "REGISTER", "agent_info": info, "ip": "127.0.0.1",
                                    "version": "1.11.0"}
        else:
            info["id"] = {"value": agent_id}
            body = {"type": "REREGISTER", "agent_id": {"value": agent_id}, "agent_info": info,
                    "ip": "127.0.0.1", "version": "1.11.0", **(reregister or {})}
        self.stream = EventStream("POST", url + "/internal/agent", body, headers=headers(identity))
        self.status = self.stream.status
        self.id: str | None = agent_id
        if self.status == 200:
            first = self.stream.next()
            payload = first.get("registered") or first.get("reregistered")
            self.id = payload["agent_id"]["value"]

    def post(self, kind: str, identity: Identity | None = None, **payload: Any) -> httpx.Response:
        """One call naming this agent's id, as `identity` (default: this agent's own)."""
        who = identity if identity is not None else self.identity
        body = {"type": kind, "agent_id": {"value": self.id}, **payload}
        return httpx.post(self.url + "/internal/agent", content=json.dumps(body), headers=headers(who),
                          timeout=10)

    def update(self, framework_id: str, task_id: str, state: str,
               identity: Identity | None = None) -> httpx.Response:
        status = {"task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
                  "uuid": new_uuid(), "timestamp": time.time()}
        return self.post("UPDATE", identity, framework_id={"value": framework_id}, status=status,
                         latest_state=state)

    def close(self) -> None:
        self.stream.close()


def task(task_id: str, agent_id: str, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": agent_id},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
        "command": {"value": "true"}}
    info.update(extra)
    return info


def launch(url: str, identity: Identity | None, framework_id: str, stream_id: str, offer: dict[str, Any],
           operation: dict[str, Any]) -> httpx.Response:
    return scheduler_call(url, identity, framework_id, stream_id, "ACCEPT", accept={
        "offer_ids": [offer["id"]], "operations": [operation], "filters": {"refuse_seconds": 0}})


def state(url: str, identity: Identity | None) -> dict[str, Any]:
    response = get(url + "/state", identity)
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def until(condition: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    return wait_for(condition, timeout=timeout, what=what)
