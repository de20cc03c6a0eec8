"""The agent's sandbox files API (`/files/browse`, `/files/read`, `/files/download`).

Answers in Mesos's JSON shapes. Only the sandboxes are served, as a Mesos agent
serves only the paths it attached (src/files/files.cpp): a path outside
`<work_dir>/slaves/` (the agent's checkpoints under `meta/`, the image store) or
with `..` is refused. Inside, `authorize(request, path)` decides (the
`access_sandboxes` ACL); a denial is Mesos's `403 Forbidden.`, given before the
path's existence is looked at, so it tells nothing about what is there.

Sandboxes are written by tasks, so every path is resolved race-free beneath the
sandboxes directory (framework/local/agent/beneath.py): a symlink anywhere on it is
refused rather than followed, whatever a task swaps in meanwhile. Only regular files
are read, and nothing is opened in a way that can block (a FIFO) or reach a device.
The one symlink followed is the agent's own `runs/latest`, whose target must be a
sibling run. A listing shows symlinks as entries, never what they point at.
"""
from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from framework.local.agent.beneath import components, open_beneath, reopen

MAX_READ = 16 * 1024 * 1024  # one read returns at most this much
CHUNK = 1 << 20

Authorize = Callable[[Request, Path], bool]


def _anyone(request: Request, path: Path) -> bool:
    return True


class _Found:
    """A path opened beneath the sandboxes: an O_PATH fd, its stat, the path as asked."""

    def __init__(self, fd: int, info: os.stat_result, path: Path) -> None:
        self.fd, self.info, self.path = fd, info, path

    def close(self) -> None:
        os.close(self.fd)


