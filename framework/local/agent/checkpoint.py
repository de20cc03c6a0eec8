"""What the agent persists survives a crash whole or not at all.

Records written once (task.json, run.json) are written as a temp file in the same
directory, then renamed over the target (runc's saveState pattern), so a reader
never sees half a file. Records that change often (a task's states) are appended
one JSON line at a time, as a Mesos agent appends to `task.updates`: a rename per
status update costs a forced writeback on ext4, an append does not, and a torn
last line (a crash mid-write) is simply skipped on recovery. Checkpoints hold task
and executor infos (environments, commands): files are 0600 and the directories
this module creates 0700.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


FILE_MODE, DIR_MODE = 0o600, 0o700


def _make_parent(path: Path) -> None:
    """`path`'s directory and any missing ancestors, each 0700."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _replace(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`."""
    _make_parent(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def write_json(path: Path, value: Any) -> None:
    _replace(path, _encode(value))


def write_new(path: Path, value: Any) -> None:
    """A record written once into a fresh file: no temp file, no rename.

    A crash mid-write leaves a file `read_json` cannot parse, which reads as absent:
    what a crash before the write would have left. An existing file is replaced whole.
    """
    _make_parent(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        write_json(path, value)
        return
    with os.fdopen(fd, "wb") as out:
        out.write(_encode(value))


def read_json(path: Path, default: Any = None) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def append_line(path: Path, value: Any) -> None:
    line = _encode(value) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def write_lines(path: Path, values: list[Any]) -> None:
    """Replace a file of JSON lines whole (temp + rename)."""
    _replace(path, b"".join(_encode(v) + b"\n" for v in values))


def read_lines(path: Path) -> list[Any]:
    """Every complete JSON line; a torn or garbled line (a crash mid-append) ends the read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    values = []
    for line in raw.split(b"\n")[:-1]:
        try:
            values.append(json.loads(line))
        except ValueError:
            break
    return values
