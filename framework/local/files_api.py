"""The agent's sandbox files API (`/files/browse`, `/files/read`, `/files/download`).

Answers in Mesos's JSON shapes. Only the sandboxes are served, as a Mesos agent
serves only the paths it attached (src/files/files.cpp): what resolves outside
`<work_dir>/slaves/` (`..`, symlinks, the agent's checkpoints under `meta/`, the
image store) is refused. Inside, `authorize(request, path)` decides (the
`access_sandboxes` ACL); a denial is Mesos's `403 Forbidden.`, given before the
path's existence is looked at, so it tells nothing about what is there.
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Callable

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

MAX_READ = 16 * 1024 * 1024  # one read returns at most this much


Authorize = Callable[[Request, Path], bool]


def _anyone(request: Request, path: Path) -> bool:
    return True


class FilesApi:
    def __init__(self, root: Path, authorize: Authorize = _anyone) -> None:
        self.root = root.resolve()
        self.sandboxes = self.root / "slaves"
        self.authorize = authorize

    def _resolve(self, request: Request) -> Path | Response:
        raw = request.query_params.get("path")
        if not raw:
            return PlainTextResponse("Expecting 'path=value' in query.\n", status_code=400)
        if "\0" in raw:
            return PlainTextResponse("Path holds a NUL byte\n", status_code=400)
        path = Path(os.path.realpath(raw))
        if path != self.sandboxes and self.sandboxes not in path.parents:
            return PlainTextResponse(f"Path '{raw}' is outside the agent's sandboxes\n", status_code=403)
        if not self.authorize(request, path):
            return PlainTextResponse("403 Forbidden.", status_code=403)
        if not path.exists():
            return PlainTextResponse("", status_code=404)
        return path

    async def browse(self, request: Request) -> Response:
        path = self._resolve(request)
        if isinstance(path, Response):
            return path
        if not path.is_dir():
            return JSONResponse([file_info(path)])  # as Mesos: browsing a file lists that file
        entries = []
        for child in sorted(path.iterdir()):
            try:
                entries.append(file_info(child))
            except FileNotFoundError:
                continue
        return JSONResponse(entries)

    async def read(self, request: Request) -> Response:
        path = self._resolve(request)
        if isinstance(path, Response):
            return path
        if path.is_dir():
            return PlainTextResponse("Cannot read a directory.\n", status_code=400)
        try:
            offset = int(request.query_params.get("offset", "-1"))
            length = int(request.query_params.get("length", "-1"))
        except ValueError:
            return PlainTextResponse("Failed to parse offset/length\n", status_code=400)
        size = path.stat().st_size
        if offset == -1:  # Mesos: no offset asks for the file's size only
            return JSONResponse({"data": "", "offset": size})
        if offset < 0:
            return PlainTextResponse("Negative offset provided\n", status_code=400)
        length = MAX_READ if length < 0 else min(length, MAX_READ)
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        return JSONResponse({"data": data.decode("utf-8", errors="replace"), "offset": offset})

    async def download(self, request: Request) -> Response:
        path = self._resolve(request)
        if isinstance(path, Response):
            return path
        if path.is_dir():
            return PlainTextResponse("Cannot download a directory.\n", status_code=400)
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)


def file_info(path: Path) -> dict:
    """Mesos's FileInfo JSON for one entry (as `ls -l` would show it)."""
    info = path.lstat()
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
