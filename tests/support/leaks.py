"""What a test's agents left on the host: task cgroups, overlay mounts, OCI runtime state.

Issue 6 promises that no container, mount or cgroup outlives what it ran for.
Everything here is attributed to one agent work dir, never guessed: a task
cgroup is named `dy-<work_tag(work_dir)>-...` (executor/containers/records.py),
overlay roots are mounted below `<work_dir>/containers/`, and runc/crun keep
their state under `<work_dir>/runtime/<name>/`. So other users of the machine
(other test sessions, benchmarks) are never counted.

    found = leftovers([agent_work_dir, ...])     # [] when clean
    record("cluster /tmp/x", found)              # noted for the test that is running
    taken = take()                               # what was noted since the last take()

tests/conftest.py fails a test whose clusters (tests/support/cluster.py notes
them when they stop) or whose own tmp_path left anything, and the session when
anything under its base temp dir is left at the end.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

# Sub-directories of an executor work dir that hold no other work dir: never walked.
_HEAVY = {"containers", "runtime", "images", "slaves", "meta", ".rootfs", "layers", "blobs", "data"}

_noted: list[str] = []


def work_dirs_under(root: Path, max_depth: int = 6) -> list[Path]:
    """Directories below `root` used as an agent/executor work dir (`containers/` or `runtime/` inside)."""
    found = []
    root = Path(root)
    base = len(root.parts)
    for directory, subdirs, _files in os.walk(root):
        if _is_work_dir(Path(directory), subdirs):
            found.append(Path(directory))
        depth = len(Path(directory).parts) - base
        subdirs[:] = [] if depth >= max_depth else [s for s in subdirs if s not in _HEAVY]
    return found


def _is_work_dir(directory: Path, subdirs: list[str]) -> bool:
    """An agent's work dir, not any tree with a `containers` folder (a Python package, say)."""
    if "runtime" in subdirs and any((directory / "runtime" / name).is_dir() for name in ("runc", "crun")):
        return True
    return "containers" in subdirs and any((directory / "containers").glob("*/state.json"))


def _cgroup_children() -> list[Path]:
    try:
        from framework import cgroups

        subtrees = cgroups.find_subtrees()
    except Exception:  # no cgroups on this host: nothing of ours can be left there
        return []
    children = []
    for subtree in subtrees:
        try:
            children += [c for c in subtree.iterdir() if c.is_dir()]
        except OSError:
            continue
    return children


def _mount_points() -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    return [line.split()[4].encode().decode("unicode_escape") for line in lines]


def leftovers(work_dirs: Iterable[Path]) -> list[str]:
    """Cgroups, mounts, runtime containers and container records of these work dirs."""
    from executor.containers.records import work_tag

    dirs = [Path(d).resolve() for d in work_dirs if Path(d).exists()]
    if not dirs:
        return []
    found: list[str] = []
    tags = {f"dy-{work_tag(d)}-" for d in dirs}
    found += [f"cgroup {c}" for c in _cgroup_children() if any(c.name.startswith(t) for t in tags)]
    prefixes = [str(d) + "/" for d in dirs]
    found += [f"mount {p}" for p in _mount_points() if any(p.startswith(x) for x in prefixes)]
    for directory in dirs:
        for runtime in ("runc", "crun"):
            root = directory / "runtime" / runtime
            if root.is_dir():
                found += [f"{runtime} container {c.name} (root {root})" for c in root.iterdir() if c.is_dir()]
        containers = directory / "containers"
        if containers.is_dir():
            found += [f"container record {c}" for c in containers.iterdir() if c.is_dir()]
    return sorted(set(found))


def clean(work_dirs: Iterable[Path]) -> None:
    """Remove what `leftovers` finds (the agent's start-up clean-up), so later tests start clean."""
    from executor import cleanup

    for directory in work_dirs:
        if Path(directory).exists():
            cleanup.run(directory)


def record(owner: str, found: list[str]) -> None:
    _noted.extend(f"{owner}: {item}" for item in found)


def take() -> list[str]:
    taken = list(_noted)
    _noted.clear()
    return taken
