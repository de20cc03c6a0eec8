"""`task exec` and `task attach`: a process inside a running task, over the agent's debug API.

What the Mesos CLI does for `mesos task exec` (src/python/cli_new/lib/cli/mesos.py `TaskIO`),
with a few things it lacks:

1. the task, its agent and its container come from the master's `/master/state` (the
   container is the latest `statuses[].container_status.container_id`); a task that ended,
   is unknown, or whose agent is gone is a clear error, not a stack trace;
2. `LAUNCH_NESTED_CONTAINER_SESSION` on the agent's `/api/v1` runs the command in a new
   container nested in the task's; its ProcessIO records are written to stdout/stderr as
   they come;
3. with `interactive`, a second request (`ATTACH_CONTAINER_INPUT`) streams stdin: the
   CONTAINER_ID record, a HEARTBEAT every `HEARTBEAT_SECONDS`, the terminal's size (again at
   each SIGWINCH), the data, and an empty DATA record at end of input;
4. with `tty` the command gets a pseudo-terminal and the local one goes raw (Ctrl-C reaches
   the remote terminal as a byte); without one, Ctrl-C is forwarded as SIGINT
   (`KILL_NESTED_CONTAINER` with signal 2) and a second Ctrl-C leaves, which ends the session;
5. once the output ends, `WAIT_CONTAINER` gives the raw wait status; the exit code is the
   command's, or 128+N when signal N killed it.

`attach` follows a task's own output: `ATTACH_CONTAINER_OUTPUT` when the task has a terminal,
else (dockyard's tasks have none, which the agent answers 500 with the switchboard message)
its sandbox's stdout and stderr through the agent's files API, until the task ends.

The caller's settings (framework/security/client.py) give the master, the credentials
(HTTP Basic to the master and the agents) and the CA. `python -m framework.mesos.attach`
runs it from a shell.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import queue
import signal as signals
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator
from urllib.parse import urlsplit

import httpx

from framework.errors import DockyardError
from framework.mesos import processio, recordio
from framework.mesos.detector import detect
from framework.mesos.messages import TERMINAL_STATES
from framework.security.client import ClientConfig

HEARTBEAT_SECONDS = 10.0  # input heartbeats; the Mesos CLI gives up on a stream after 30 s of silence
STDIN_CHUNK = 64 * 1024
READ_TIMEOUT = 60.0  # the agent's output heartbeats come every 10 s (framework/local/agent/model.py)
FOLLOW_SECONDS = 0.3  # how often `attach` looks for more of a file
DEFAULT_MASTER = "127.0.0.1:5050"
SWITCHBOARD_DISABLED = "I/O switchboard server was disabled for this container"
MAX_RECORD = 64 << 20  # an output record larger than this is not an agent's (dockyard's are 1 MB at most)


class AttachError(DockyardError):
    """Why a task cannot be reached or the session failed; one line for the user."""


@dataclass(frozen=True)
class Target:
    """A running task as the master shows it, and how to reach its agent."""

    task_id: str
    framework_id: str
    agent_id: str
    agent_url: str  # scheme://host:port of the task's agent
    container: dict  # the task's ContainerID
    sandbox: str  # the task's sandbox relative to its executor's (dockyard's executor says)


# -- finding the task ---------------------------------------------------------------------------
class Connection:
    """HTTP to the master and its agents as the caller: HTTP Basic with the settings' credentials;
    TLS verified with their CA when the master's URL says https (agents then speak it too)."""

    def __init__(self, settings: ClientConfig, master: str | None = None, read_timeout: float = READ_TIMEOUT) -> None:
        from framework.local.cluster.status import master_scheme

        self.settings = settings
        self.master = master or settings.master or DEFAULT_MASTER
        self.scheme = master_scheme(self.master, settings)
        self.read_timeout = read_timeout
        # An SSL context costs tens of milliseconds to make: only when TLS is spoken.
        self.ssl = settings.ssl_context() if self.scheme == "https" else None
        self.client = httpx.Client(timeout=httpx.Timeout(10.0, read=read_timeout), auth=settings.auth,
                                   verify=self.ssl if self.ssl is not None else False)

    def close(self) -> None:
        self.client.close()

    def refused(self, response: httpx.Response, server: str, what: str) -> AttachError:
        response.read()
        return self.refusal(response.status_code, response.text, server, what)

    def refusal(self, status: int, said: str, server: str, what: str) -> AttachError:
        if status in (401, 403):
            return AttachError(self.settings.refusal(status, server, said))
        said = " ".join(said.split())[:500] or "(no message)"
        return AttachError(f"{what}: {server} answered {status}: {said}")

    def raw(self, url: str) -> http.client.HTTPConnection:
        """A connection of the standard library's to `url`, for an output stream: it reads a large
        record in one call, where httpx's parser takes it in 64 KB events (half the throughput)."""
        parts = urlsplit(url)
        if parts.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=10.0, context=self.ssl)
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10.0)
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(self.read_timeout)
        return connection

    def headers(self) -> dict[str, str]:
        if self.settings.auth is None:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(":".join(self.settings.auth).encode()).decode()}

    def master_state(self, timeout: float = 5.0) -> dict:
        """The leading master's `/master/state` (a standby names the leader: asked again there)."""
        detector = detect(self.master)
        try:
            leader = detector.wait(timeout)
        finally:
            detector.close()
        if leader is None:
            raise AttachError(f"no leading master found at {self.master}")
        url = f"{self.scheme}://{leader}"
        try:
            for _ in range(3):
                response = self.client.get(f"{url}/master/state", timeout=timeout)
                location = urlsplit(response.headers.get("location", ""))
                if response.status_code not in (301, 302, 307, 308) or not location.netloc:
                    break
                url = f"{self.scheme}://{location.netloc}"
        except httpx.HTTPError as error:
            raise AttachError(f"cannot reach the master at {url}: {error}") from None
        if response.status_code != 200:
            raise self.refused(response, f"the master at {url}", "reading the cluster's state")
        return response.json()

    def find_task(self, task_id: str) -> Target:
        """The running task `task_id`, through the leading master."""
        return locate(self.master_state(), task_id, self.scheme)


