"""What `dockyard up` started, on disk (`WORK_DIR/cluster.json`).

`dockyard down` reads it to stop exactly those processes from another terminal,
also when `up` itself was killed; `dockyard image` reads it to find the agents'
image stores. A pid alone may have been reused by the time anyone reads the
file, so each process is recorded with its kernel start time, and only a
process that has both is taken for the one `up` started.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from framework.local.agent import checkpoint
from framework.proctree import same_process, start_time

RECORD = "cluster.json"


@dataclass(frozen=True)
class Recorded:
    name: str
    pid: int
    start_time: int | None
    log: str = ""

    @classmethod
    def of(cls, name: str, pid: int, log: str = "") -> "Recorded":
        return cls(name, pid, start_time(pid), log)

    def alive(self) -> bool:
        """The very process recorded is still there (same pid, same start time)."""
        return same_process(self.pid, self.start_time)


@dataclass
class ClusterRecord:
    work_dir: Path
    up: Recorded
    agents: list[str] = field(default_factory=list)  # the agents' work dirs, in order
    components: list[Recorded] = field(default_factory=list)  # in start order

    @property
    def path(self) -> Path:
        return self.work_dir / RECORD

    @classmethod
    def begin(cls, work_dir: Path, agents: list[str]) -> "ClusterRecord":
        """The record of this process as `up`, before any component starts."""
        record = cls(work_dir, Recorded.of("up", os.getpid()), agents)
        record.save()
        return record

    def started(self, name: str, pid: int, log: str) -> None:
        self.components.append(Recorded.of(name, pid, log))
        self.save()

    def save(self) -> None:
        checkpoint.write_json(self.path, {"up": asdict(self.up), "agents": self.agents,
                                          "components": [asdict(c) for c in self.components]})

    @classmethod
    def load(cls, work_dir: Path) -> "ClusterRecord | None":
        """The record in `work_dir`, or None when there is none (or it cannot be read)."""
        data = checkpoint.read_json(work_dir / RECORD)
        if not isinstance(data, dict) or not isinstance(data.get("up"), dict):
            return None
        try:
            return cls(work_dir, Recorded(**data["up"]), [str(a) for a in data.get("agents", [])],
                       [Recorded(**c) for c in data.get("components", [])])
        except TypeError:
            return None

    def running(self) -> list[Recorded]:
        """Those recorded processes (`up` first) that still run."""
        return [p for p in [self.up, *self.components] if p.alive()]
