"""Processes and file descriptors behind nested containers (framework/local/agent/nested.py):
waiting for a child, moving bytes between pipes, terminals and streams, and the shape of an
ATTACH_CONTAINER_INPUT call."""
from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import signal as signals
import socket
import struct
import subprocess
import sys
import termios
from pathlib import Path

from framework.errors import DockyardError
from framework.local.agent.nested_entry import Entry
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


class Reapers:
    """Parents for the runtime's detached execs (framework/local/agent/nested_reaper.py), one kept
    waiting: an interpreter's start (about 12 ms) stays off a session's path."""

    SCRIPT = Path(__file__).with_name("nested_reaper.py")

    def __init__(self) -> None:
        self.warm: tuple[subprocess.Popen, socket.socket] | None = None

    def start(self, plan: Entry, stdio: tuple[int, int, int],
              status_file: Path | None = None) -> tuple[subprocess.Popen, socket.socket]:
        """A reaper running `plan` with `stdio` (it exits as `runtime exec` would), and the socket
        on which it says the pid of the process started (`started_pid`); it writes the process's
        wait status to `status_file`, when given, before it exits."""
        request = json.dumps({"argv": plan.argv, "pid_file": str(plan.pid_file) if plan.pid_file else None,
                              "env": plan.env, "cwd": plan.cwd,
                              "status_file": str(status_file) if status_file else None}).encode()
        for attempt in (1, 2):
            popen, control = self.take()
            try:
                socket.send_fds(control, [request], list(stdio))
                return popen, control
            except OSError:
                control.close()
                if attempt == 2:  # a fresh one that cannot take a message: say why
                    raise
                popen.kill()  # a warm one that died meanwhile
                popen.wait()
        raise AssertionError("unreachable")

    def take(self) -> tuple[subprocess.Popen, socket.socket]:
        warm, self.warm = self.warm, None
        if warm is not None and warm[0].poll() is None:
            return warm
        if warm is not None:
            warm[1].close()
        return self._spawn()

    def prepare(self) -> None:
        """Have one waiting for the next session."""
        if self.warm is None or self.warm[0].poll() is not None:
            if self.warm is not None:
                self.warm[1].close()
            self.warm = self._spawn()

    def close(self) -> None:
        """The one waiting ends with its socket."""
        warm, self.warm = self.warm, None
        if warm is not None:
            warm[1].close()
            try:
                warm[0].wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                warm[0].kill()
                warm[0].wait()

    def _spawn(self) -> tuple[subprocess.Popen, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen([sys.executable, "-I", "-S", str(self.SCRIPT)], stdin=theirs,
                                     stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return popen, ours


class Adopted:
    """A reaper a previous run of the agent started (no longer our child): its exit is seen
    through a pidfd, its status is not (the status file its process's end leaves says it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None  # 0 once it has exited (how, the status file says)
        self._exited = exited(pid)
        if self._exited is not None:
            self._exited.add_done_callback(lambda _: setattr(self, "returncode", 0))

    async def wait(self) -> int | None:
        """Once it has exited: None, its status being unknown here."""
        if self._exited is None:  # before Linux 5.3
            while os.path.exists(f"/proc/{self.pid}"):
                await asyncio.sleep(0.1)
        else:
            await self._exited
        self.returncode = 0
        return None


async def started_pid(control: socket.socket) -> int | None:
    """The pid a reaper says the runtime started; None when it closed the socket unsaid (the
    runtime failed, and the reaper exits with its status)."""
    control.setblocking(False)
    loop = asyncio.get_running_loop()
    while True:
        try:
            said = control.recv(64)
            break
        except BlockingIOError:
            await _ready(loop.add_reader, loop.remove_reader, control.fileno())
        except OSError:
            return None
    return int(said) if said.isdigit() else None


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


def termination_of_status(status: int) -> dict:
    """The WAIT answer for a raw wait status, as a reaper's status file has it."""
    return termination_of(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), False)


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


async def read_into(fd: int, buffer: bytearray, start: int) -> memoryview:
    """Read a non-blocking fd into `buffer[start:]` on the loop: a view of what came, empty at EOF
    (EIO: a terminal whose every slave closed).

    A record costs the agent about the same to relay whatever its size: when a read brings
    `BULK` or more (bulk output, not a keystroke's echo), what follows within `BULK_WAIT` joins
    it, up to the buffer's end."""
    loop = asyncio.get_running_loop()
    room = memoryview(buffer)[start:]
    while True:
        try:
            got = os.readv(fd, [room])
            break
        except BlockingIOError:
            await _ready(loop.add_reader, loop.remove_reader, fd)
        except OSError as error:
            if error.errno == errno.EIO:
                return room[:0]
            raise
    total = got
    while BULK <= got and total < len(room):
        await asyncio.sleep(BULK_WAIT)
        try:
            got = os.readv(fd, [room[total:]])
        except OSError:  # nothing more (EAGAIN), or the end, which the next read says
            break
        total += got
    return room[:total]


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