def find_task(settings: ClientConfig, task_id: str, master: str | None = None) -> Target:
    """The running task `task_id` (AttachError when it ended, is unknown, or its agent is gone)."""
    connection = Connection(settings, master)
    try:
        return connection.find_task(task_id)
    finally:
        connection.close()


def locate(state: dict, task_id: str, scheme: str = "http") -> Target:
    """`task_id` in a master's `/master/state`, or AttachError saying why it cannot be exec'd into."""
    found: list[tuple[str, dict, dict]] = []
    for framework in state.get("frameworks") or []:
        for key in ("tasks", "unreachable_tasks", "completed_tasks"):
            found += [(key, framework, task) for task in framework.get(key) or [] if task.get("id") == task_id]
    if not found:
        raise AttachError(f"no task {task_id!r} on this cluster (the master knows no such task)")
    live = [(f, t) for key, f, t in found if key == "tasks"]
    if not live:
        key, _framework, task = found[0]
        why = "is unreachable" if key == "unreachable_tasks" else "has ended"
        raise AttachError(f"task {task_id} {why} ({task.get('state')}): nothing runs to exec into")
    if len(live) > 1:
        raise AttachError(f"{len(live)} frameworks run a task {task_id!r}: the id is ambiguous")
    framework, task = live[0]
    if task.get("state") in TERMINAL_STATES:  # ended, its last update not yet acknowledged
        raise AttachError(f"task {task_id} has ended ({task.get('state')}): nothing runs to exec into")
    if task.get("state") != "TASK_RUNNING":
        raise AttachError(f"task {task_id} is {task.get('state')}, not running yet")
    agent_id = task.get("slave_id", "")
    agent = next((a for a in state.get("slaves") or [] if a.get("id") == agent_id), None)
    if agent is None:
        raise AttachError(f"the agent of task {task_id} ({agent_id}) is not registered with the master: "
                          f"it was removed or is unreachable")
    if agent.get("active") is False:
        raise AttachError(f"the agent of task {task_id} ({agent.get('hostname')}) is disconnected from the master")
    address = str(agent.get("pid", "")).rpartition("@")[2] or f"{agent.get('hostname')}:{agent.get('port')}"
    statuses = task.get("statuses") or []
    containers = [s["container_status"]["container_id"] for s in statuses
                  if isinstance((s.get("container_status") or {}).get("container_id"), dict)]
    if not containers:
        raise AttachError(f"task {task_id}'s statuses name no container (its executor reports none)")
    sandbox = next((label.get("value", "") for s in reversed(statuses) for label in s.get("labels") or []
                    if label.get("key") == "dockyard.sandbox"), "")
    return Target(task_id, framework.get("id", ""), agent_id, f"{scheme}://{address}", containers[-1], sandbox)