class FilesApi:
    def __init__(self, root: Path, authorize: Authorize = _anyone) -> None:
        self.root = root.resolve()
        self.sandboxes = self.root / "slaves"
        self.prefixes = [self.sandboxes.parts] + ([(Path(root) / "slaves").parts]
                                                  if Path(root).is_absolute() and Path(root) != self.root else [])
        self.authorize = authorize

    def _relative(self, raw: str) -> list[str] | None:
        """The names below `slaves/` a requested path names, or None if it is not below it."""
        if not raw.startswith("/"):
            return None
        try:
            parts = components(raw)
        except ValueError:
            return None
        for prefix in self.prefixes:
            inner = list(prefix[1:])  # without the leading "/"
            if parts[:len(inner)] == inner:
                return parts[len(inner):]
        return None

    def _open(self, request: Request) -> _Found | Response:
        raw = request.query_params.get("path")
        if not raw:
            return PlainTextResponse("Expecting 'path=value' in query.\n", status_code=400)
        if "\0" in raw:
            return PlainTextResponse("Path holds a NUL byte\n", status_code=400)
        parts = self._relative(raw)
        if parts is None:
            return PlainTextResponse(f"Path '{raw}' is outside the agent's sandboxes\n", status_code=403)
        try:
            root = os.open(self.sandboxes, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            root = -1
        try:
            if root >= 0:
                parts = _latest(root, parts)
            path = self.sandboxes.joinpath(*parts)
            if not self.authorize(request, path):
                return PlainTextResponse("403 Forbidden.", status_code=403)
            if root < 0:
                return PlainTextResponse("", status_code=404)
            try:
                fd = open_beneath(root, parts)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    return PlainTextResponse(f"Path '{raw}' leads through a symbolic link\n", status_code=403)
                if error.errno in (errno.EXDEV, errno.EACCES, errno.EPERM):
                    return PlainTextResponse(f"Path '{raw}' is outside the agent's sandboxes\n", status_code=403)
                return PlainTextResponse("", status_code=404)
            return _Found(fd, os.fstat(fd), path)
        finally:
            if root >= 0:
                os.close(root)

    async def browse(self, request: Request) -> Response:
        found = self._open(request)
        if isinstance(found, Response):
            return found
        try:
            if not stat.S_ISDIR(found.info.st_mode):
                return JSONResponse([file_info(found.path, found.info)])  # as Mesos: a file lists itself
            directory = reopen(found.fd, os.O_RDONLY | os.O_DIRECTORY)
            entries = []
            try:
                with os.scandir(directory) as listing:
                    for entry in sorted(listing, key=lambda e: e.name):
                        try:
                            entries.append(file_info(found.path / entry.name, entry.stat(follow_symlinks=False)))
                        except FileNotFoundError:
                            continue
            finally:
                os.close(directory)
            return JSONResponse(entries)
        finally:
            found.close()

    async def read(self, request: Request) -> Response:
        found = self._open(request)
        if isinstance(found, Response):
            return found
        try:
            refused = _not_readable(found.info)
            if refused is not None:
                return refused
            try:
                offset = int(request.query_params.get("offset", "-1"))
                length = int(request.query_params.get("length", "-1"))
            except ValueError:
                return PlainTextResponse("Failed to parse offset/length\n", status_code=400)
            if offset == -1:  # Mesos: no offset asks for the file's size only
                return JSONResponse({"data": "", "offset": found.info.st_size})
            if offset < 0:
                return PlainTextResponse("Negative offset provided\n", status_code=400)
            length = MAX_READ if length < 0 else min(length, MAX_READ)
            handle = reopen(found.fd, os.O_RDONLY)
            try:
                data = os.pread(handle, length, offset)
            finally:
                os.close(handle)
            return JSONResponse({"data": data.decode("utf-8", errors="replace"), "offset": offset})
        finally:
            found.close()

    async def download(self, request: Request) -> Response:
        found = self._open(request)
        if isinstance(found, Response):
            return found
        try:
            refused = _not_readable(found.info, "download")
            if refused is not None:
                return refused
            handle = reopen(found.fd, os.O_RDONLY)
        finally:
            found.close()
        opened = os.fdopen(handle, "rb")  # closed when sent, or when dropped unsent
        size = os.fstat(handle).st_size
        name = found.path.name.replace('"', "")
        return StreamingResponse(_chunks(opened, size), media_type="application/octet-stream",
                                 headers={"Content-Length": str(size),
                                          "Content-Disposition": f'attachment; filename="{name}"'})


def _latest(root: int, parts: list[str]) -> list[str]:
    """`.../runs/latest/...` with `latest` replaced by the run it names (the agent keeps that
    link, as Mesos does); a link naming anything but a sibling is left alone, so refused."""
    if len(parts) < 7 or parts[5] != "runs" or parts[6] != "latest":
        return parts
    try:
        runs = open_beneath(root, parts[:6], os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return parts
    try:
        target = os.readlink("latest", dir_fd=runs)
    except OSError:
        return parts
    finally:
        os.close(runs)
    if not target or "/" in target or target in (".", "..", "latest"):
        return parts
    return [*parts[:6], target, *parts[7:]]


def _not_readable(info: os.stat_result, verb: str = "read") -> Response | None:
    if stat.S_ISDIR(info.st_mode):
        return PlainTextResponse(f"Cannot {verb} a directory.\n", status_code=400)
    if not stat.S_ISREG(info.st_mode):
        return PlainTextResponse(f"Cannot {verb} a file that is not a regular file.\n", status_code=400)
    return None


def _chunks(opened: BinaryIO, size: int) -> Iterator[bytes]:
    """The file's first `size` bytes (its size when asked), then it is closed."""
    with opened:
        left = size
        while left > 0:
            data = opened.read(min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data


def file_info(path: Path, info: os.stat_result | None = None) -> dict:
    """Mesos's FileInfo JSON for one entry (as `ls -l` would show it, symlinks as themselves)."""
    info = info if info is not None else path.lstat()
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return {
        "path": str(path),
        "nlink": info.st_nlink,
        "size": info.st_size,
        "mtime": int(info.st_mtime),
        "mode": stat.filemode(info.st_mode),
        "uid": user,
        "gid": group,
    }
