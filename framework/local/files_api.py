"""The agent's sandbox files API (`/files/browse`, `/files/read`, `/files/download`).

Answers in Mesos's JSON shapes. Only paths inside the agent's work dir are
served: anything that resolves outside it (`..`, symlinks) is refused.
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

MAX_READ = 16 * 1024 * 1024  # one read returns at most this much


class FilesApi:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _resolve(self, request: Request) -> Path | Response:
        raw = request.query_params.get("path")
        if not raw:
            return PlainTextResponse("Expecting 'path=value' in query.\n", status_code=400)
        path = Path(os.path.realpath(raw))
        if path != self.root and self.root not in path.parents:
            return PlainTextResponse(f"Path '{raw}' is outside the agent's work dir\n", status_code=403)
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
