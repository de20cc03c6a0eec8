"""What a build makes on the host, and the one way to remove it: a container record.

A build that has to run or copy anything gets an id and a record,
`<work_dir>/containers/<id>/state.json` (kind `build`), written before anything
is made, exactly as a task's container (executor/containers/records.py). It names
the build's cgroup, the runtime container its RUN steps use, the directory its
overlay mounts live under, and the layers it reads: so the store's prune leaves
those alone while the build runs, and `dockyard executor --cleanup` (or `close()`)
removes everything, also after the build was killed.

A step's root is an overlay of the layers so far with a fresh upper directory
(`step()`); the upper directory is what the step changed. RUN runs in that root
under the OCI runtime with the hardened defaults of a task's container
(executor/containers/bundle.py: capabilities, seccomp, masked paths,
noNewPrivileges), in the build's cgroup (its cpu, memory and pids limits), with no
network unless the build asks for the host's.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from executor.containers import bundle
from executor.containers.records import new_container_id, teardown
from executor.containers.rootfs import mount_overlay, secure_join, unmount
from executor.containers.runtime import Runtime, last_error
from executor.containers.state import write_json
from framework import cgroups
from framework.proctree import start_time

# Mount points the runtime needs in every root: made once in a lower directory of
# their own (as Docker's init layer), so making them never shows in a step's changes.
MOUNT_DIRS = ("proc", "sys", "dev")
# Files the runtime binds from the host on the host network; a step's root that lacks
# them gets them made by the runtime, which the step's changes must not keep.
HOST_FILES = ("/etc/hosts", "/etc/resolv.conf")
OUTPUT_TAIL = 64 * 1024


@dataclass
class RunResult:
    status: int  # the process's exit status (128+N when signal N ended it)
    output: str  # the tail of its output (stdout and stderr, interleaved)
    oom: bool  # the memory limit killed something
    start_error: str = ""  # the runtime's own message when it could not start the process


class Workspace:
    """One build's record, cgroup, mounts and runtime container (see the module docstring)."""

    def __init__(self, work_dir: Path, limits: cgroups.Limits, runtime: str = "runc",
                 network: str = "none") -> None:
        self.work_dir = Path(work_dir)
        self.limits = limits
        self.runtime_name = runtime
        self.network = network
        self.id = new_container_id(self.work_dir, "build")
        self.dir = self.work_dir / "containers" / self.id
        self.group: cgroups.Cgroup | None = None
        self.runtime: Runtime | None = None
        self.views = 0
        self.record: dict = {"id": self.id, "kind": "build", "state": "new", "work_dir": str(self.work_dir),
                             "dir": str(self.dir), "layers": []}
        self._save()
        (self.dir / "empty").mkdir()
        init = self.dir / "init"
        for name in MOUNT_DIRS:
            (init / name).mkdir(parents=True)
        self.init = init

    def _save(self) -> None:
        write_json(self.dir / "state.json", self.record)

    def protect(self, keys: list[str]) -> None:
        """Record the store's layer directories the build reads, so prune keeps them (and their blobs)."""
        new = [key for key in keys if key not in self.record["layers"]]
        if new:
            self.record["layers"] = self.record["layers"] + new
            self._save()

    # -- roots ------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, lowers: list[Path], for_run: bool = False) -> Iterator[tuple[Path, Path]]:
        """(merged root, upper directory) of a step on `lowers` (bottom first); unmounted after.
        The caller commits the upper directory, then `reset()`s before the next step."""
        self.reset()
        rootfs, upper, work = self.dir / "rootfs", self.dir / "upper", self.dir / "work"
        below = list(lowers) or [self.dir / "empty"]
        if for_run:
            below.append(self.init)
        mount_overlay(below, upper, work, rootfs)
        try:
            yield rootfs, upper
        finally:
            unmount(rootfs)

    def reset(self) -> None:
        """Remove the last step's upper and work directories."""
        for name in ("upper", "work"):
            path = self.dir / name
            if path.exists():
                shutil.rmtree(path)

    def view(self, lowers: list[Path]) -> Path:
        """A root holding `lowers` merged, to read (COPY --from); it stays until `close()`."""
        self.views += 1
        base = self.dir / "views" / str(self.views)
        if not lowers:
            (base / "rootfs").mkdir(parents=True)
            return base / "rootfs"
        mount_overlay(list(lowers), base / "upper", base / "work", base / "rootfs")
        return base / "rootfs"

    # -- RUN --------------------------------------------------------------------
    def _cgroup(self) -> cgroups.Cgroup:
        if self.group is None:
            group = cgroups.Cgroup.for_task(self.id)
            self.record["cgroup"] = {"paths": group.paths, "extra": [str(p) for p in group.extra]}
            self.record["runtime"] = self.runtime_name
            self._save()  # named before it is made: a killed build's cgroup is found and removed
            group.create(self.limits)
            self.group = group
        return self.group

    def run(self, rootfs: Path, upper: Path, args: list[str], env: list[str], cwd: str, user: str,
            on_output: Callable[[str], None]) -> RunResult:
        """Run one RUN step's process in `rootfs` and wait for it; its output goes to `on_output`."""
        uid, gid, groups, home = bundle.resolve_user(rootfs, user)
        if not any(item.startswith("HOME=") for item in env):
            env = [*env, f"HOME={home}"]
        host_files = {path: _lstat(secure_join(rootfs, path)) for path in ("/etc", *HOST_FILES)}
        # The primary group among the supplementary ones, as Docker and buildah run a RUN step.
        process = bundle.ProcessSpec(args, env, cwd, uid, gid, [gid, *(g for g in groups if g != gid)])
        group = self._cgroup()
        if self.runtime is None:
            self.runtime = Runtime(self.runtime_name, self.work_dir)
        config = bundle.runtime_config(process, self.dir, group.runtime_path(), [], self.network,
                                       hostname="dockyard-build", security=bundle.Security(
                                           pids_limit=self.limits.pids or 4096))
        config["mounts"] = [m for m in config["mounts"] if m["destination"] != bundle.SANDBOX]
        config["root"]["path"] = str(rootfs)
        bundle_dir = self.dir / "bundle"
        write_json(bundle_dir / "config.json", config)
        oom_before = group.oom_kills()
        read_end, write_end = os.pipe()
        tail = bytearray()
        log = self.dir / "runtime.log"
        log.unlink(missing_ok=True)
        try:
            with os.fdopen(write_end, "wb") as out:
                popen = self.runtime.run(self.id, bundle_dir, out, out, self.dir / "run.pid", log)
            self.record["runner_pid"], self.record["runner_start"] = popen.pid, start_time(popen.pid)
            self._save()
            pending = b""
            with os.fdopen(read_end, "rb", buffering=0) as reader:
                read_end = -1
                while chunk := reader.read(65536):
                    tail += chunk
                    del tail[:-OUTPUT_TAIL]
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        on_output(line.decode(errors="replace"))
            if pending:
                on_output(pending.decode(errors="replace"))
            status = popen.wait()
            oom = group.oom_kills() > oom_before  # v1 counts it in the runtime's cgroup: read before delete
        finally:
            if read_end >= 0:
                os.close(read_end)
            if self.runtime is not None:
                self.runtime.delete(self.id)
        self._forget_host_files(upper, host_files)
        start_error = last_error(log) if status != 0 else ""
        return RunResult(status, tail.decode(errors="replace"), oom, start_error)

    def _forget_host_files(self, upper: Path, before: dict[str, os.stat_result | None]) -> None:
        """Drop what the runtime made to bind host files onto (`/etc/hosts` where the image had
        none), and `/etc` itself when that left it empty and as it was."""
        if self.network != "host":
            return
        for path in HOST_FILES:
            made = upper / path.lstrip("/")
            info = _lstat(made)
            if before[path] is None and info is not None and stat.S_ISREG(info.st_mode) and info.st_size == 0:
                made.unlink()
        etc = upper / "etc"
        info, was = _lstat(etc), before["/etc"]
        if info is not None and stat.S_ISDIR(info.st_mode) and not any(etc.iterdir()):
            if was is None or (stat.S_IMODE(was.st_mode), was.st_uid, was.st_gid) == \
                    (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid):
                etc.rmdir()

    # -- the end ----------------------------------------------------------------
    def close(self) -> None:
        """Remove everything the record names (idempotent): processes, runtime state, mounts,
        cgroup, directories, and the record."""
        teardown(self.record)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None
