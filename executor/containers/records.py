"""A container's record and the one way to remove what it names, for both launchers.

Every container (a task with an image, or a host task's cgroups) gets an id from
`new_container_id` and a record, `<work_dir>/containers/<id>/state.json`, written
before anything of it is made. `teardown(record)` removes everything the record names,
in order: from a container's own destroy, a host task's, and clean-up after a crash
(executor/cleanup.py), which finds what is ours by the work dir's tag in the id.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import signal as signals
import subprocess
import uuid
from pathlib import Path

from executor.containers.rootfs import unmount
from executor.containers.runtime import Runtime
from framework import cgroups
from framework.errors import ContainerError, DockyardError
from framework.proctree import same_process


@functools.lru_cache(maxsize=64)
def work_tag(work_dir: Path) -> str:
    """A short tag of the agent's work dir in every id we make, so clean-up only takes ours."""
    return hashlib.sha1(str(Path(work_dir).resolve()).encode()).hexdigest()[:6]


def new_container_id(work_dir: Path, task_id: str) -> str:
    """`dy-<work tag>-<task>-<random>`: also the task's ContainerID value in its statuses, where
    Mesos allows no `.` (src/slave/validation.cpp), so the task id's dots become `_`."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", task_id)[:32].strip("_-") or "task"
    return f"dy-{work_tag(work_dir)}-{slug}-{uuid.uuid4().hex[:6]}"


def teardown(record: dict, wait_for: subprocess.Popen | None = None) -> None:
    """Remove everything a container record names, in order; safe to repeat.

    kill -> wait -> runtime delete -> unmount -> remove cgroup -> remove upper dir,
    bundle and the record itself (last, so a crash half-way is retried next time).
    """
    errors: list[str] = []
    group = None
    if record.get("cgroup"):
        spec = record["cgroup"]
        try:
            layout = cgroups.detect()
            group = cgroups.Cgroup(spec["paths"], layout, [Path(p) for p in spec.get("extra", [])])
        except DockyardError as error:
            errors.append(str(error))
    if group is not None and record.get("kind") != "host":  # a host task's cgroup: remove() kills if busy
        group.kill(signals.SIGKILL)
    runner = record.get("runner_pid")
    if wait_for is not None:
        try:
            wait_for.wait(15)
        except subprocess.TimeoutExpired:
            wait_for.kill()
            wait_for.wait(5)
    elif runner and same_process(runner, record.get("runner_start")):
        try:
            os.kill(runner, signals.SIGKILL)
        except ProcessLookupError:
            pass
    runtime = None
    if record.get("runtime"):
        try:
            runtime = Runtime(record["runtime"], Path(record["work_dir"]))
            runtime.delete(record["id"])
        except DockyardError as error:
            errors.append(str(error))
    directory = Path(record["dir"])
    if record.get("kind") != "host":  # a host task mounts nothing of its own
        try:
            unmount(directory)
        except DockyardError as error:
            errors.append(str(error))
    if group is not None:
        try:
            group.remove()
        except DockyardError as error:
            errors.append(str(error))
    if record.get("upper_root"):
        shutil.rmtree(record["upper_root"], ignore_errors=True)
    if errors:
        raise ContainerError(f"clean-up of {record['id']} incomplete: {'; '.join(errors)}")
    for child in directory.iterdir() if directory.exists() else []:
        if child.name != "state.json":
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() and not child.is_symlink() \
                else child.unlink(missing_ok=True)
    (directory / "state.json").unlink(missing_ok=True)
    try:
        directory.rmdir()  # emptied above: one call, where rmtree would list it again
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
