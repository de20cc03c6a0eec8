"""Remove what a killed executor or agent left behind under one work dir.

`dockyard executor --cleanup WORK_DIR` runs this at agent start and stop, when
no task of that work dir can still be legitimately running. Sources of truth, in
order: container records (`containers/*/state.json`), the OCI runtime's own
root (`runtime/<runc|crun>/*`), mounts below `containers/`, and cgroups named
with this work dir's tag (`dockyard/dy-<tag>-*`) in every hierarchy.

Two narrower forms, for an agent whose other executors still run:

* `--sandbox DIR` (repeatable): only the containers whose task sandbox lies in
  DIR, an executor that died (as a Mesos containerizer destroys a dead
  executor's containers, at once, not at the next agent start);
* `--keep DIR` (repeatable): everything except the containers of the live
  executors in DIR (an agent restarted while some executors survived).

Standard library only.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from executor.containers.records import teardown, work_tag
from executor.containers.rootfs import mounts_under, unmount
from executor.containers.runtime import RUNTIMES, Runtime
from executor.containers.state import read_json
from framework import cgroups
from framework.errors import DockyardError


def _inside(path: str | None, dirs: list[str]) -> bool:
    return bool(path) and any(path == d or path.startswith(d + "/") for d in dirs)  # type: ignore[union-attr]


def run(work_dir: Path | str, only: list[str] | None = None, keep: list[str] | None = None) -> dict:
    """Clean up; returns counts of what was removed (and errors, which do not stop it).

    `only`: sandboxes (executor directories) whose containers alone are destroyed.
    `keep`: sandboxes whose containers are left alone (their executors live);
    everything else of the work dir goes, as with neither.
    """
    work_dir = Path(work_dir)
    only = [str(Path(d)).rstrip("/") for d in only] if only else None
    keep = [str(Path(d)).rstrip("/") for d in keep or []]
    report: dict = {"containers": 0, "runtime": 0, "mounts": 0, "cgroups": 0, "errors": []}
    containers = work_dir / "containers"
    # Cgroups are listed before the records are read: a container a live executor makes
    # meanwhile writes its record before its cgroup, so it is never taken for a leftover.
    subtrees = _subtrees(report["errors"]) if only is None else []
    kept: set[str] = set()
    if containers.is_dir():
        for directory in sorted(containers.iterdir()):
            if not directory.is_dir():  # not a container's: ours are directories
                continue
            record = read_json(directory / "state.json")
            if record is None:
                if only is not None or keep:  # a record being written, or half-removed: the full run takes it
                    continue
                record = {"id": directory.name, "dir": str(directory), "work_dir": str(work_dir)}
            # A record from another version (or hand-made) may lack fields: where it lives
            # and what it is called we know from its directory anyway.
            record = {"id": directory.name, "dir": str(directory), "work_dir": str(work_dir), **record}
            sandbox = record.get("sandbox")
            if (only is not None and not _inside(sandbox, only)) or _inside(sandbox, keep):
                kept.add(record.get("id", directory.name))
                continue
            try:
                teardown(record)
                report["containers"] += 1
            except DockyardError as error:
                report["errors"].append(str(error))
    if only is not None:
        return report
    for name in RUNTIMES:
        root = work_dir / "runtime" / name
        if not root.is_dir():
            continue
        try:
            runtime = Runtime(name, work_dir)
        except DockyardError:
            shutil.rmtree(root, ignore_errors=True)
            continue
        for container_id in runtime.list():
            if container_id in kept:
                continue
            try:
                runtime.delete(container_id)
                report["runtime"] += 1
            except DockyardError as error:
                report["errors"].append(str(error))
    if containers.is_dir():
        for point in mounts_under(containers):
            if point.relative_to(containers).parts[:1] and point.relative_to(containers).parts[0] in kept:
                continue
            try:
                unmount(point)
                report["mounts"] += 1
            except DockyardError as error:
                report["errors"].append(str(error))
    report["cgroups"] = _remove_cgroups(subtrees, work_tag(work_dir), kept, report["errors"])
    tmp = work_dir / "images" / "tmp"
    if tmp.is_dir():  # half-written downloads and unpacks of a killed pull
        for item in tmp.iterdir():
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
    return report


def _subtrees(errors: list[str]) -> list[tuple[Path, list[Path]]]:
    """Every `dockyard` subtree with its children, as they are now."""
    try:
        subtrees = cgroups.find_subtrees()
    except DockyardError as error:
        errors.append(str(error))
        return []
    found = []
    for subtree in subtrees:
        try:
            found.append((subtree, sorted(c for c in subtree.iterdir() if c.is_dir())))
        except OSError:
            continue
    return found


def _remove_cgroups(subtrees: list[tuple[Path, list[Path]]], tag: str, kept: set[str], errors: list[str]) -> int:
    removed = 0
    prefix = f"dy-{tag}-"
    for _subtree, children in subtrees:
        for child in children:
            if not child.name.startswith(prefix) or child.name in kept or not child.is_dir():
                continue
            for directory, _dirs, files in sorted(os.walk(child), key=lambda w: -len(w[0])):
                for pid in (Path(directory) / "cgroup.procs").read_text().split() \
                        if "cgroup.procs" in files else []:
                    try:
                        os.kill(int(pid), 9)
                    except ProcessLookupError:
                        pass
            group = cgroups.Cgroup({}, cgroups.detect(), [child])
            try:
                group.remove()
                removed += 1
            except DockyardError as error:
                errors.append(str(error))
    return removed


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m executor.cleanup")
    parser.add_argument("work_dir")
    parser.add_argument("--sandbox", action="append", default=None, help="only containers of this sandbox")
    parser.add_argument("--keep", action="append", default=[], help="leave containers of this sandbox")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args.work_dir, only=args.sandbox, keep=args.keep)
    print(report)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