# -- talking to the agent -----------------------------------------------------------------------
class Agent:
    """One agent's `/api/v1`, over the caller's connection."""

    def __init__(self, connection: Connection, url: str) -> None:
        self.connection = connection
        self.client = connection.client
        self.url = url
        self.api = f"{url}/api/v1"

    def refused(self, response: httpx.Response, what: str) -> AttachError:
        return self.connection.refused(response, f"the agent at {self.url}", what)

    def call(self, call: dict) -> httpx.Response:
        return self.client.post(self.api, content=json.dumps(call), headers={
            "Content-Type": processio.JSON, "Accept": processio.JSON})

    @contextlib.contextmanager
    def output(self, call: dict, what: str) -> Iterator[Iterator[tuple[str, memoryview]]]:
        """A streaming call's output as (STDOUT|STDERR, its bytes), as it arrives; the bytes are good
        until the next record is asked for. The records are asked
        for in protobuf, which carries the bytes as they are (JSON would need base64: three times
        slower to decode than the rest of the path costs); JSON ones are read too. Closing the
        connection (leaving this block) ends a session."""
        connection = self.connection.raw(self.url)
        try:
            connection.request("POST", "/api/v1", body=json.dumps(call), headers={
                "Content-Type": processio.JSON, "Accept": processio.RECORDIO,
                "Message-Accept": processio.PROTOBUF, **self.connection.headers()})
            response = connection.getresponse()
            if response.status != 200:
                said = response.read().decode(errors="replace")
                raise self.connection.refusal(response.status, said, f"the agent at {self.url}", what)
            protobuf = response.getheader("Message-Content-Type") == processio.PROTOBUF
            yield _output(response, protobuf)
        finally:
            connection.close()

    def wait(self, cid: dict) -> int | None:
        """The raw wait status of an ended nested container."""
        response = self.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": cid}})
        if response.status_code != 200:
            raise self.refused(response, "waiting for the session's exit status")
        return response.json().get("wait_container", {}).get("exit_status")

    def signal(self, cid: dict, number: int) -> None:
        self.call({"type": "KILL_NESTED_CONTAINER", "kill_nested_container": {"container_id": cid, "signal": number}})


def _output(stream: http.client.HTTPResponse, protobuf: bool) -> Iterator[tuple[str, memoryview]]:
    """The DATA of a RecordIO body, record by record (`<length>\\n<record>`). Each record is read
    straight into one buffer, reused: what comes out is a view of it, good until the next record
    is asked for (a fresh megabyte a record would cost the client more in page faults than the
    bytes themselves do)."""
    buffer = bytearray()
    while True:
        header = stream.readline(recordio.MAX_HEADER + 2)
        if not header:
            return
        if not header.rstrip(b"\n").isdigit():
            raise AttachError(f"the agent's stream is not RecordIO (a record starts {header[:20]!r})")
        size = int(header)
        if size > MAX_RECORD:
            raise AttachError(f"the agent sent a record of {size} bytes, more than {MAX_RECORD}")
        if size > len(buffer):
            buffer = bytearray(max(size, min(2 * len(buffer), MAX_RECORD)))
        record = memoryview(buffer)[:size]
        if stream.readinto(record) < size:
            raise AttachError("the agent's stream ended inside a record")
        data = processio.decoded_protobuf(record) if protobuf else processio.decoded_data(json.loads(bytes(record)))
        if data is not None:
            yield data[0], memoryview(data[1])


