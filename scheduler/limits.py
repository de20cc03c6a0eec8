"""The scheduler's input limits: what one request, one spec and one client may cost.

Every bound here exists because its absence let one request take the scheduler
down: an app of a million instances grew it past 24 GB, a 50 MB body or 10,000
levels of JSON nesting were read and parsed whole, forty event-stream clients
that never read held a copy of every event, and slow connections held file
descriptors until none were left. The numbers are flags of `dockyard scheduler`
(`scheduler/cli/scheduler.py`); `configure` makes them the process's own before any spec
is read, so the store never holds a spec this process would refuse to load.
"""
from __future__ import annotations

import json
import resource
from dataclasses import dataclass, field, replace
from typing import Any

from framework.bodies import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH

INT32_MAX = 2**31 - 1  # Marathon's `format: int32` fields (counts, seconds)


def _default_max_connections() -> int:
    """Half of what this process may open, at most 4096: the store, ZooKeeper and the
    master need descriptors too."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 2))


@dataclass(frozen=True)
class Limits:
    # one request
    max_request_bytes: int = DEFAULT_MAX_BYTES
    max_json_depth: int = DEFAULT_MAX_DEPTH
    max_header_bytes: int = 256 << 10
    # one spec
    max_id_length: int = 255
    max_instances: int = 10_000
    max_env_vars: int = 1_000
    max_env_bytes: int = 256 << 10
    max_labels: int = 256
    max_label_bytes: int = 64 << 10
    max_items: int = 256  # any other list in a spec: health checks, ports, volumes, constraints...
    # clients and connections
    max_connections: int = field(default_factory=_default_max_connections)
    max_connections_per_client: int = 256
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 5
    event_stream_bytes: int = 8 << 20

    def with_changes(self, **changes: object) -> "Limits":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


DEFAULT = Limits()
_current: list[Limits] = [DEFAULT]


def current() -> Limits:
    """The limits this process enforces (what `configure` set, else the defaults)."""
    return _current[0]


def configure(limits: Limits) -> Limits:
    """Make `limits` this process's own; returns the previous ones (tests restore them)."""
    previous, _current[0] = _current[0], limits
    return previous


def _size(value: object) -> int:
    return len(value) if isinstance(value, str) else len(json.dumps(value, default=str))


def check_env(value: dict[str, Any]) -> dict[str, Any]:
    """An environment within `max_env_vars` and `max_env_bytes` (raises ValueError: a field error);
    a value that is not a string (a secret reference) counts as its JSON."""
    limit = current()
    if len(value) > limit.max_env_vars:
        raise ValueError(f"at most {limit.max_env_vars} variables")
    if sum(len(k) + _size(v) + 2 for k, v in value.items()) > limit.max_env_bytes:
        raise ValueError(f"at most {limit.max_env_bytes} bytes of names and values")
    return value


def check_labels(value: dict[str, str]) -> dict[str, str]:
    """Labels within `max_labels` and `max_label_bytes` (names and values together)."""
    limit = current()
    if len(value) > limit.max_labels:
        raise ValueError(f"at most {limit.max_labels} labels")
    if sum(len(k) + len(v) for k, v in value.items()) > limit.max_label_bytes:
        raise ValueError(f"at most {limit.max_label_bytes} bytes of names and values")
    return value


def check_id_length(value: str) -> str:
    longest = current().max_id_length
    if len(value) > longest:
        raise ValueError(f"must be at most {longest} characters")
    return value
