"""HAProxy's runtime API (the stats socket) and its master CLI: one command per connection.

A command is written, the socket's write side shut, and the answer read to the end:
HAProxy 2.6's master CLI keeps a connection open until its client stops writing, so
a reader that waited for the answer alone would wait forever.
"""
from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass
from pathlib import Path

from framework.errors import DockyardError

# Answers of `set server` that mean it was done; anything else is HAProxy saying why not.
DONE_MARKERS = ("changed from", "no need to change")


class HAProxyError(DockyardError):
    """HAProxy refused or did not answer a runtime command."""


def ask(path: Path | str, command: str, timeout: float = 5.0) -> str:
    """Send one command to a UNIX socket of HAProxy and return its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as error:
            raise HAProxyError(f"HAProxy's socket {path} did not answer '{command}': {error}") from None
    return b"".join(chunks).decode(errors="replace")


@dataclass(frozen=True)
class ServerStat:
    backend: str
    server: str
    status: str  # UP, MAINT, DRAIN, DOWN, ... (HAProxy's stats `status`)
    address: str  # host:port
    sessions: int  # current
    total: int  # since the worker started


class RuntimeApi:
    """The admin-level stats socket of the running worker."""

    def __init__(self, path: Path | str, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def command(self, command: str) -> str:
        return ask(self.path, command, self.timeout)

    def apply(self, commands: list[str]) -> None:
        """Run `set server` commands in order; the first refusal raises, naming it."""
        for command in commands:
            answer = self.command(command).strip()
            if answer and not any(marker in answer for marker in DONE_MARKERS):
                raise HAProxyError(f"HAProxy refused '{command}': {answer[:300]}")

    def alive(self) -> bool:
        try:
            return "Name:" in self.command("show info")
        except HAProxyError:
            return False

    def stats(self) -> list[ServerStat]:
        """Every server of every backend, from `show stat` (CSV)."""
        text = self.command("show stat").lstrip("# ")
        out = []
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("svname") in ("FRONTEND", "BACKEND") or not row.get("pxname"):
                continue
            out.append(ServerStat(row["pxname"], row["svname"], row.get("status", ""), row.get("addr", ""),
                                  int(row.get("scur") or 0), int(row.get("stot") or 0)))
        return out


@dataclass(frozen=True)
class Processes:
    """The master's `show proc`: its reload counts, its current workers and the old ones
    still finishing their connections after a reload."""

    master: int
    reloads: int
    failed: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...] = ()


def show_proc(master_socket: Path | str, timeout: float = 5.0) -> Processes:
    text = ask(master_socket, "show proc", timeout)
    master = reloads = failed = 0
    workers: list[int] = []
    old: list[int] = []
    section = workers
    for line in text.splitlines():
        if line.startswith("# old workers"):
            section = old
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        if parts[1] == "master":
            master, reloads = int(parts[0]), int(parts[2])
            if "failed:" in line:
                failed = int(line.split("failed:", 1)[1].split("]", 1)[0].strip() or 0)
        elif parts[1] == "worker":
            section.append(int(parts[0]))
    if not master:
        raise HAProxyError(f"HAProxy's master socket {master_socket} answered no master: {text[:200]!r}")
    return Processes(master, reloads, failed, tuple(workers), tuple(old))