# -- exec ------------------------------------------------------------------------------------------
def exec_task(settings: ClientConfig, task_id: str, argv: list[str], *, interactive: bool = False,
              tty: bool = False, master: str | None = None, stdin: BinaryIO | None = None,
              stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> int:
    """Run `argv` inside task `task_id`; the command's exit code (128+N when signal N killed it).

    AttachError (one line) when the task cannot be reached or the agent refuses."""
    if not argv:
        raise AttachError("no command to run")
    connection = Connection(settings, master)
    try:
        target = connection.find_task(task_id)
        return Session(connection, target, argv, interactive=interactive, tty=tty, stdin=stdin, stdout=stdout,
                       stderr=stderr).run()
    finally:
        connection.close()


class Session:
    """One `LAUNCH_NESTED_CONTAINER_SESSION` and, with `interactive`, its input stream."""

    def __init__(self, connection: Connection, target: Target, argv: list[str], *, interactive: bool = False,
                 tty: bool = False, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None) -> None:
        self.target = target
        self.argv = argv
        self.interactive = interactive
        self.tty = tty
        self.stdin = stdin or sys.stdin.buffer
        self.stdout = stdout or sys.stdout.buffer
        self.stderr = stderr or sys.stderr.buffer
        self.agent = Agent(connection, target.agent_url)
        self.cid = processio.container_id(uuid.uuid4().hex, target.container)
        self.input: queue.Queue[dict | None] = queue.Queue()
        self.input_error: AttachError | None = None
        self.interrupted = 0
        self.done = threading.Event()

    def run(self) -> int:
        rows, columns = _window(self.stdin) if self.tty else (0, 0)
        env = {"TERM": os.environ["TERM"]} if self.tty and os.environ.get("TERM") else None
        call = processio.session_call(self.cid, self.argv, tty=self.tty, rows=rows, columns=columns, environment=env)
        try:
            with self.agent.output(call, f"exec in task {self.target.task_id}") as output, \
                    self._terminal(), self._signals():
                if self.interactive:
                    self._start_input(rows, columns)
                for kind, data in output:
                    sink = self.stderr if kind == "STDERR" else self.stdout
                    sink.write(data)
                    sink.flush()
            if self.input_error is not None:
                raise self.input_error
            return processio.exit_code(self.agent.wait(self.cid))
        except BrokenPipeError:  # our reader went (`exec … | head`): so does the session, as a pipe's writer
            return 128 + signals.SIGPIPE
        except (httpx.HTTPError, http.client.HTTPException, OSError) as error:
            raise AttachError(f"the session with the agent at {self.target.agent_url} broke: {error}") from None
        finally:
            self.done.set()
            self.input.put(None)

    # -- input -----------------------------------------------------------------------------------
    def _start_input(self, rows: int, columns: int) -> None:
        if rows and columns:
            self.input.put(processio.tty_info(rows, columns))
        threading.Thread(target=self._send_input, name="exec-input", daemon=True).start()
        threading.Thread(target=self._read_stdin, name="exec-stdin", daemon=True).start()
        threading.Thread(target=self._heartbeats, name="exec-heartbeat", daemon=True).start()

    def _body(self) -> Iterator[bytes]:
        yield processio.frame(processio.input_start(self.cid))
        yield processio.frame(processio.input_call(processio.heartbeat(HEARTBEAT_SECONDS)))
        while True:
            message = self.input.get()
            if message is None:
                return
            yield processio.frame(processio.input_call(message))

    def _send_input(self) -> None:
        headers = {"Content-Type": processio.RECORDIO, "Message-Content-Type": processio.JSON,
                   "Accept": processio.JSON}
        try:
            response = self.agent.client.post(self.agent.api, content=self._body(), headers=headers,
                                              timeout=httpx.Timeout(10.0, read=None))
            if response.status_code not in (200, 202):
                self.input_error = self.agent.refused(response, "sending input")
        except httpx.HTTPError:
            pass  # the session ended first: its output says how

    def _read_stdin(self) -> None:
        fd = self.stdin.fileno()
        while True:
            try:
                chunk = os.read(fd, STDIN_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                if not self.tty:  # end of input; on a terminal ^D travels as a byte instead
                    self.input.put(processio.data("STDIN", b""))
                return
            self.input.put(processio.data("STDIN", chunk))

    def _heartbeats(self) -> None:
        while not self.done.wait(HEARTBEAT_SECONDS):
            self.input.put(processio.heartbeat(HEARTBEAT_SECONDS))

    # -- the local terminal and signals ------------------------------------------------------------
    @contextlib.contextmanager
    def _terminal(self) -> Iterator[None]:
        """Raw mode for the session's lifetime when we drive a terminal, restored however it ends."""
        if not (self.tty and self.interactive and os.isatty(self.stdin.fileno())):
            yield
            return
        import termios
        import tty as ttys

        fd = self.stdin.fileno()
        saved = termios.tcgetattr(fd)
        ttys.setraw(fd)
        try:
            yield
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def resized(number: int, frame: Any) -> None:
            rows, columns = _window(self.stdin)
            if rows and columns:
                self.input.put(processio.tty_info(rows, columns))

        def interrupted(number: int, frame: Any) -> None:
            self.interrupted += 1
            if self.interrupted > 1:
                raise KeyboardInterrupt
            threading.Thread(target=self.agent.signal, args=(self.cid, signals.SIGINT), daemon=True).start()

        if self.tty and self.interactive:
            previous[signals.SIGWINCH] = signals.signal(signals.SIGWINCH, resized)
        if not self.tty:
            previous[signals.SIGINT] = signals.signal(signals.SIGINT, interrupted)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signals.signal(number, handler)


def _window(stream: BinaryIO) -> tuple[int, int]:
    """The terminal's (rows, columns), (0, 0) when `stream` is no terminal."""
    try:
        import fcntl
        import termios

        rows, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(stream.fileno(), termios.TIOCGWINSZ, b"\0" * 8))
        return rows, columns
    except (OSError, ValueError, AttributeError):
        return 0, 0


# -- attach --------------------------------------------------------------------------------------------
def attach_task(settings: ClientConfig, task_id: str, *, master: str | None = None,
                stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> int:
    """Follow task `task_id`'s output until it ends (0), or until interrupted."""
    connection = Connection(settings, master)
    out, err = stdout or sys.stdout.buffer, stderr or sys.stderr.buffer
    try:
        target = connection.find_task(task_id)
        agent = Agent(connection, target.agent_url)
        call = {"type": "ATTACH_CONTAINER_OUTPUT", "attach_container_output": {"container_id": target.container}}
        try:
            with agent.output(call, f"attaching to task {task_id}") as output:
                for kind, data in output:
                    sink = err if kind == "STDERR" else out
                    sink.write(data)
                    sink.flush()
            return 0
        except AttachError as error:
            if SWITCHBOARD_DISABLED not in str(error):
                raise
        return follow_files(agent, target, out, err)
    except (httpx.HTTPError, http.client.HTTPException, OSError) as error:
        raise AttachError(f"lost the agent: {error}") from None
    finally:
        connection.close()


def follow_files(agent: Agent, target: Target, out: BinaryIO, err: BinaryIO) -> int:
    """A task without a terminal: its sandbox's `stdout` and `stderr`, from their start, as they grow."""
    directory = _sandbox(agent, target)
    offsets = {"stdout": 0, "stderr": 0}
    while True:
        running = _running(agent, target)
        for name, sink in (("stdout", out), ("stderr", err)):
            while True:
                response = agent.client.get(f"{agent.url}/files/read",
                                            params={"path": f"{directory}/{name}", "offset": offsets[name]})
                if response.status_code == 404:
                    break
                if response.status_code != 200:
                    raise agent.refused(response, f"reading task {target.task_id}'s {name}")
                data = response.json().get("data", "")
                if not data:
                    break
                chunk = data.encode("utf-8", "surrogateescape")
                offsets[name] += len(chunk)
                sink.write(chunk)
                sink.flush()
        if not running:
            return 0
        time.sleep(FOLLOW_SECONDS)


def _agent_state(agent: Agent) -> dict:
    response = agent.client.get(f"{agent.url}/state")
    if response.status_code != 200:
        raise agent.refused(response, "reading the agent's state")
    return response.json()


def _sandbox(agent: Agent, target: Target) -> str:
    for framework in _agent_state(agent).get("frameworks") or []:
        for executor in framework.get("executors") or []:
            if any(t.get("id") == target.task_id for t in executor.get("tasks") or []):
                return os.path.normpath(os.path.join(executor["directory"], target.sandbox or "."))
    raise AttachError(f"the agent at {agent.url} runs no task {target.task_id} any more")


def _running(agent: Agent, target: Target) -> bool:
    for framework in _agent_state(agent).get("frameworks") or []:
        for executor in framework.get("executors") or []:
            if any(t.get("id") == target.task_id for t in executor.get("tasks") or []):
                return True
    return False


# -- a shell's entry point -----------------------------------------------------------------------
def main(arguments: list[str] | None = None) -> int:
    """`python -m framework.mesos.attach [--config F] [--master M] exec [-i] [-t] TASK -- CMD...`
    or `... attach TASK`."""
    import argparse

    from framework.security import client

    parser = argparse.ArgumentParser(prog="python -m framework.mesos.attach")
    parser.add_argument("--config", default=None)
    parser.add_argument("--master", default=None)
    commands = parser.add_subparsers(dest="what", required=True)
    run = commands.add_parser("exec")
    run.add_argument("-i", "--interactive", action="store_true")
    run.add_argument("-t", "--tty", action="store_true")
    run.add_argument("task")
    run.add_argument("command", nargs=argparse.REMAINDER)
    follow = commands.add_parser("attach")
    follow.add_argument("task")
    options = parser.parse_args(arguments)
    try:
        settings = client.load(options.config)
        if options.what == "attach":
            return attach_task(settings, options.task, master=options.master)
        command = options.command[1:] if options.command[:1] == ["--"] else options.command
        return exec_task(settings, options.task, command, interactive=options.interactive, tty=options.tty,
                         master=options.master)
    except (AttachError, DockyardError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
