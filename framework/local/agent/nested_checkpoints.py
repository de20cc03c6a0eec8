"""Nested containers' checkpoints: what lets a restarted agent take them back, or end them.

Kept for their root container's life, as Mesos keeps `containers/<root>/containers/<child>/`
in its runtime directory (src/slave/containerizer/mesos/paths.hpp), under
`nested/containers/<root>/<child>/...` of the agent's work dir: `launch.json` while a nested
container runs (its cgroup, the pids of its process and of its reaper, each with its start
time), the `status` its reaper (framework/local/agent/nested_reaper.py) writes when it ends,
then `termination.json`, which WAIT answers from. The files are small and written on the
agent's loop: a thread's hand-over would cost more than the write.

framework/local/agent/nested.py decides what goes in them and when; this module only keeps
them, and ends what a stale one names.
"""
from __future__ import annotations

import logging
import signal as signals
import time
from pathlib import Path

from framework.errors import DockyardError
from framework.local.agent import checkpoint
from framework.local.agent.nested_entry import Entry
from framework.local.agent.nested_io import kill_pid, remove_group, termination_of
from framework.proctree import same_process

log = logging.getLogger(__name__)

REAPER_GRACE = 2.0  # how long a reaper left without its process may take to write its status and go
KILLED = termination_of(-signals.SIGKILL, False)  # how a destroyed container ends, when nothing says more


class NestedCheckpoints:
    """The checkpoint files of the nested containers below one agent's work dir."""

    def __init__(self, work_dir: Path) -> None:
        self.top = work_dir / "nested" / "containers"

    def directory(self, key: str) -> Path:
        """A nested container's own directory, below its parents' (`root.child` -> `root/child`)."""
        return self.top.joinpath(*key.split("."))

    def status_file(self, key: str) -> Path:
        return self.directory(key) / "status"

    def roots(self) -> list[Path]:
        """The root containers that have checkpoints below them."""
        try:
            return sorted(item for item in self.top.iterdir() if item.is_dir())
        except OSError:
            return []

    def save_launch(self, key: str, saved: dict) -> None:
        checkpoint.write_json(self.directory(key) / "launch.json", saved)

    def drop_launch(self, key: str) -> None:
        """The launch's checkpoints: the container ended, or never started."""
        for name in ("launch.json", "status"):
            (self.directory(key) / name).unlink(missing_ok=True)

    def forget_launch(self, key: str) -> None:
        """A launch that failed leaves nothing behind."""
        self.drop_launch(key)
        self._remove_directory(key)

    def save_termination(self, key: str, termination: dict) -> None:
        """The container has ended: its termination replaces the launch's checkpoints."""
        try:
            checkpoint.write_json(self.directory(key) / "termination.json", termination)
            self.drop_launch(key)
        except OSError as error:
            log.warning("cannot checkpoint the termination of nested container %s: %s", key, error)

    def termination(self, key: str) -> dict | None:
        termination = checkpoint.read_json(self.directory(key) / "termination.json")
        return termination if isinstance(termination, dict) and "exit_status" in termination else None

    def remove(self, key: str) -> None:
        """REMOVE_NESTED_CONTAINER: its termination goes, and its directory unless a nested
        container below it still has one."""
        (self.directory(key) / "termination.json").unlink(missing_ok=True)
        self._remove_directory(key)

    def _remove_directory(self, key: str) -> None:
        try:
            self.directory(key).rmdir()
        except OSError:
            pass


def launches(root: Path) -> list[tuple[Path, dict]]:
    """The launch checkpoints below a root container's directory, with their directories: the
    nested containers that had not ended when they were written."""
    found = []
    for path in root.glob("**/launch.json"):
        saved = checkpoint.read_json(path)
        if isinstance(saved, dict) and not (path.parent / "termination.json").exists():
            found.append((path.parent, saved))
    return found


def read_status(path: Path) -> int | None:
    """The raw wait status a reaper wrote, or None."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def live(saved: object) -> int | None:
    """A checkpointed [pid, start time] when that process still runs, else None."""
    if isinstance(saved, list) and len(saved) == 2 and isinstance(saved[0], int) and same_process(*saved):
        return saved[0]
    return None


def destroy_saved_all(saved: list[dict]) -> None:
    """Kill what checkpointed nested containers became, and remove their cgroups (in a thread);
    their reapers, left without a process, write its status and go (else they are killed)."""
    reapers = []
    for one in saved:
        main = live(one.get("pid"))
        if main is not None:
            kill_pid(main)
        reaper = live(one.get("reaper"))
        if reaper is not None:
            reapers.append((reaper, one["reaper"][1]))
        try:
            plan = Entry.restored(one.get("entry") or {})
        except DockyardError as error:
            log.warning("cannot remove the cgroup of a nested container: %s", error)
            continue
        plan.kill_group()
        remove_group(plan)
    deadline = time.monotonic() + REAPER_GRACE
    while reapers and time.monotonic() < deadline:
        time.sleep(0.01)
        reapers = [(pid, began) for pid, began in reapers if same_process(pid, began)]
    for pid, _ in reapers:
        kill_pid(pid)
