"""What a nested container is to the agent: where it runs, its process, its output streams.

The data framework/local/agent/nested.py works on, and the error its calls answer with.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from framework.errors import DockyardError
from framework.local.agent.model import ExecutorRecord, FrameworkRecord, TaskRecord
from framework.local.agent.nested_entry import Entry
from framework.local.agent.nested_io import Adopted, Child
from framework.local.master.security import task_user
from framework.security.authn import Principal

STREAM_QUEUE = 4  # records for one output stream: one a pump (stdout, stderr) at a time, and the end
Caller = Principal | str | None  # who calls: a principal's name, or an executor token's claims


class ApiError(DockyardError):
    """A call the agent refuses: `status` and the body Mesos would send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


FORBIDDEN = ApiError(403, "403 Forbidden.")


@dataclass
class Place:
    """A task's container, where nested containers under it run."""

    framework: FrameworkRecord
    executor: ExecutorRecord
    task: TaskRecord
    record: dict  # the executor's container record (framework/local/agent/nested_entry.py)
    key: str  # the task container's ContainerID, printed as Mesos prints it

    @property
    def user(self) -> str:
        """Whom the ACLs ask about: the user the task (and its nested processes) run as."""
        return str(self.record.get("user") or task_user(self.task.info, self.framework.info))


@dataclass
class Stream:
    """One attached output stream: frames to send, None when the output has ended."""

    protobuf: bool = False  # its records in protobuf, else JSON
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(STREAM_QUEUE))
    closed: bool = False


@dataclass
class Nested:
    cid: dict
    key: str  # the ContainerID as Mesos prints it: root.child.grandchild
    place: Place
    session: bool  # ends with its client's connection
    tty: bool
    principal: str | None
    program: str
    entry: Entry | None = None
    process: Child | Adopted | None = None  # what the agent started (a reaper, the runtime's exec, the host chain)
    main: asyncio.Future | None = None  # done when the process the runtime started has exited
    pid: int | None = None  # the nested container's main process (the runtime's, or the host chain)
    status_file: Path | None = None  # where its reaper writes its wait status
    stdin: int | None = None  # our end of its stdin (the terminal's master with a TTY)
    outputs: list[tuple[int, str]] = field(default_factory=list)  # (fd, STDOUT|STDERR) we read
    switchboard: bool = True
    streams: list[Stream] = field(default_factory=list)
    reading: asyncio.Event = field(default_factory=asyncio.Event)  # the first output stream attached
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # exited, drained, streams closed
    input_attached: bool = False
    destroying: bool = False
    termination: dict | None = None
    started: float = field(default_factory=time.monotonic)
