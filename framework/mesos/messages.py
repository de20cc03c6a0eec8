"""Mesos messages as addict dicts, and the small value helpers every component shares.

Messages are JSON objects keyed by proto field names (snake_case); enums are
their symbolic names; `bytes` fields are standard padded base64.
"""
from __future__ import annotations

import base64
import json
import re
import time
import uuid as uuidlib
from typing import Any

from addict import Dict

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)
# States only PARTITION_AWARE frameworks may see; others get TASK_LOST instead.
PARTITION_AWARE_STATES = frozenset(
    {"TASK_DROPPED", "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"}
)


def message(obj: Any = None, **fields: Any) -> Dict:
    """Wrap a JSON object (or keyword fields) as an addict Dict."""
    return Dict(obj or {}, **fields)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Dict:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return Dict(value)


def encode_data(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_data(text: str) -> bytes:
    return base64.b64decode(text)


def new_uuid() -> str:
    """A status update uuid as it travels in JSON: 16 random bytes, base64."""
    return encode_data(uuidlib.uuid4().bytes)


def valid_uuid(text: str) -> bool:
    """True when `text` is base64 of 16 bytes whose version nibble is 1-5 (as Mesos checks)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        return False
    return len(raw) == 16 and 1 <= (raw[6] >> 4) <= 5


def now() -> float:
    return time.time()


def scalar(name: str, value: float, role: str | None = None) -> Dict:
    resource = Dict(name=name, type="SCALAR", scalar={"value": float(value)})
    if role is not None:
        resource.role = role
    return resource


def duration_to_seconds(text: str) -> float:
    """Parse a Mesos duration such as `5secs`, `15mins`, `2.5secs`, `100ms`."""
    units = {
        "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0,
        "hrs": 3600.0, "days": 86400.0, "weeks": 604800.0,
    }
    text = text.strip()
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(f"not a Mesos duration: {text!r}")


def seconds_to_duration(seconds: float) -> str:
    """Print a duration in the largest whole unit, as Mesos does (`5secs`, `15mins`)."""
    for unit, size in (("weeks", 604800), ("days", 86400), ("hrs", 3600), ("mins", 60), ("secs", 1)):
        if seconds >= size and float(seconds) % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


# What validateID refuses in an id: a path separator or a control character (checked on every
# task, executor and container id a master or agent is sent, so one regex, not a loop per character).
_INVALID_ID_CHARACTER = re.compile(r"[/\\\x00-\x1f\x7f]")


def invalid_id(value: str) -> str | None:
    """Client-chosen ids (src/common/validation.cpp `validateID`): what is wrong, in Mesos's words."""
    if not value:
        return "ID must not be empty"
    if len(value) > 255:
        return "ID must not be greater than 255 characters"
    if value in (".", ".."):
        return f"'{value}' is disallowed"
    if _INVALID_ID_CHARACTER.search(value):
        return f"'{value}' contains invalid characters"
    return None
