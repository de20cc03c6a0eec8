"""Remove what a killed executor or agent left behind under one work dir.

`dockyard executor --cleanup WORK_DIR` runs this once at agent start, when no
task of that work dir can still be legitimately running. Sources of truth, in
order: container records (`containers/*/state.json`), the OCI runtime's own
root (`runtime/<runc|crun>/*`), mounts below `containers/`, and cgroups named
with this work dir's tag (`dockyard/dy-<tag>-*`) in every hierarchy. Standard
library only.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from executor.containers.launcher import teardown, work_tag
from executor.containers.rootfs import mounts_under, unmount
from executor.containers.runtime import RUNTIMES, Runtime
from executor.containers.state import read_json
from framework import cgroups
from framework.errors import DockyardError


def run(work_dir: Path | str) -> dict:
    """Clean up; returns counts of what was removed (and errors, which do not stop it)."""
    work_dir = Path(work_dir)
    report: dict = {"containers": 0, "runtime": 0, "mounts": 0, "cgroups": 0, "errors": []}
    containers = work_dir / "containers"
    if containers.is_dir():
        for directory in sorted(containers.iterdir()):
            record = read_json(directory / "state.json")
            if record is None:
                record = {"id": directory.name, "dir": str(directory), "work_dir": str(work_dir)}
            try:
                teardown(record)
                report["containers"] += 1
            except DockyardError as error:
                report["errors"].append(str(error))
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
            try:
                runtime.delete(container_id)
                report["runtime"] += 1
            except DockyardError as error:
                report["errors"].append(str(error))
    if containers.is_dir():
        for point in mounts_under(containers):
            try:
                unmount(point)
                report["mounts"] += 1
            except DockyardError as error:
                report["errors"].append(str(error))
    report["cgroups"] = _remove_cgroups(work_tag(work_dir), report["errors"])
    tmp = work_dir / "images" / "tmp"
    if tmp.is_dir():  # half-written downloads and unpacks of a killed pull
        for item in tmp.iterdir():
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
    return report


def _remove_cgroups(tag: str, errors: list[str]) -> int:
    removed = 0
    try:
        subtrees = cgroups.find_subtrees()
    except DockyardError as error:
        errors.append(str(error))
        return 0
    prefix = f"dy-{tag}-"
    for subtree in subtrees:
        for child in sorted(subtree.iterdir()) if subtree.is_dir() else []:
            if not (child.is_dir() and child.name.startswith(prefix)):
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
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m executor.cleanup WORK_DIR", file=sys.stderr)
        return 2
    report = run(args[0])
    print(report)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
