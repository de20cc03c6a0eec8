"""Open a path beneath a directory without ever following a symlink: race-free.

Resolving a path with realpath() and then opening it walks the path twice; a task that
swaps a directory of its sandbox for a symlink in between (`mv d d.old; ln -s /etc d`,
in a loop) wins now and then, and the agent, as root, opens the host's file. Here the
kernel resolves the path once, relative to an open directory: openat2(2) with
RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS (Linux 5.6+), else a walk
of one component at a time, each opened with O_NOFOLLOW relative to the directory fd
of the one before. Either way a symlink anywhere on the path fails the open (ELOOP)
and nothing outside the directory is reached.

Objects are opened with O_PATH, which opens nothing for I/O (a FIFO, a device node):
callers look at the fstat first and reopen only what they serve (`reopen`).
Standard library only.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat

_SYS_OPENAT2 = 437  # the same on every architecture (generic syscall table)
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x01, 0x02, 0x04, 0x08

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_openat2_works: bool | None = None  # None: not tried yet


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def components(relative: str) -> list[str]:
    """The names of a relative path; ValueError for `..` (nothing is ever reached upwards)."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' in path")
    return parts


def open_beneath(root_fd: int, parts: list[str], flags: int = os.O_PATH) -> int:
    """An fd for root/parts[0]/parts[1]/..., opened with `flags` (plus O_NOFOLLOW, O_CLOEXEC).

    OSError ELOOP when a component is a symlink, EXDEV/ENOENT/ENOTDIR as the kernel says."""
    global _openat2_works
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if not parts:
        return os.open(".", flags | os.O_DIRECTORY, dir_fd=root_fd)
    if _openat2_works is not False:
        how = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(_SYS_OPENAT2, root_fd, "/".join(parts).encode(), ctypes.byref(how),
                           ctypes.sizeof(how))
        if fd >= 0:
            _openat2_works = True
            if _is_link_fd(fd):  # O_PATH|O_NOFOLLOW opens a final symlink itself, even here
                os.close(fd)
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), parts[-1])
            return fd
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EPERM) or _openat2_works:  # EPERM: a seccomp filter
            raise OSError(code, os.strerror(code), "/".join(parts))
        _openat2_works = False
    return _walk(root_fd, parts, flags)


def _walk(root_fd: int, parts: list[str], flags: int) -> int:
    """openat2's answer the long way: one O_NOFOLLOW open per component, each relative to the last."""
    current = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    try:
        for part in parts[:-1]:
            try:
                following = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                    dir_fd=current)
            except OSError as error:
                if error.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(current, part):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), part) from None
                raise
            os.close(current)
            current = following
        fd = os.open(parts[-1], flags, dir_fd=current)
        if _is_link_fd(fd):  # O_PATH|O_NOFOLLOW opens a final symlink itself
            os.close(fd)
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), parts[-1])
        return fd
    finally:
        os.close(current)


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    return True


def _is_link_fd(fd: int) -> bool:
    return stat.S_ISLNK(os.fstat(fd).st_mode)


def reopen(path_fd: int, flags: int) -> int:
    """The object behind an O_PATH fd, opened for I/O (through /proc/self/fd: the same inode,
    never a path walked again). Callers have checked its type: O_NONBLOCK is added anyway."""
    return os.open(f"/proc/self/fd/{path_fd}", flags | os.O_NONBLOCK | os.O_CLOEXEC)
