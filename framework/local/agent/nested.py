"""Nested containers on the embedded agent: debug sessions and the older nested-container calls.

What Mesos's containerizer and I/O switchboard do for the agent's debug API
(src/slave/http.cpp, src/slave/containerizer/mesos/io/switchboard.cpp), on the agent's
asyncio loop:

- a nested container runs where its parent runs (framework/local/agent/nested_entry.py), under a
  ContainerID whose parent is a task's container (as its statuses name it), or the executor's
  when that runs one task, or another nested container;
- a session's (or a TTY container's) output is relayed as ProcessIO records to every output
  stream attached to it, from the first attach on (nothing is read before, so nothing is
  lost); a stream that reads slowly slows the process down, never the agent's memory;
- one input stream at a time feeds its stdin (or its terminal, whose size follows the
  client's window);
- when its main process exits, whatever it left in its cgroup is killed, its output drained
  and its streams closed; a session also ends when its client goes: the nested container is
  destroyed then. Its termination (the raw wait status) is kept for WAIT calls, on disk too
  for as long as its task's executor lives, as Mesos keeps it in its runtime directory;
- a nested container launched outside a session without a TTY writes `stdout`/`stderr` files
  in its own sandbox, `containers/<id>/` in its parent's (created without following a link);
- every nested container is checkpointed when it starts (framework/local/agent/nested_checkpoints.py:
  its cgroup, the pids of its process and of the reaper that waits for it, which writes the
  process's wait status there when it ends), so an agent killed and restarted takes them back
  as Mesos's containerizer does (containerizer.cpp `recover`): one launched outside a session
  and without a TTY runs on and is waited for, killed and removed as before, one that ended
  meanwhile answers WAIT with its real status; a session's (or a TTY's, whose terminal was the
  agent's) is destroyed, its connection being gone, and so is one whose parent is gone.

Every launch and every end is logged with who asked, the task and the container, never what
went through the streams.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import shutil
import signal as signals
import subprocess
import time
import tty as ttys
from pathlib import Path
from typing import AsyncIterator, NoReturn, Protocol

from framework.errors import DockyardError
from framework.local.agent import beneath
from framework.local.agent.model import AgentConfig, ExecutorRecord, FrameworkRecord, TaskRecord
from framework.local.agent.security import principal_json
from framework.local.master.security import executor_user
from framework.local.agent.nested_checkpoints import (
    KILLED, NestedCheckpoints, destroy_saved_all, launches, live, read_status,
)
from framework.local.agent.nested_entry import Entry, EntryError, entry, read_record
from framework.local.agent.nested_model import FORBIDDEN, ApiError, Caller, Nested, Place, Stream
from framework.local.agent.nested_io import (
    Adopted, Child, Reapers, close_fd, drain_outputs, exited, grow_pipe, input_error, inside, kill_pid, nonempty,
    program_name, read_into, remove_group, runtime_error, set_window, signal_pid, started_pid, termination_of,
    termination_of_status, write_fd,
)
from framework.mesos import processio
from framework.mesos.messages import TERMINAL_STATES
from framework.proctree import descendants, start_time
from framework.security.authn import Principal


class Agent(Protocol):
    """What sessions need of the agent (framework/local/agent/core.py) that owns them."""

    config: AgentConfig
    counters: collections.Counter
    frameworks: dict[str, FrameworkRecord]


log = logging.getLogger(__name__)

CHUNK = 1 << 20  # largest read of a process's output: one record
FIRST_READ = 64 << 10  # a stream's reads until one fills it: an interactive session's buffer stays small
MAX_NESTED = 256  # nested containers an agent runs at once
KEPT_TERMINATIONS = 1024  # ended nested containers whose exit WAIT still answers
START_TIMEOUT = 30.0
EXIT_GRACE = 2.0  # after its output ends, how long a process may take to exit before it is killed
INPUT_LINGER = 1.0  # an input stream still open when the output ends is answered this much later
SWITCHBOARD_DISABLED = "I/O switchboard server was disabled for this container"

# What an executor's token may do below its own container with no ACL saying so: the calls
# Mesos's default executor makes (src/authorizer/local/authorizer.cpp, `getObjectApprover`).
EXECUTOR_ACTIONS = frozenset({"launch_nested_containers", "launch_nested_container_sessions",
                              "wait_nested_containers", "kill_nested_containers", "remove_nested_containers",
                              "attach_containers_output"})


class NestedContainers:
    """The agent's nested containers; every method runs on the agent's loop."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.running: dict[str, Nested] = {}
        self.ended: collections.OrderedDict[str, dict] = collections.OrderedDict()  # key -> termination
        self._tasks: set[asyncio.Task] = set()
        self.reapers = Reapers()
        self.checkpoints = NestedCheckpoints(agent.config.work_dir)

    @property
    def work_dir(self) -> Path:
        return self.agent.config.work_dir

    # -- who owns a container ------------------------------------------------------------------
    def owner(self, cid: dict) -> tuple[FrameworkRecord, ExecutorRecord] | None:
        """The live executor whose container is the root of `cid` (slave.cpp `getExecutor`)."""
        root = processio.root_value(cid)
        for framework in self.agent.frameworks.values():
            for executor in framework.executors.values():
                if executor.container_id == root and not executor.terminated:
                    return framework, executor
        return None

    def authorize(self, action: str, caller: Caller, cid: dict, as_user: str | None = None) -> None:
        """Raise 403 unless the ACLs let `caller` do `action` on the container `cid` is in.

        The object is the user of the task the container belongs to (what its nested processes
        run as), else its executor's; a launch asks `<action>_as_user` about the command's user
        (when it names one) and `<action>_under_parent_with_user` about the task's, and both must
        allow it (src/authorizer/local/authorizer.cpp). An executor's token is `_authorize_executor`'s."""
        if isinstance(caller, Principal) and caller.value is None:
            self._authorize_executor(action, caller, cid, as_user)
            return
        principal = caller.value if isinstance(caller, Principal) else caller
        acls = self.agent.config.security.acls
        launch = action.startswith("launch_")
        user = self._user_of(cid["parent"] if launch and "parent" in cid else cid)
        if launch:
            allowed = (acls.authorized(f"{action}_as_user", principal, as_user or user)
                       and acls.authorized(f"{action}_under_parent_with_user", principal, user))
        else:
            allowed = acls.authorized(action, principal, user)
        if not allowed:
            self.agent.counters["nested/forbidden"] += 1
            raise FORBIDDEN

    def _authorize_executor(self, action: str, executor: Principal, cid: dict, as_user: str | None) -> None:
        """An executor's token (its claims, no name) reaches only below its own container: the root
        of `cid` is its `cid` claim. There it may do what Mesos's local authorizer lets an executor
        do without an ACL (`getImplicitExecutorObjectApprover`); anything else is asked of the ACLs
        for an unnamed principal, as Mesos asks them for a subject with claims alone. Unlike Mesos,
        which trusts an executor with any `command.user`, it launches as the task's user only:
        an executor runs with its task's privileges, and no more."""
        if executor.claims.get("cid") != processio.root_value(cid):
            self.agent.counters["nested/forbidden"] += 1
            raise FORBIDDEN
        if action not in EXECUTOR_ACTIONS:
            self.authorize(action, None, cid, as_user)
            return
        if as_user is not None and action.startswith("launch_") and "parent" in cid \
                and as_user != self._user_of(cid["parent"]):
            self.agent.counters["nested/forbidden"] += 1
            raise FORBIDDEN

    def _user_of(self, cid: dict) -> str | None:
        key = processio.container_key(cid)
        known = self.running.get(key)
        if known is not None:
            return known.place.user
        ended = self.ended.get(key) or self._checkpointed(cid)
        if ended is not None:
            return ended.get("user")
        try:
            return self.place(cid).user
        except ApiError:
            owner = self.owner(cid)
            return executor_user(owner[1].info, owner[0].info) if owner else None

    def place(self, parent: dict) -> Place:
        """The task container a nested container under `parent` runs in (400 when there is none)."""
        key = processio.container_key(parent)
        nested = self.running.get(key)
        if nested is not None:
            return nested.place
        owner = self.owner(parent)
        if owner is None:
            raise ApiError(400, f"Parent container {key} does not exist")
        framework, executor = owner
        if "parent" not in parent:  # the executor's own container: the task it runs, if just one
            live = [t for t in executor.tasks.values() if t.state not in TERMINAL_STATES and t.delivered]
            if len(live) != 1:
                raise ApiError(400, f"Container {key} is an executor's, which runs {len(live)} tasks: "
                                    f"launch under a task's container (its TaskStatus.container_status)")
            task = live[0]
            value = (task.container or {}).get("value") if task.container and "parent" in task.container else None
            record = read_record(self.work_dir, value) if value else self._record_by_task(executor, task)
            if record is None:
                raise ApiError(400, f"The task of container {key} has no container of its own yet")
            return Place(framework, executor, task, record, f"{key}.{record['id']}")
        if parent["parent"] != {"value": executor.container_id}:
            raise ApiError(400, f"Parent container {key} does not exist")
        record = read_record(self.work_dir, parent["value"])
        task = executor.tasks.get(str((record or {}).get("task_id", "")))
        if record is None or task is None or task.state in TERMINAL_STATES or \
                not inside(record.get("sandbox"), executor.directory):
            raise ApiError(400, f"Parent container {key} does not exist")
        return Place(framework, executor, task, record, key)

    def _record_by_task(self, executor: ExecutorRecord, task: TaskRecord) -> dict | None:
        """A task's container record found by its sandbox (after an agent restart the statuses that
        named it are gone)."""
        try:
            entries = list(os.scandir(self.work_dir / "containers"))
        except OSError:
            return None
        for item in entries:
            record = read_record(self.work_dir, item.name)
            if record and record.get("task_id") == task.id and inside(record.get("sandbox"), executor.directory):
                return record
        return None

    # -- launching -------------------------------------------------------------------------------
    async def launch(self, cid: dict, command: dict | None, container: dict | None, *, session: bool,
                     principal: Caller) -> Nested | None:
        """Start a nested container; None when one with this id exists already (Mesos's 202)."""
        key = processio.container_key(cid)
        if key in self.running or key in self.ended or self._checkpointed(cid) is not None:
            return None
        if not command:
            raise ApiError(400, "Failed to launch nested container: a command is required")
        container = container or {}
        if container.get("type", "MESOS") != "MESOS":
            raise ApiError(400, "The provided ContainerInfo is not supported")
        if (container.get("mesos") or {}).get("image"):
            raise ApiError(400, "Failed to launch nested container: a nested container runs in its parent's "
                                "root file system; an image of its own is not supported")
        if len(self.running) >= MAX_NESTED:
            raise ApiError(503, f"This agent runs {MAX_NESTED} nested containers already")
        place = self.place(cid["parent"])
        tty = isinstance(container.get("tty_info"), dict)
        nested = Nested(cid, key, place, session, tty, caller_name(principal), program_name(command),
                        switchboard=session or tty)
        self.running[key] = nested
        try:
            await self._start(nested, command, container)
        except BaseException:
            self.running.pop(key, None)
            raise
        log.info("nested container %s launched%s under task %s (executor %s) by %s: %s", key,
                 " as a session" if session else "", place.task.id, place.executor.id, principal or "anonymous",
                 nested.program)
        self.agent.counters["nested/launched"] += 1
        self._spawn_task(self._run(nested))
        return nested

    async def _start(self, nested: Nested, command: dict, container: dict) -> None:
        place = nested.place
        try:  # in a thread: it reads /proc and may wait for a task that is still starting
            plan = await asyncio.to_thread(entry, place.record, self.work_dir, command, tty=nested.tty,
                                           user=command.get("user"))
        except EntryError as error:
            raise ApiError(400, f"Failed to launch nested container: {error}") from None
        nested.entry = plan
        reaped = plan.detached or not nested.switchboard  # under a reaper, which leaves its status in a file
        if reaped:
            nested.status_file = self.checkpoints.status_file(nested.key)
        try:
            await asyncio.to_thread(self._prepare, nested)
        except (OSError, DockyardError) as error:
            await asyncio.to_thread(self.checkpoints.forget_launch, nested.key)
            raise ApiError(400, f"Failed to launch nested container: cannot make its cgroup: {error}") from None
        child: list[int] = []
        ours: list[int] = []
        control = None
        try:
            if nested.tty:
                master, slave = os.openpty()
                ours.append(master)
                child.append(slave)
                if plan.runtime:  # the runtime makes the terminal the command sees: this one carries bytes
                    ttys.setraw(slave)
                size = (container.get("tty_info") or {}).get("window_size") or {}
                if size.get("rows") and size.get("columns"):
                    set_window(master, int(size["rows"]), int(size["columns"]))
                stdio = (slave, slave, slave)
                nested.stdin, nested.outputs = master, [(master, "STDOUT")]
            elif nested.switchboard:
                fds = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
                ours += [fds[0][1], fds[1][0], fds[2][0]]
                child += [fds[0][0], fds[1][1], fds[2][1]]
                stdio = (fds[0][0], fds[1][1], fds[2][1])
                nested.stdin, nested.outputs = fds[0][1], [(fds[1][0], "STDOUT"), (fds[2][0], "STDERR")]
                for fd in (fds[1][0], fds[2][0]):
                    grow_pipe(fd)
            else:
                null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                child.append(null)
                out, err = await asyncio.to_thread(_sandbox_files, place, processio.container_key(nested.cid))
                child += [out, err]
                stdio = (null, out, err)
            for fd in ours:
                os.set_blocking(fd, False)
            if reaped:
                popen, control = self.reapers.start(plan, stdio, nested.status_file)
                nested.process = Child(popen)
            else:
                nested.process = Child(subprocess.Popen(
                    plan.argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], env=plan.env, cwd=plan.cwd,
                    start_new_session=plan.runtime, close_fds=True))
        except BaseException as error:
            for fd in ours:
                close_fd(fd)
            nested.stdin, nested.outputs = None, []
            await asyncio.to_thread(remove_group, plan)
            await asyncio.to_thread(self.checkpoints.forget_launch, nested.key)
            if isinstance(error, OSError):
                raise ApiError(400, f"Failed to launch nested container: {error}") from None
            raise
        finally:
            for fd in child:
                close_fd(fd)
        if control is not None:
            try:
                pid = await asyncio.wait_for(started_pid(control), START_TIMEOUT)
            except asyncio.TimeoutError:
                pid = None
            finally:
                control.close()
            if pid is None:
                await self._not_started(nested)
            nested.main = exited(pid)
            nested.pid = pid
            self.reapers.prepare()
        elif plan.pid_file is not None:
            await self._started(nested, plan)
        else:
            nested.pid = nested.process.pid
        self._save_launch(nested)

    def _prepare(self, nested: Nested) -> None:
        """Its cgroup, and its checkpoint before anything runs in it: an agent killed from here on
        finds the cgroup to empty when it restarts."""
        assert nested.entry is not None
        self._save_launch(nested)
        nested.entry.make_group()
        if nested.entry.pid_file is not None:
            nested.entry.pid_file.parent.mkdir(mode=0o700, exist_ok=True)

    async def _started(self, nested: Nested, plan: Entry) -> None:
        """Wait until the runtime has started the process (its pid file), or say why it could not."""
        assert nested.process is not None and plan.pid_file is not None
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.0005
        while not nonempty(plan.pid_file):
            if nested.process.returncode is not None or time.monotonic() > deadline:
                await self._not_started(nested)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
        try:
            nested.pid = int(plan.pid_file.read_text().split()[0])
            nested.main = exited(nested.pid)
        except (OSError, ValueError, IndexError):
            nested.main = None

    async def _not_started(self, nested: Nested) -> NoReturn:
        """The runtime failed (or took too long): what it said, as a 400, and nothing left of it."""
        assert nested.process is not None
        if nested.process.returncode is None:
            try:
                await asyncio.wait_for(nested.process.wait(), 1.0)  # its message is written by then
            except asyncio.TimeoutError:
                pass
        said = runtime_error(drain_outputs(nested.outputs)) or f"exited with status {nested.process.returncode}"
        await self._teardown(nested)
        await nested.process.wait()
        await asyncio.to_thread(self.checkpoints.forget_launch, nested.key)
        raise ApiError(400, f"Failed to launch nested container: {said}")

    # -- its life --------------------------------------------------------------------------------------
    async def _run(self, nested: Nested) -> None:
        """From the main process's exit to a nested container with nothing left of it."""
        assert nested.process is not None
        pumps = [asyncio.create_task(self._pump(nested, fd, kind)) for fd, kind in nested.outputs]
        if nested.main is not None:
            # The process the runtime started: what it leaves behind (holding the output the
            # runtime relays) would keep the runtime waiting.
            await nested.main
            await self._kill_rest(nested)
        returncode = await nested.process.wait()
        nested.termination = self._termination(nested, returncode)
        await self._kill_rest(nested)  # the container ends with its main process, as a Mesos container does
        if pumps:
            if nested.reading.is_set():
                await asyncio.wait(pumps, timeout=EXIT_GRACE)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        await self._finish(nested)

    async def _pump(self, nested: Nested, fd: int, kind: str) -> None:
        """Relay one output fd to every attached stream, from the first attach on, until EOF.

        Output is read into one buffer, after room for the record's head, so a protobuf record
        is made in place; the next read waits until every stream has handed the record to its
        connection (which copies it). What is not sent yet waits in the pipe, and a slow reader
        slows the process down."""
        await nested.reading.wait()
        buffer = bytearray(processio.MAX_DATA_PREFIX + FIRST_READ)
        while True:
            payload = await read_into(fd, buffer, processio.MAX_DATA_PREFIX)
            if not payload:
                return
            streams = [stream for stream in nested.streams if not stream.closed]
            frames: dict[bool, bytes | memoryview] = {}  # one per encoding some stream wants
            for stream in streams:
                if stream.protobuf not in frames:
                    frames[stream.protobuf] = _in_place(buffer, payload, kind) if stream.protobuf else \
                        processio.data_frame(kind, payload)
                await stream.queue.put(frames[stream.protobuf])
            for stream in streams:
                await stream.queue.join()
            if len(payload) == len(buffer) - processio.MAX_DATA_PREFIX and len(payload) < CHUNK:
                buffer = bytearray(processio.MAX_DATA_PREFIX + CHUNK)  # bulk output: larger reads

    def _termination(self, nested: Nested, returncode: int | None) -> dict | None:
        """How it ended: the status its reaper wrote, else what the process it started says."""
        status = read_status(nested.status_file) if nested.status_file is not None else None
        if status is not None:
            return termination_of_status(status)
        if returncode is None:
            return None
        return termination_of(returncode, nested.status_file is not None or bool(nested.entry and nested.entry.runtime))

    async def _finish(self, nested: Nested) -> None:
        termination = dict(nested.termination or KILLED)
        termination["user"] = nested.place.user
        if not nested.place.executor.terminated:  # kept before any WAIT answers, as Mesos does
            self.checkpoints.save_termination(nested.key, termination)
        self.ended[nested.key] = termination  # before the streams end: their clients WAIT next
        while len(self.ended) > KEPT_TERMINATIONS:
            self.ended.popitem(last=False)
        log.info("nested container %s under task %s (launched by %s) ended after %.1fs: %s", nested.key,
                 nested.place.task.id, nested.principal or "anonymous", time.monotonic() - nested.started,
                 termination.get("message", ""))
        for stream in nested.streams:
            if not stream.closed:
                await stream.queue.put(None)
        nested.ended.set()
        try:
            await self._teardown(nested)
        finally:
            self.running.pop(nested.key, None)

    async def _teardown(self, nested: Nested) -> None:
        """Close our ends, kill what is left in its cgroup and remove the cgroup."""
        for fd in {nested.stdin, *(fd for fd, _ in nested.outputs)} - {None}:
            close_fd(fd)  # type: ignore[arg-type]
        nested.stdin, nested.outputs = None, []
        if nested.process is not None and nested.process.returncode is None:
            kill_pid(nested.process.pid)
        if nested.entry is not None:
            await asyncio.to_thread(remove_group, nested.entry)

    async def _kill_rest(self, nested: Nested) -> None:
        plan = nested.entry
        if plan is not None and plan.group is not None:
            await asyncio.to_thread(plan.kill_group)
        elif nested.process is not None:
            for pid in descendants(nested.process.pid):
                kill_pid(pid)

    # -- calls on a running one ------------------------------------------------------------------
    def get(self, cid: dict) -> Nested:
        """A running nested container to attach to; a task's or an executor's container has no
        switchboard (dockyard launches tasks without a TTY), which Mesos answers with a 500."""
        key = processio.container_key(cid)
        nested = self.running.get(key)
        if nested is not None:
            return nested
        if self.owner(cid) is None:
            raise ApiError(404, f"Container {key} cannot be found")
        try:
            task_container = "parent" not in cid or self.place(cid).key == key
        except ApiError:
            task_container = False
        raise ApiError(500, SWITCHBOARD_DISABLED if task_container else f"Unknown container {key}")

    def attach_output(self, cid: dict, protobuf: bool = False) -> tuple[Nested, Stream]:
        nested = self.get(cid)
        if not nested.switchboard:
            raise ApiError(500, SWITCHBOARD_DISABLED)
        stream = Stream(protobuf)
        if nested.ended.is_set():
            stream.queue.put_nowait(None)
        nested.streams.append(stream)
        nested.reading.set()
        return nested, stream

    async def frames(self, nested: Nested, stream: Stream) -> AsyncIterator[bytes | memoryview]:
        """One output stream's body: DATA records, a HEARTBEAT when quiet, until the output ends.
        Each record taken is marked done once the connection has it (`Stream.queue.join`)."""
        interval = self.agent.config.http_heartbeat_interval
        beat = processio.heartbeat_frame(interval, stream.protobuf)
        taken = 0
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(stream.queue.get(), interval)
                except asyncio.TimeoutError:
                    yield beat
                    continue
                taken = 1
                if frame is None:
                    return
                batch, size, ended = [frame], len(frame), False
                while not stream.queue.empty() and size < CHUNK:  # what else is ready, in one chunk
                    more = stream.queue.get_nowait()
                    taken += 1
                    if more is None:
                        ended = True
                        break
                    batch.append(more)
                    size += len(more)
                yield batch[0] if len(batch) == 1 else b"".join(batch)
                for _ in range(taken):
                    stream.queue.task_done()
                taken = 0
                if ended:
                    return
        finally:
            for _ in range(taken):
                stream.queue.task_done()
            self.detach(nested, stream)

    def detach(self, nested: Nested, stream: Stream) -> None:
        """An output stream's connection ended; a session ends with its own."""
        if stream.closed:
            return
        stream.closed = True
        while not stream.queue.empty():  # a pump waiting for this stream goes on
            stream.queue.get_nowait()
            stream.queue.task_done()
        if stream in nested.streams:
            nested.streams.remove(stream)

    def session_closed(self, nested: Nested) -> None:
        """The client of a session went: destroy its nested container (slave/http.cpp, `readerClosed`)."""
        if nested.session and not nested.ended.is_set() and not nested.destroying:
            log.info("nested container %s: its session's connection closed, destroying it", nested.key)
            self._spawn_task(self.destroy(nested))

    def attach_input(self, cid: dict) -> Nested:
        nested = self.get(cid)
        if not nested.switchboard:
            raise ApiError(500, SWITCHBOARD_DISABLED)
        if nested.input_attached:
            raise ApiError(409, "Multiple input connections are not allowed")
        nested.input_attached = True
        return nested

    async def feed(self, nested: Nested, records: AsyncIterator[dict]) -> tuple[int, str]:
        """An input stream's PROCESS_IO records into the container: (status, body) of the answer.

        Answered when the stream ends, or `INPUT_LINGER` after the container's output has, as
        Mesos's switchboard answers (switchboard.cpp `attachContainerInput`)."""
        consume = asyncio.create_task(self._consume(nested, records))
        ended = asyncio.create_task(nested.ended.wait())
        try:
            done, _ = await asyncio.wait({consume, ended}, return_when=asyncio.FIRST_COMPLETED)
            if consume in done:
                return consume.result()
            finished, _ = await asyncio.wait({consume}, timeout=INPUT_LINGER)
            return consume.result() if finished else (200, "")
        finally:
            for task in (consume, ended):
                task.cancel()
            await asyncio.gather(consume, ended, return_exceptions=True)
            nested.input_attached = False

    async def _consume(self, nested: Nested, records: AsyncIterator[dict]) -> tuple[int, str]:
        async for call in records:
            problem = input_error(call.get("attach_container_input") or {})
            if problem is not None:
                return 400, problem
            message = call["attach_container_input"]["process_io"]
            if message["type"] == "CONTROL":
                control = message["control"]
                if control["type"] == "TTY_INFO":
                    size = control["tty_info"]["window_size"]
                    try:
                        self.resize(nested, int(size.get("rows", 0)), int(size.get("columns", 0)))
                    except (OSError, ValueError) as error:
                        return 400, f"Unable to set the window size: {getattr(error, 'strerror', None) or error}"
                continue  # a heartbeat: its interval is ignored
            payload = processio.decoded_data({"type": "DATA", "data": message["data"]})
            data = payload[1] if payload else b""
            if nested.stdin is None:
                continue  # ended: what is left of the stream is read and dropped
            if not data:
                if not nested.tty:  # EOF; with a TTY the client sends EOT (^D) instead
                    close_fd(nested.stdin)
                    nested.stdin = None
                continue
            try:
                await write_fd(nested.stdin, data)
            except OSError as error:
                return 500, f"Failed writing to stdin: {error.strerror or error}"
        return 200, ""

    def resize(self, nested: Nested, rows: int, columns: int) -> None:
        if nested.stdin is None:
            return
        set_window(nested.stdin, rows, columns)  # ENOTTY without a terminal, as Mesos answers
        if nested.entry is not None and nested.entry.runtime and nested.process is not None:
            signal_pid(nested.process.pid, signals.SIGWINCH)  # the runtime copies the size into the container

    async def wait(self, cid: dict) -> dict:
        key = processio.container_key(cid)
        nested = self.running.get(key)
        if nested is not None:
            await nested.ended.wait()
        termination = self.ended.get(key) or self._checkpointed(cid)
        if termination is None:
            raise ApiError(404, f"Container {key} cannot be found")
        return {k: v for k, v in termination.items() if k != "user"}

    # -- what outlives the agent ----------------------------------------------------------------------
    def _save_launch(self, nested: Nested) -> None:
        """What an agent restarted meanwhile needs to take it back or end it: written before it
        starts (its cgroup) and once it runs (the pids, each with its start time: a pid alone
        may name another process by then)."""
        assert nested.entry is not None
        saved: dict = {"cid": nested.cid, "session": nested.session, "tty": nested.tty, "user": nested.place.user,
                       "principal": nested.principal, "program": nested.program, "entry": nested.entry.saved(),
                       "launched": time.time() - (time.monotonic() - nested.started)}
        if nested.pid is not None:
            saved["pid"] = [nested.pid, start_time(nested.pid)]
        if nested.status_file is not None and isinstance(nested.process, Child):
            saved["reaper"] = [nested.process.pid, start_time(nested.process.pid)]
        self.checkpoints.save_launch(nested.key, saved)

    def _checkpointed(self, cid: dict) -> dict | None:
        """The termination kept for `cid`, while its root container lives (MesosContainerizerProcess::wait)."""
        if "parent" not in cid or self.owner(cid) is None:
            return None
        return self.checkpoints.termination(processio.container_key(cid))

    def kill(self, cid: dict, signal: int) -> None:
        key = processio.container_key(cid)
        nested = self.running.get(key)
        if nested is None or nested.process is None or nested.process.returncode is not None:
            raise ApiError(404, f"Container '{key}' cannot be found (or is already killed)")
        if not 0 < signal < 65:
            raise ApiError(400, f"Invalid signal {signal}")
        if signal == signals.SIGKILL:
            self._spawn_task(self.destroy(nested))
            return
        # A runtime (and a reaper) forwards what it gets to the process; nsenter does not, so its
        # child gets it.
        target = nested.process.pid
        if nested.entry is not None and not nested.entry.runtime:
            target = nested.pid or target
            if nested.place.record.get("pid_namespace"):
                target = next(iter(descendants(target)), target)
        signal_pid(target, signal)

    async def remove(self, cid: dict) -> None:
        key = processio.container_key(cid)
        if key in self.running and not self.running[key].ended.is_set():
            raise ApiError(500, "Nested container has not terminated yet")
        if self.owner(cid) is None:
            raise ApiError(500, f"Parent container {processio.root_value(cid)} does not exist")
        self.ended.pop(key, None)
        self.checkpoints.remove(key)

    async def destroy(self, nested: Nested) -> None:
        """Kill the nested container and everything in it; `_run` then cleans up."""
        if nested.destroying or nested.ended.is_set():
            return
        nested.destroying = True
        await self._kill_rest(nested)
        if nested.process is not None and nested.process.returncode is None:
            kill_pid(nested.process.pid)

    def executor_gone(self, executor: ExecutorRecord) -> None:
        """The executor's containers are gone, and so are the nested ones under them (those a
        previous run of the agent started too), and what was kept of those that ended."""
        for nested in list(self.running.values()):
            if nested.place.executor is executor:
                self._spawn_task(self.destroy(nested))
        if executor.container_id:
            self._drop_root(self.checkpoints.directory(executor.container_id))

    def _drop_root(self, directory: Path) -> None:
        """Destroy what the checkpoints below a root container's directory name, then forget them."""
        left = [saved for _, saved in launches(directory)
                if not isinstance(saved.get("cid"), dict) or processio.container_key(saved["cid"]) not in self.running]
        shutil.rmtree(directory, ignore_errors=True)
        if left:
            log.info("destroying %d nested container(s) a previous run of the agent left under %s, whose "
                     "executor is gone", len(left), directory.name)
            self._spawn_task(asyncio.to_thread(destroy_saved_all, left))

    # -- after an agent restart ---------------------------------------------------------------------------
    async def recover(self) -> None:
        """Take back the nested containers a previous run of the agent left (containerizer.cpp
        `recover`), once the agent has recovered its executors: parents before their children.

        One whose root container's executor is gone, or whose parent is, is destroyed; so is a
        session's, or a TTY's (its terminal was the agent's). One launched outside a session
        whose reaper still runs (the same process: its start time says so) runs on, watched
        again; one that ended meanwhile is given the status its reaper wrote."""
        adopted = ended = destroyed = 0
        for root in self.checkpoints.roots():
            if self.owner({"value": root.name}) is None:
                destroyed += len(launches(root))
                self._drop_root(root)
                continue
            for directory, saved in sorted(launches(root), key=lambda found: len(found[0].parts)):
                outcome = await self._recover_one(directory, saved)
                adopted += outcome == "adopted"
                ended += outcome == "ended"
                destroyed += outcome == "destroyed"
        if adopted or ended or destroyed:
            log.info("recovered nested containers: %d running, %d ended while the agent was down, %d destroyed",
                     adopted, ended, destroyed)

    async def _recover_one(self, directory: Path, saved: dict) -> str:
        cid = saved.get("cid")
        if not isinstance(cid, dict) or "parent" not in cid:
            await asyncio.to_thread(destroy_saved_all, [saved])
            shutil.rmtree(directory, ignore_errors=True)
            return "destroyed"
        key = processio.container_key(cid)
        try:
            place: Place | None = self.place(cid["parent"])
        except ApiError:
            place = None
        reaper = live(saved.get("reaper"))
        status_file = directory / "status"
        if place is not None and reaper is not None and not saved.get("session") and not saved.get("tty"):
            self._adopt(cid, key, place, saved, reaper, status_file)
            return "adopted"
        status = read_status(status_file)  # before the kill: whether it had ended by itself
        await asyncio.to_thread(destroy_saved_all, [saved])
        termination = termination_of_status(status) if status is not None else dict(KILLED)
        if status is None:
            why = ("its parent is gone" if place is None else "its session's connection is gone" if saved.get("session")
                   else "its terminal was the agent's" if saved.get("tty") else "the agent stopped as it started")
            termination["message"] = f"Container destroyed on agent recovery: {why}"
        termination["user"] = place.user if place is not None else saved.get("user")
        self.checkpoints.save_termination(key, termination)  # and the status its reaper wrote as it was killed goes
        log.info("nested container %s %s: %s", key, "ended while the agent was down" if status is not None
                 else "destroyed on recovery", termination["message"])
        return "ended" if status is not None else "destroyed"

    def _adopt(self, cid: dict, key: str, place: Place, saved: dict, reaper: int, status_file: Path) -> None:
        """Watch a running nested container again: its reaper's exit through a pidfd, its status
        from the file the reaper writes."""
        nested = Nested(cid, key, place, False, False, saved.get("principal"), str(saved.get("program") or "?"),
                        switchboard=False)
        nested.entry = Entry.restored(saved.get("entry") or {})
        nested.process = Adopted(reaper)
        nested.pid = live(saved.get("pid"))
        nested.main = exited(nested.pid) if nested.pid is not None else None
        nested.status_file = status_file
        nested.started = time.monotonic() - max(0.0, time.time() - float(saved.get("launched") or time.time()))
        self.running[key] = nested
        log.info("nested container %s under task %s recovered: it runs on", key, place.task.id)
        self._spawn_task(self._run(nested))

    def task_ended(self, executor: ExecutorRecord, task_id: str) -> None:
        for nested in list(self.running.values()):
            if nested.place.executor is executor and nested.place.task.id == task_id:
                self._spawn_task(self.destroy(nested))

    async def close(self) -> None:
        """The agent stops: destroy every nested container and wait for their clean-up."""
        for nested in list(self.running.values()):
            await self.destroy(nested)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10.0)
        await asyncio.to_thread(self.reapers.close)

    def _spawn_task(self, coroutine) -> None:  # noqa: ANN001
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def caller_name(caller: Caller) -> str | None:
    """Who the log says launched a nested container: a principal's name, or an executor token's
    claims as Mesos prints them."""
    if isinstance(caller, Principal):
        return principal_json(caller)
    return caller


