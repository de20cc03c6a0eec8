"""The program that starts a host task in a PID and mount namespace of its own (`hostinit.c`).

It is built from its source with the host's C compiler (the Makefile installs gcc and
libc6-dev), once per agent work dir and version of the source, statically linked (no
dynamic loader to run at every task start), into
`<work_dir>/bin/<digest of the source>/dockyard-init`. Every host task of the agent
starts through it as root, so it is used only while it, and the directories above it up
to `bin`, belong to root and nobody else may write to them.

Standard library only: the executor imports this on its first launch of a host task.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

from framework.errors import ContainerError

SOURCE = Path(__file__).with_name("hostinit.c")
# Its name in the process table: the init of every host task's PID namespace goes by it
# (framework/local/agent/nested_entry.py looks for it there to enter the namespace).
NAME = "dockyard-init"
BUILD_TIMEOUT = 120.0

_lock = threading.Lock()
_built: dict[Path, Path] = {}


def program(work_dir: Path) -> Path:
    """The built program for this work dir, building it on first use. ContainerError (saying
    why) when it cannot be built or what is there cannot be trusted."""
    work_dir = Path(work_dir)
    with _lock:
        found = _built.get(work_dir)
        if found is None or not found.exists():  # removed under a running executor: built again
            found = _built[work_dir] = _build(work_dir)
        return found


def _build(work_dir: Path) -> Path:
    try:
        source = SOURCE.read_bytes()
    except OSError as error:
        raise ContainerError(f"the source of {NAME} is missing: {error}") from None
    bin_dir = work_dir / "bin"
    target = bin_dir / hashlib.sha256(source).hexdigest()[:16] / NAME
    if target.exists():
        _check_owned(target, bin_dir)
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise ContainerError(f"no C compiler to build {NAME} (Debian packages gcc and libc6-dev)")
    work_dir.mkdir(parents=True, exist_ok=True)
    for directory in (bin_dir, target.parent):
        _make_dir(directory)
    _check_owned(target.parent, bin_dir)
    with open(bin_dir / ".lock", "a") as lock:  # executors of one agent starting together build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            partial = target.with_name(f".{NAME}.{os.getpid()}")
            try:
                built = subprocess.run([compiler, "-O2", "-static", "-o", str(partial), str(SOURCE)],
                                       capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as error:
                partial.unlink(missing_ok=True)
                raise ContainerError(f"building {NAME} failed: {error}") from None
            if built.returncode != 0:
                partial.unlink(missing_ok=True)
                raise ContainerError(f"building {NAME} failed (Debian packages gcc and libc6-dev): "
                                     f"{built.stderr.strip()[-2000:]}")
            os.chmod(partial, 0o755)
            os.replace(partial, target)
    _check_owned(target, bin_dir)
    return target


def _make_dir(directory: Path) -> None:
    """`directory`, made 0755 whatever the umask, or as it was."""
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        return
    os.chmod(directory, 0o755)


def _check_owned(path: Path, top: Path) -> None:
    """`path`, and every directory from it up to `top`, are root's and writable by root alone."""
    for item in (path, *[p for p in path.parents if p == top or top in p.parents]):
        info = item.lstat()
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or stat.S_ISLNK(info.st_mode):
            raise ContainerError(f"{item} is not root's alone: {NAME} is not run from there")
