"""Mesos `Secret` values inside TaskInfo JSON: find them, read them, hide them.

A VALUE secret carries its bytes inline (`{"type": "VALUE", "value": {"data":
<base64>}}`) wherever Mesos allows one: a SECRET environment variable of a
CommandInfo, or a volume whose `source` is of type SECRET. The launch is the
only place the bytes may travel; everything that shows or keeps a task
(the master's `/state` and operator API, the agent's checkpoint) goes through
`redacted` first, which puts `MARKER` where the bytes were. Mesos itself prints
them, base64-encoded; this is the recommendation of its own secrets doc.

Standard library only: the executor imports this on its start-up path.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, Iterable

from framework.errors import DockyardError

MARKER = "***"  # what views show instead of a secret's bytes


class SecretFormatError(DockyardError, ValueError):
    """A SECRET variable or volume that cannot be delivered (shape, encoding, NUL byte)."""


def _hidden(secret: Any) -> Any:
    if not isinstance(secret, dict):
        return secret
    value = secret.get("value")
    if not isinstance(value, dict) or "data" not in value:
        return secret
    return {**secret, "value": {**value, "data": MARKER}}


def redacted(obj: Any) -> Any:
    """`obj` with the bytes of every VALUE secret replaced by `MARKER`.

    Copies only what changes, so a task without secrets comes back as the same object
    (views of thousands of tasks pay one walk, not a copy). Secrets are found by
    shape, wherever Mesos may nest them (command, executor, container, task groups).
    """
    if isinstance(obj, dict):
        changed: dict[str, Any] | None = None
        for key, value in obj.items():
            new = _hidden(value) if key == "secret" else redacted(value)
            if new is not value:
                if changed is None:
                    changed = dict(obj)
                changed[key] = new
        return obj if changed is None else changed
    if isinstance(obj, list):
        items = [redacted(item) for item in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else items
    return obj


def secret_bytes(secret: Any, where: str) -> bytes:
    """The bytes of a VALUE secret; REFERENCE secrets need a resolver, which dockyard's agent has not."""
    if not isinstance(secret, dict):
        raise SecretFormatError(f"{where}: a SECRET needs a 'secret'")
    kind = secret.get("type", "VALUE")
    if kind == "REFERENCE":
        raise SecretFormatError(f"{where}: Default secret resolver cannot resolve references")
    if kind != "VALUE" or not isinstance(secret.get("value"), dict):
        raise SecretFormatError(f"{where}: Secret of type VALUE must have the 'value' field set")
    try:
        data = base64.b64decode(secret["value"].get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise SecretFormatError(f"{where}: the secret's value is not base64") from None
    return data


def environment_secrets(variables: Iterable[dict]) -> dict[str, str]:
    """NAME -> text of each SECRET variable of a CommandInfo's environment."""
    out: dict[str, str] = {}
    for variable in variables:
        if variable.get("type") != "SECRET":
            continue
        name = variable.get("name") or ""
        data = secret_bytes(variable.get("secret"), f"environment variable '{name}'")
        if b"\0" in data:
            raise SecretFormatError(f"environment variable '{name}': the secret holds a NUL byte")
        try:
            out[name] = data.decode()
        except UnicodeDecodeError:
            raise SecretFormatError(f"environment variable '{name}': the secret is not UTF-8 text") from None
    return out


def is_secret_volume(volume: dict) -> bool:
    return (volume.get("source") or {}).get("type") == "SECRET"


def volume_secrets(container: dict | None) -> list[tuple[str, bytes]]:
    """(container path, bytes) of each SECRET volume of a ContainerInfo."""
    found = []
    for volume in (container or {}).get("volumes") or []:
        if not is_secret_volume(volume):
            continue
        path = volume.get("container_path") or ""
        if not path:
            raise SecretFormatError("a secret volume needs a container_path")
        found.append((path, secret_bytes(volume["source"].get("secret"), f"volume '{path}'")))
    return found


def without_secret_volumes(container: dict | None) -> dict | None:
    """The ContainerInfo less its SECRET volumes (what a bind-mount planner may look at)."""
    if not container or not any(is_secret_volume(v) for v in container.get("volumes") or []):
        return container
    return {**container, "volumes": [v for v in container["volumes"] if not is_secret_volume(v)]}


def value_secret(data: bytes) -> dict:
    """A Mesos Secret of type VALUE carrying `data`."""
    return {"type": "VALUE", "value": {"data": base64.b64encode(data).decode()}}


def checkpointed(task_info: dict) -> dict:
    """What of a TaskInfo an agent may keep on disk: no secret's bytes, and no `data`.

    `data` is opaque to an agent and never read back by its recovery; a custom executor
    may carry anything in it (dockyard's warm executor carries the task's CommandInfo,
    SECRET variables included), so it stays in memory only."""
    info = redacted(task_info)
    if "data" in info:
        info = {key: value for key, value in info.items() if key != "data"}
    return info