def _in_place(buffer: bytearray, payload: memoryview, kind: str) -> memoryview:
    """The protobuf record of `payload`, read into `buffer` after room for its head: the head is
    written just before it, and the record is a view of the buffer."""
    start = processio.MAX_DATA_PREFIX
    head = processio.protobuf_data_prefix(kind, len(payload))
    buffer[start - len(head):start] = head
    return memoryview(buffer)[start - len(head):start + len(payload)]


def _sandbox_files(place: Place, key: str) -> tuple[int, int]:
    """`stdout` and `stderr` of a nested container in its own sandbox, `containers/<id>` of its
    parent's, owned as the parent's sandbox is. The parent's sandbox belongs to the task's
    user, who may put links anywhere in it: nothing is opened through one."""
    executor_dir = place.executor.directory
    relative = os.path.relpath(str(place.record.get("sandbox") or executor_dir), executor_dir)
    root = os.open(executor_dir.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        directory = beneath.open_beneath(root, [executor_dir.name, *beneath.components(relative)],
                                         os.O_PATH | os.O_DIRECTORY)
    finally:
        os.close(root)
    try:
        info = os.fstat(directory)
        owner = (info.st_uid, info.st_gid)
        for name in ("containers", key.rsplit(".", 1)[-1]):
            try:
                os.mkdir(name, 0o750, dir_fd=directory)
                os.chown(name, *owner, dir_fd=directory, follow_symlinks=False)
            except FileExistsError:
                pass
            inner = beneath.open_beneath(directory, [name], os.O_PATH | os.O_DIRECTORY)
            os.close(directory)
            directory = inner
        files = []
        for name in ("stdout", "stderr"):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640,
                         dir_fd=directory)
            os.fchown(fd, *owner)
            files.append(fd)
        return files[0], files[1]
    finally:
        os.close(directory)
