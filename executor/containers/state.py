"""A container's lifecycle as an explicit state machine, persisted atomically.

The table is the contract: a move not listed raises `ContainerError` naming both
ends; moving to the current state is a no-op (so `destroy()` may run twice).
"""
from __future__ import annotations

import json
import os
import tempfile
from enum import Enum
from pathlib import Path

from framework.errors import ContainerError


class State(str, Enum):
    NEW = "new"              # ids chosen, nothing on the host yet
    PREPARED = "prepared"    # cgroup made, rootfs mounted, bundle written
    RUNNING = "running"      # the runtime started the container's init
    STOPPED = "stopped"      # init exited (or was killed); mounts and cgroup still there
    DESTROYED = "destroyed"  # no mount, cgroup, runtime state or bundle left


ALLOWED: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.PREPARED, State.DESTROYED}),
    State.PREPARED: frozenset({State.RUNNING, State.DESTROYED}),
    State.RUNNING: frozenset({State.STOPPED}),
    State.STOPPED: frozenset({State.DESTROYED}),
    State.DESTROYED: frozenset(),
}


def check_move(current: State, target: State) -> bool:
    """True if the move changes something, False for a same-state no-op; raises if illegal."""
    if current == target:
        return False
    if target not in ALLOWED[current]:
        raise ContainerError(f"container cannot go from {current.value} to {target.value}")
    return True


def write_json(path: Path, data: dict) -> None:
    """Temp file then rename: a killed process leaves the old or the new file, never half
    of one. No fsync: we guard against crashes of our processes, not of the machine, and
    an fsync per state change would sit on every container start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
