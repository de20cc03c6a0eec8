"""Helpers of the agent and executor security tests: executor calls, raw requests, custom executors.

    info = cluster.executor("exec-a")                        # its /state entry (tests/support/cluster.py)
    token = executor_token(cluster.bundle, info)             # tests/support/security.py
    status, headers, body = executor_call(address, call, token=token)
"""
from __future__ import annotations

import base64
import json
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

from tests.support.security import call


def executor_call(address: str, body: dict | bytes, token: str | None = None, *,
                  authorization: str | None = None, scheme: str = "http",
                  context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    return call("POST", f"{scheme}://{address}/api/v1/executor", body=body, headers=headers, context=context)


def update_call(framework_id: str, executor_id: str, task_id: str, state: str) -> dict:
    """An executor's UPDATE as an executor would send it (any uuid)."""
    status = {"task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
              "uuid": base64.b64encode(uuid.uuid4().bytes).decode(), "executor_id": {"value": executor_id}}
    return {"type": "UPDATE", "framework_id": {"value": framework_id}, "executor_id": {"value": executor_id},
            "update": {"status": status}}


def raw_request(address: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Bytes in, the whole answer out: for headers no HTTP client would send."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def grep_tree(root: Path, needle: bytes) -> list[Path]:
    """Files under `root` holding `needle` (symlinks not followed; unreadable files skipped)."""
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_symlink() or not path.is_file():
                continue
            if needle in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def executor_info(executor_id: str, command: str | None = None, argv: list[str] | None = None,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """A custom ExecutorInfo: a shell command, or an argv (dockyard's own executor, warm)."""
    info: dict[str, Any] = {"executor_id": {"value": executor_id}, "type": "CUSTOM",
                            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}
    if argv is not None:
        info["command"] = {"shell": False, "value": argv[0], "arguments": argv}
    else:
        info["command"] = {"value": command or "exec sleep 60"}
    if env:
        info["command"]["environment"] = {"variables": [{"name": k, "value": v} for k, v in env.items()]}
    return info


def task_for(executor: dict, task_id: str, command: str | None = None, container: dict | None = None) -> dict:
    """A task for a custom executor; dockyard's executor reads the command from `data`."""
    task: dict[str, Any] = {"name": task_id, "task_id": {"value": task_id}, "executor": executor,
                            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}
    if command is not None:
        payload: dict[str, Any] = {"command": {"value": command}}
        if container is not None:
            payload["container"] = container
        task["data"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return task
