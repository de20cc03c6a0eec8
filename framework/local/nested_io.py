"""Processes and file descriptors behind nested containers (framework/local/nested.py):
waiting for a child, moving bytes between pipes, terminals and streams, and the shape of an
ATTACH_CONTAINER_INPUT call."""
from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal as signals
import struct
import subprocess
import termios
from pathlib import Path

from framework.errors import DockyardError
from framework.local.nested_entry import Entry
from framework.mesos import processio

log = logging.getLogger(__name__)

PIPE_SIZE = 1 << 20  # pipes this large cost a few syscalls per MB instead of sixteen
BULK, BULK_WAIT = 16 << 10, 0.001  # a read this large is bulk output: what comes in the next ms joins it


class Child:
    """A process started with `subprocess.Popen`, awaited on the loop through its pidfd.

    Popen forks with vfork, in constant time; the loop's own subprocess support (uvloop's
    under uvicorn) copies the agent's whole address space first: ten times slower to start
    a session."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        ended = exited(popen.pid)
        if ended is None:  # before Linux 5.3: a thread waits
            asyncio.get_running_loop().run_in_executor(None, popen.wait).add_done_callback(lambda _: self._reaped())
        else:
            ended.add_done_callback(lambda _: self._reaped())

    def _reaped(self) -> None:
        self.returncode = self.popen.wait()
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


def exited(pid: int) -> asyncio.Future | None:
    """A future done when process `pid` (any process, not only our child) has exited; already done
    when it is gone; None when this kernel has no pidfd."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        future.set_result(None)
        return future
    except (AttributeError, OSError):
        return None

    def done() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result(None)

    loop.add_reader(fd, done)
    return future


def coalesced(queue: asyncio.Queue, first: bytes, limit: int | None = None) -> tuple[bytes, bool]:
    """`first` and what else is ready in `queue` (up to about `limit` bytes), as one HTTP chunk:
    (the chunk, whether the queue's end marker None was among them)."""
    batch, size = [first], len(first)
    while not queue.empty() and (limit is None or size < limit):
        more = queue.get_nowait()
        if more is None:
            return b"".join(batch), True
        batch.append(more)
        size += len(more)
    return (b"".join(batch) if len(batch) > 1 else first), False


def input_error(call: dict) -> str | None:
    """What is wrong with a later record of an input stream (switchboard.cpp `validate`), or None."""
    kind = call.get("type")
    if kind != "PROCESS_IO":
        return f"Expecting 'attach_container_input.type' to be 'PROCESS_IO' instead of: '{kind or 'UNKNOWN'}'"
    message = call.get("process_io")
    if not isinstance(message, dict):
        return "Expecting 'attach_container_input.process_io' to be present"
    if "type" not in message:
        return "Expecting 'process_io.type' to be present"
    if message["type"] == "CONTROL":
        control = message.get("control")
        if not isinstance(control, dict):
            return "Expecting 'process_io.control' to be present"
        if "type" not in control:
            return "Expecting 'process_io.control.type' to be present"
        if control["type"] == "TTY_INFO":
            info = control.get("tty_info")
            if not isinstance(info, dict):
                return "Expecting 'process_io.control.tty_info' to be present"
            size = info.get("window_size")
            if not isinstance(size, dict) or "rows" not in size or "columns" not in size:
                return "Expecting 'tty_info.window_size' to be present"
            return None
        if control["type"] == "HEARTBEAT":
            return None if isinstance(control.get("heartbeat"), dict) else \
                "Expecting 'process_io.control.heartbeat' to be present"
        return "'process_io.control.type' is unknown"
    if message["type"] == "DATA":
        payload = message.get("data")
        if not isinstance(payload, dict):
            return "Expecting 'process_io.data' to be present"
        if "type" not in payload:
            return "Expecting 'process_io.data.type' to be present"
        if payload["type"] != "STDIN":
            return "Expecting 'process_io.data.type' to be 'STDIN'"
        if not isinstance(payload.get("data"), str):
            return "Expecting 'process_io.data.data' to be present"
        return None
    return "'process_io.type' is unknown"


# -- helpers ------------------------------------------------------------------------------------------
def program_name(command: dict) -> str:
    """What the log says a session runs: its program, never its arguments (they may hold secrets)."""
    if command.get("shell", True):
        return "sh -c …"
    return str(command.get("value") or (command.get("arguments") or ["?"])[0])[:200]


def inside(path: object, directory: Path) -> bool:
    return isinstance(path, str) and (path == str(directory) or path.startswith(str(directory) + "/"))


def termination_of(returncode: int, runtime: bool) -> dict:
    """The WAIT answer for a process's returncode; a runtime says 128+N for death by signal N."""
    code, signal = (None, -returncode) if returncode < 0 else (returncode, None)
    if runtime and code is not None and 128 < code < 128 + 65:
        code, signal = None, code - 128
    if signal:
        try:
            name = signals.Signals(signal).name
        except ValueError:
            name = str(signal)
        message = f"Command terminated with signal {name}"
    else:
        message = f"Command exited with status {code}"
    return {"exit_status": processio.wait_status(code, signal), "message": message}


def remove_group(plan: Entry) -> None:
    if plan.group is not None:
        try:
            plan.group.remove(timeout=5.0)
        except DockyardError as error:
            log.warning("cannot remove a nested container's cgroup: %s", error)
    for path in plan.cleanup:
        path.unlink(missing_ok=True)


def grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, 1031, PIPE_SIZE)  # F_SETPIPE_SZ
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size: the default size works, a little slower


def set_window(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def drain_outputs(outputs: list[tuple[int, str]]) -> bytes:
    """What the outputs hold right now (a runtime's error before anything else ran)."""
    said = b""
    for fd, _kind in outputs:
        try:
            said += os.read(fd, 65536)
        except OSError:
            pass
    return said


def runtime_error(said: bytes) -> str:
    """The message of runc's `level=error msg="..."` line, else the text as it is."""
    text = said.decode(errors="replace").strip()
    for line in reversed(text.splitlines()):
        if 'msg="' in line:
            return line.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return text[-500:]


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def kill_pid(pid: int) -> None:
    signal_pid(pid, signals.SIGKILL)


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def read_fd(fd: int, size: int) -> bytes:
    """Read a non-blocking fd on the loop; b"" at EOF (EIO: a terminal whose every slave closed).

    A record costs the agent about the same to relay whatever its size, and runc hands a
    stream on 32 KB at a time: when a read brings that much (bulk output, not a keystroke's
    echo), what follows within `BULK_WAIT` joins it, up to `size`."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            chunk = os.read(fd, size)
        except BlockingIOError:
            await _ready(loop.add_reader, loop.remove_reader, fd)
            continue
        except OSError as error:
            if error.errno == errno.EIO:
                return b""
            raise
        parts, total = [chunk], len(chunk)
        while BULK <= len(chunk) and total < size:
            await asyncio.sleep(BULK_WAIT)
            try:
                chunk = os.read(fd, size - total)
            except OSError:  # nothing more (EAGAIN), or the end, which the next read says
                break
            parts.append(chunk)
            total += len(chunk)
        return b"".join(parts) if len(parts) > 1 else chunk


async def write_fd(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await _ready(loop.add_writer, loop.remove_writer, fd)


async def _ready(add, remove, fd: int) -> None:  # noqa: ANN001
    future = asyncio.get_running_loop().create_future()
    add(fd, lambda: future.done() or future.set_result(None))
    try:
        await future
    finally:
        remove(fd)
