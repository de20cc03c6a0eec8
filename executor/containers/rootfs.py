"""Overlay root filesystems: shared read-only layers below, a private upper dir on top.

Nothing is copied: the lowerdirs are the image store's unpacked layer
directories, so mounting costs the same for a 1 MB and a 1 GB image.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
from pathlib import Path

from framework.errors import ContainerError

MNT_DETACH = 2
_OPTIONS_MAX = 4000  # the kernel takes one page of mount options
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_overlay(lower: list[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount `lower` (bottom layer first, as in a manifest) + `upper` at `target`."""
    for path in (upper, work, target):
        path.mkdir(parents=True, exist_ok=True)
    if not lower:
        raise ContainerError("an image needs at least one layer")
    top_first = [str(p) for p in reversed(lower)]
    options = f"lowerdir={':'.join(top_first)},upperdir={upper},workdir={work}"
    if len(options) <= _OPTIONS_MAX:
        if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options.encode()) != 0:
            code = ctypes.get_errno()
            raise ContainerError(f"overlay mount at {target} failed: {os.strerror(code)}")
        return
    # Too many layers for one page of absolute paths: mount from a directory of short
    # symlinks, with relative names, in a child process whose cwd is that directory.
    links = target.parent / "lower"
    links.mkdir(exist_ok=True)
    names = []
    for number, path in enumerate(reversed(lower)):
        link = links / str(number)
        if not link.is_symlink():
            link.symlink_to(path)
        names.append(str(number))
    options = f"lowerdir={':'.join(names)},upperdir={upper},workdir={work}"
    if len(options) > _OPTIONS_MAX:
        raise ContainerError(f"image has too many layers ({len(lower)}) for one overlay mount")
    result = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
                            cwd=links, capture_output=True, text=True)
    if result.returncode != 0:
        raise ContainerError(f"overlay mount at {target} failed: {result.stderr.strip()}")


def mounts_under(prefix: Path) -> list[Path]:
    """Mount points at or below `prefix` in our mount namespace, deepest first."""
    found = []
    prefix_text = str(prefix).rstrip("/")
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix_text or point.startswith(prefix_text + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: -len(p.parts))


def unmount(target: Path) -> None:
    """Detach `target` (and anything mounted below it); a missing mount is fine."""
    for point in mounts_under(target):
        while True:
            if _libc.umount2(str(point).encode(), MNT_DETACH) == 0:
                continue  # stacked mounts: peel until none is left
            code = ctypes.get_errno()
            if code in (errno.EINVAL, errno.ENOENT):
                break
            raise ContainerError(f"cannot unmount {point}: {os.strerror(code)}")


def secure_join(root: Path, path: str) -> Path:
    """`root/path` with every symlink resolved inside `root` (never onto the host)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise ContainerError(f"too many symlinks resolving {path} in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


MS_BIND = 0x1000
MS_REC = 0x4000


def pin_bind(source: Path, target: Path) -> None:
    """Bind `source` at `target`, mounting exactly the object that was checked at `source`.

    `source` is a resolved host path that a policy has just allowed. It is opened without
    following a symlink in its last component, the open is checked to have landed on that
    very path (a directory swapped for a symlink on the way lands elsewhere), and the bind
    is made from the open descriptor: a later swap cannot redirect the mount. The runtime
    then binds `target`, a path under the container's own directory, which nobody else writes.
    """
    try:
        fd = os.open(source, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise ContainerError(f"cannot open {source}: {error.strerror}") from None
    try:
        landed = os.readlink(f"/proc/self/fd/{fd}")
        if landed != str(source):
            raise ContainerError(f"{source} changed while it was checked (now {landed})")
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            target.mkdir(exist_ok=True)
        else:
            target.touch(exist_ok=True)
        if _libc.mount(f"/proc/self/fd/{fd}".encode(), str(target).encode(), None, MS_BIND | MS_REC, None) != 0:
            code = ctypes.get_errno()
            raise ContainerError(f"cannot bind {source}: {os.strerror(code)}")
    finally:
        os.close(fd)
