"""A container's secrets on the agent: one small tmpfs, never a disk.

A task launched with SECRET volumes or SECRET environment variables gets a tmpfs
at `<container dir>/secrets` (mode 0700, outside the sandbox, so the files API
never serves it). Each secret file is written there, 0400 and owned by the
task's user, and bind-mounted read-only at its container path (relative paths
are in the sandbox, as Mesos's `volume/secret` isolator puts them, which writes
to a ramfs at `<sandbox>/.secret-<uuid>`). The runtime's config.json, which
holds the task's environment, is written there too instead of into the bundle
on disk. The container's teardown unmounts everything below its directory, this
tmpfs with it (executor/containers/launcher.py `teardown`).

A tmpfs can be swapped out under memory pressure; an agent whose swap is not
encrypted should run without swap (docs/secrets.md).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path

from framework.errors import ContainerError
from framework.mesos.secrets import volume_secrets

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


@dataclass
class SecretFile:
    target: str      # where the container sees it
    host_path: Path  # the file on the tmpfs


def has_secrets(command: dict, container: dict | None) -> bool:
    variables = (command.get("environment") or {}).get("variables") or []
    return any(v.get("type") == "SECRET" for v in variables) or any(
        (v.get("source") or {}).get("type") == "SECRET" for v in (container or {}).get("volumes") or [])


class SecretMount:
    """The tmpfs of one container's secrets."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def mount(self, size_bytes: int) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        options = f"mode=0700,size={max(size_bytes, 1 << 20)}".encode()
        if _libc.mount(b"tmpfs", str(self.directory).encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       options) != 0:
            raise ContainerError(f"cannot mount a tmpfs for secrets at {self.directory}: "
                                 f"{os.strerror(ctypes.get_errno())}")

    def files(self, container: dict | None, sandbox_path: str, uid: int, gid: int) -> list[SecretFile]:
        """Write each SECRET volume's bytes (0400, owned by uid:gid); where each is to be mounted."""
        out = []
        for number, (path, data) in enumerate(volume_secrets(container)):
            host = self.directory / f"file-{number}"
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchown(fd, uid, gid)
            finally:
                os.close(fd)
            out.append(SecretFile(path if path.startswith("/") else f"{sandbox_path}/{path}", host))
        return out
