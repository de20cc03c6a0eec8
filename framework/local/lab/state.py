"""The lab state file: what a lab is made of, written before each thing is made.

`lab up` records a resource *before* creating it (intent first), and writes
the file atomically (temp file, fsync, rename), so whatever moment `lab up`
dies at, the file on disk names a superset of what exists and `lab down`
can remove it. Names are derived from the lab name with a fixed prefix, so
`lab down` can also sweep leftovers even without the file.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import LabError

STATE_FILE = "state.json"
DEFAULT_ROOT = Path(os.environ.get("DOCKYARD_LAB_ROOT", "/var/lib/dockyard-lab"))
_NAME = re.compile(r"^[a-z0-9]{1,8}$")


def check_lab_name(name: str) -> str:
    """Lab names are short: they become part of 15-character interface names."""
    if not _NAME.match(name):
        raise LabError(f"lab name {name!r} must be 1-8 characters of a-z and 0-9")
    return name


def prefix(name: str) -> str:
    """Every netns and link of lab `name` starts with this (`-` ends the name)."""
    return f"dy-{check_lab_name(name)}-"


@dataclass
class Node:
    """One namespace on the bridge, and the roles it runs."""

    name: str                 # hostname inside the lab: control, agent1...
    netns: str
    host_if: str
    ip: str                   # bare address
    roles: list[str]
    partitioned: bool = False


@dataclass
class Proc:
    """A process the lab started; `start_time` guards against PID reuse."""

    node: str
    role: str
    pid: int
    start_time: int
    argv: list[str]
    log: str
    env_file: str = ""


@dataclass
class LabState:
    name: str
    dir: str
    subnet: str
    bridge: str
    bridge_ip: str
    zk: bool = False
    phase: str = "building"   # building -> up -> (down removes the file)
    nodes: dict[str, Node] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    # Host-side resources in creation order, e.g. ["bridge:dy-lab-br", "netns:dy-lab-control"].
    created: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def intend(self, resource: str) -> None:
        """Record `resource` before it is created, and persist."""
        if resource not in self.created:
            self.created.append(resource)
        self.save()

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise LabError(f"no node {name!r} in lab {self.name!r} "
                           f"(nodes: {', '.join(self.nodes) or 'none'})") from None

    def control(self) -> Node:
        return next(node for node in self.nodes.values() if "master" in node.roles)

    def save(self) -> None:
        """Atomic write: a reader sees the old file or the new one, never half."""
        folder = Path(self.dir)
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
        data = json.dumps(asdict(self), indent=2)
        with open(temp, "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def lab_dir(name: str, root: Path | None = None) -> Path:
    return (root or DEFAULT_ROOT) / check_lab_name(name)


def load(name: str, root: Path | None = None) -> LabState | None:
    """The lab's state, or None when no state file exists."""
    path = lab_dir(name, root) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise LabError(f"cannot read lab state {path}: {error}") from error
    nodes = {key: Node(**value) for key, value in raw.pop("nodes", {}).items()}
    procs = [Proc(**value) for value in raw.pop("procs", [])]
    return LabState(nodes=nodes, procs=procs, **raw)


def remove(state: LabState) -> None:
    """Delete the state file last, once everything it names is gone."""
    state.path.unlink(missing_ok=True)
