"""User namespaces for containers (`--isolation ...,namespaces/user`): root inside, nobody outside.

A container's ids 0..65535 are host ids BASE..BASE+65535, a range no host account owns:
the `dockyard` entries of /etc/subuid and /etc/subgid when the host has them (as
Docker's userns-remap reads `dockremap`'s), else DEFAULT_BASE. A process that escapes
the container is an unprivileged host user; capabilities held inside count only for
objects the namespace owns.

The image's layers stay shared and unchanged: each is bound, through an idmapped mount
(mount_setattr(2) MOUNT_ATTR_IDMAP), under the container's directory so that host
root's files show as the container's root's, and the overlay stacks those binds. The
container's upper dir and its sandbox belong to the mapped user. Host-path volumes are
bound as they are: files there owned by host users show as `nobody` inside.

Needs a kernel with idmapped mounts on the layers' filesystem (5.19+ for overlayfs
layers) and a work dir whose path others may traverse (runc sets the container up as the
mapped root).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

from executor.containers.bundle import IdMap
from framework.errors import ContainerError

DEFAULT_BASE = 2_000_000_000  # below 2**31, above what adduser hands out (100000+)
SIZE = 65536
ACCOUNT = "dockyard"

_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442  # the same on every architecture
_OPEN_TREE_CLONE = 1
_AT_EMPTY_PATH, _AT_RECURSIVE = 0x1000, 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x00100000
_CLONE_NEWUSER = 0x10000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def id_map() -> IdMap:
    """The host range container ids map to: /etc/subuid and /etc/subgid's `dockyard`, else the default."""
    uid = _subordinate("/etc/subuid")
    gid = _subordinate("/etc/subgid")
    return IdMap(uid if uid is not None else DEFAULT_BASE, gid if gid is not None else DEFAULT_BASE, SIZE)


def _subordinate(path: str) -> int | None:
    try:
        with open(path) as handle:
            for line in handle:
                name, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                if name == ACCOUNT and start.isdigit() and count.isdigit() and int(count) >= SIZE:
                    return int(start)
    except OSError:
        return None
    return None


def check_reachable(*paths: Path) -> None:
    """ContainerError unless other users may traverse every directory above `paths`: runc sets
    the container up as its mapped root, an unprivileged host user, which must reach the
    bundle and the sandbox (Docker's userns-remap keeps its root 0711 for the same reason)."""
    for path in paths:
        for directory in Path(path).resolve().parents:
            mode = os.stat(directory).st_mode
            if not mode & 0o001:
                raise ContainerError(f"namespaces/user: {directory} (mode {mode & 0o777:o}) is not searchable "
                                     f"by other users, so a container's mapped root cannot reach {path}; "
                                     f"chmod o+x it or use a work dir below one that is")


def own(mapping: IdMap, *paths: Path, uid: int = 0, gid: int = 0) -> None:
    """Give `paths` (directories dockyard made for the container) to container user uid:gid."""
    host_uid, host_gid = mapping.host(uid, gid)
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, host_uid, host_gid)


_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _namespace_fd(mapping: IdMap) -> int:
    """A user namespace with `mapping`, held by an open fd for this executor's life (one per range)."""
    helper = subprocess.Popen(
        [sys.executable, "-I", "-c",
         "import ctypes, sys\n"
         f"if ctypes.CDLL(None, use_errno=True).unshare({_CLONE_NEWUSER}) != 0:\n"
         "    sys.exit('unshare: %d' % ctypes.get_errno())\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if helper.stdout is None or helper.stdout.readline().strip() != "ready":
            raise ContainerError(f"cannot make a user namespace: {helper.stderr.read().strip() if helper.stderr else ''}")
        with open(f"/proc/{helper.pid}/uid_map", "w") as handle:
            handle.write(f"0 {mapping.host_uid} {mapping.size}\n")
        with open(f"/proc/{helper.pid}/gid_map", "w") as handle:
            handle.write(f"0 {mapping.host_gid} {mapping.size}\n")
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        if helper.stdin is not None:
            helper.stdin.close()
        helper.wait(10)


def mapped_layers(layers: list[Path], under: Path, mapping: IdMap) -> list[Path]:
    """Each layer bound at `under/N` through an idmapped mount: the lowerdirs of an overlay whose
    files look, inside the container, as they look to the host in the layer."""
    with _lock:
        userns_fd = _namespace_fd(mapping)
    mapped = []
    for number, layer in enumerate(layers):
        target = under / str(number)
        target.mkdir(parents=True, exist_ok=True)
        _idmapped_bind(layer, target, userns_fd)
        mapped.append(target)
    return mapped


def _idmapped_bind(source: Path, target: Path, userns_fd: int) -> None:
    tree = _libc.syscall(_SYS_OPEN_TREE, -100, str(source).encode(), _OPEN_TREE_CLONE | os.O_CLOEXEC)
    if tree < 0:
        raise ContainerError(f"open_tree {source}: {os.strerror(ctypes.get_errno())}")
    try:
        attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        if _libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH, ctypes.byref(attr),
                         ctypes.sizeof(attr)) != 0:
            code = ctypes.get_errno()
            raise ContainerError(f"cannot idmap {source} ({os.strerror(code)}): user namespaces need idmapped "
                                 "mounts on the image store's filesystem (Linux 5.19+ with ext4, xfs, btrfs)")
        if _libc.syscall(_SYS_MOVE_MOUNT, tree, b"", -100, str(target).encode(), _MOVE_MOUNT_F_EMPTY_PATH) != 0:
            raise ContainerError(f"move_mount to {target}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(tree)
