"""A Mesos v1 HTTP executor driver with pymesos's public surface.

Standard library and addict only: an agent starts a fresh executor process for
every executor, so this module is on every task's start-up path.

One daemon thread owns the SUBSCRIBE connection to the agent and runs the
`Executor` callbacks synchronously. Status updates are kept until the agent
answers ACKNOWLEDGED and tasks until one of their updates is; both are re-sent
in the next SUBSCRIBE, so nothing is lost across an agent restart. With
checkpointing the driver re-subscribes (backoff capped at
MESOS_SUBSCRIPTION_BACKOFF_MAX) for up to MESOS_RECOVERY_TIMEOUT; without it a
lost connection means the agent is gone: the driver calls `shutdown` and stops.
Calls go out on a small pool of keep-alive connections; updates of one task are
sent one at a time, in order, while different tasks' updates travel in parallel.

Security, as Mesos's executor library (src/executor/executor.cpp): the agent's
token (`MESOS_EXECUTOR_AUTHENTICATION_TOKEN`) goes out as `Authorization: Bearer`
on SUBSCRIBE and every call, and is taken out of the process environment as soon
as it is read (see `erase_environment`), so no task inherits or reads it; with
`LIBPROCESS_SSL_ENABLED` the agent is spoken to over https (framework/security/tls.py,
standard library only), a handshake per keep-alive connection.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import random
import socket
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from addict import Dict

from framework.errors import DockyardError
from framework.security.tls import Tls, TlsError

from .connection import Connection
from .recordio import Decoder, RecordIOError

log = logging.getLogger(__name__)

EXECUTOR_PATH = "/api/v1/executor"
DRIVER_NOT_STARTED = "DRIVER_NOT_STARTED"
DRIVER_RUNNING = "DRIVER_RUNNING"
DRIVER_ABORTED = "DRIVER_ABORTED"
DRIVER_STOPPED = "DRIVER_STOPPED"

_POST_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
TOKEN_ENV = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"
_POOL_SIZE = 32              # keep-alive connections for calls: at most this many open while running
_IDLE_REUSE_SECONDS = 2.0    # uvicorn closes idle connections after 5 s; never reuse near that

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0,
          "hrs": 3600.0, "days": 86400.0, "weeks": 604800.0}


class ExecutorDriverError(DockyardError, RuntimeError):
    """A call to the agent failed or was refused."""


def parse_duration(text: str) -> float:
    """Seconds in a Mesos duration such as `5secs`, `15mins`, `100ms`."""
    text = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * _UNITS[unit]
    raise ValueError(f"not a Mesos duration: {text!r}")


@dataclass(frozen=True)
class ExecutorEnvironment:
    """What the agent tells its executor through `MESOS_*` variables, read once."""

    agent_endpoint: str
    framework_id: str
    executor_id: str
    directory: str | None
    sandbox: str | None
    agent_id: str | None
    checkpoint: bool
    recovery_timeout: float
    subscription_backoff_max: float
    shutdown_grace_period: float

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> "ExecutorEnvironment":
        env = os.environ if env is None else env
        missing = [name for name in ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID")
                   if not env.get(name)]
        if missing:
            raise ExecutorDriverError(f"not started by a Mesos agent: {', '.join(missing)} unset")
        directory = env.get("MESOS_DIRECTORY") or None
        return cls(
            agent_endpoint=env["MESOS_AGENT_ENDPOINT"],
            framework_id=env["MESOS_FRAMEWORK_ID"],
            executor_id=env["MESOS_EXECUTOR_ID"],
            directory=directory,
            sandbox=env.get("MESOS_SANDBOX") or directory,
            agent_id=env.get("MESOS_SLAVE_ID") or env.get("MESOS_AGENT_ID") or None,
            # The agent writes "1"/"0"; pymesos's bool("0") == True is a bug we do not copy.
            checkpoint=env.get("MESOS_CHECKPOINT", "0").strip().lower() in ("1", "true", "yes"),
            recovery_timeout=parse_duration(env.get("MESOS_RECOVERY_TIMEOUT") or "15mins"),
            subscription_backoff_max=parse_duration(env.get("MESOS_SUBSCRIPTION_BACKOFF_MAX") or "2secs"),
            shutdown_grace_period=parse_duration(env.get("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD") or "5secs"),
        )


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def take_token(env: Mapping[str, str] | None = None) -> str | None:
    """The agent's token for this executor; erased from the process environment when read from it."""
    source = os.environ if env is None else env
    token = source.get(TOKEN_ENV) or None
    if source is os.environ and TOKEN_ENV in os.environ:
        erase_environment(TOKEN_ENV)
    return token


def erase_environment(name: str) -> None:
    """Remove `name` from this process's environment, including the copy the kernel shows.

    Deleting it from `os.environ` unsets it in libc's `environ` too (Mesos's
    executor library does that much with `os::eraseenv`), so no process started
    from here inherits it. That is not enough: `/proc/<pid>/environ` shows the
    block the kernel wrote on the stack at exec, which unsetenv never changes,
    and a task running as the executor's user (or root) can read that file. So
    first the value's bytes are overwritten with NULs in place: libc's `environ`
    array points at those very bytes (ctypes reads it; a process-private write).
    If `/proc/self/environ` still shows a value (the variable was set again after
    exec, so the array pointed at a copy), the block itself, between the stack
    addresses `/proc/self/stat` gives, is scrubbed the same way. The name stays
    visible there, with an empty value.
    """
    if name in os.environ:
        encoded = os.fsencode(name)
        try:
            _wipe_through_environ(encoded)
            if _kernel_shows(encoded):
                _wipe_stack_block(encoded)
        except (OSError, ValueError, AttributeError) as error:  # no libc, no /proc: the unset below still holds
            log.warning("could not scrub %s from the process environment block: %s", name, error)
    os.environ.pop(name, None)
    try:  # the interpreter's own copy of the initial environment
        import posix

        posix.environ.pop(os.fsencode(name), None)
    except ImportError:
        pass


def _wipe_through_environ(name: bytes) -> None:
    import ctypes

    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
    prefix = name + b"="
    index = 0
    while environ[index]:
        address = environ[index]
        entry = ctypes.string_at(address)
        if entry.startswith(prefix) and len(entry) > len(prefix):
            ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
        index += 1


def _entries_with_values(block: bytes, name: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the non-empty values of `name=` entries in a NUL-separated block."""
    prefix = name + b"="
    found = []
    offset = 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix) and len(entry) > len(prefix):
            found.append((offset + len(prefix), len(entry) - len(prefix)))
        offset += len(entry) + 1
    return found


def _kernel_shows(name: bytes) -> bool:
    with open("/proc/self/environ", "rb") as handle:
        return bool(_entries_with_values(handle.read(), name))


def _wipe_stack_block(name: bytes) -> None:
    import ctypes

    with open("/proc/self/stat", "rb") as handle:
        stat = handle.read()
    fields = stat[stat.rfind(b")") + 2:].split()
    start, end = int(fields[47]), int(fields[48])  # env_start, env_end (proc(5), fields 50 and 51)
    for offset, length in _entries_with_values(ctypes.string_at(start, end - start), name):
        ctypes.memset(start + offset, 0, length)


class MesosExecutorDriver:
    """Drive an `Executor` against the agent that started this process."""

    def __init__(self, executor: Any, use_addict: bool = True, timeout: float = 60.0,
                 http_timeout: float = 10.0, *, env: Mapping[str, str] | None = None) -> None:
        """`timeout` bounds the first subscription (the agent gives up after ~1 min too)."""
        self.executor = executor
        self.env = ExecutorEnvironment.from_environ(env)
        self._token = take_token(env)  # before any thread or task exists: nothing inherits it
        try:
            self._tls = Tls.resolve_client(os.environ if env is None else env)
            self._ssl = self._tls.client_context() if self._tls is not None else None
        except TlsError as error:
            raise ExecutorDriverError(f"TLS settings from the agent are unusable: {error}") from None
        self._headers = dict(_POST_HEADERS)
        if self._token:
            self._headers["Authorization"] = f"Bearer {self._token}"
        self.framework_id = {"value": self.env.framework_id}
        self.executor_id = {"value": self.env.executor_id}
        self.checkpoint = self.env.checkpoint
        self.grace_shutdown_period = self.env.shutdown_grace_period
        self.executor_info: Any = None
        self.container_id: dict | None = None  # from SUBSCRIBED: the ContainerID the agent runs us in
        self.framework_info: Any = None
        self.agent_info: Any = None
        self.kill_policies: dict[str, Any] = {}   # task id -> KillPolicy sent with KILL
        self._wrap: Callable[[Any], Any] = Dict if use_addict else (lambda value: value)
        self._registration_timeout = timeout
        self._http_timeout = http_timeout
        host, _, port = self.env.agent_endpoint.rpartition(":")
        self._host, self._port = host or self.env.agent_endpoint, int(port or 5051)

        self._lock = threading.RLock()
        self._state_changed = threading.Condition(self._lock)
        self._pool_lock = threading.Lock()
        self._pool_free = threading.Condition(self._pool_lock)  # a connection came back (or went)
        self._pool: list[tuple[Connection, float]] = []   # idle, with idle-since
        self._open = 0                        # connections idle in the pool or out on a call
        self._lanes: dict[str, list] = {}     # task id -> [Lock, users]: per-task update order
        self._wakeup = threading.Event()
        self._status = DRIVER_NOT_STARTED
        self._subscribed = False
        self._sock: socket.socket | None = None
        self._tasks: dict[str, dict] = {}     # unacknowledged tasks, by task id
        self._updates: dict[str, dict] = {}   # unacknowledged status updates, by uuid
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._subscribed

    @property
    def status(self) -> str:
        return self._status

    def unacknowledged_updates(self) -> list[dict]:
        with self._lock:
            return [dict(status) for status in self._updates.values()]

    def start(self) -> str:
        with self._lock:
            if self._status != DRIVER_NOT_STARTED:
                return self._status
            self._status = DRIVER_RUNNING
        self._thread = threading.Thread(target=self._run, name="mesos-executor-stream", daemon=True)
        self._thread.start()
        return DRIVER_RUNNING

    def stop(self) -> str:
        return self._finish(DRIVER_STOPPED)

    def abort(self) -> str:
        return self._finish(DRIVER_ABORTED)

    def join(self, timeout: float | None = None) -> str:
        with self._state_changed:
            self._state_changed.wait_for(lambda: self._status != DRIVER_RUNNING, timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout if timeout is not None else 5.0)
        return self._status

    def run(self) -> str:
        self.start()
        return self.join()

    def _running(self) -> bool:
        return self._status == DRIVER_RUNNING

    def _finish(self, status: str) -> str:
        with self._lock:
            if self._status not in (DRIVER_RUNNING, DRIVER_NOT_STARTED):
                return self._status
            self._status = status
            self._subscribed = False
            sock = self._sock
            self._state_changed.notify_all()
        self._wakeup.set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._close_pool()
        return status

    # -- calls ----------------------------------------------------------------

    def sendStatusUpdate(self, status: Any) -> None:
        """UPDATE; fills `timestamp`, `uuid` and `source` when missing (in `status` too).

        The update is kept until the agent acknowledges it. While disconnected
        it is not sent now but travels in the next SUBSCRIBE.
        """
        if "timestamp" not in status:
            status["timestamp"] = time.time()
        if "uuid" not in status:
            status["uuid"] = base64.b64encode(uuidlib.uuid4().bytes).decode()
        if "source" not in status:
            status["source"] = "SOURCE_EXECUTOR"
        update = _plain(status)
        update.setdefault("executor_id", self.executor_id)
        with self._task_lane(update.get("task_id", {}).get("value", "")):
            with self._lock:
                self._updates[update["uuid"]] = update
                subscribed = self._subscribed
            if not subscribed:
                log.info("not subscribed: update %s for %s kept for the next SUBSCRIBE",
                         update.get("state"), update.get("task_id", {}).get("value"))
                return
            try:
                self._post({"type": "UPDATE", "update": {"status": update}})
            except ExecutorDriverError as error:
                if getattr(error, "status", 0) == 400:
                    with self._lock:
                        self._updates.pop(update["uuid"], None)
                    raise
                log.warning("update kept for re-sending: %s", error)

    def sendFrameworkMessage(self, data: str | bytes) -> None:
        """MESSAGE to the scheduler; `data` is base64 text (bytes are encoded for you)."""
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode()
        self._post({"type": "MESSAGE", "message": {"data": data}})

    def _post(self, body: dict) -> None:
        """POST one call on a pooled keep-alive connection.

        A fresh TCP connection per update (and one lock around all of them)
        capped a warm executor at ~75 updates/s; with the pool, calls of
        different tasks go out in parallel, on at most _POOL_SIZE connections. A
        reused connection the agent has meanwhile closed fails at once: that call
        is retried once on a new one (the agent and master deduplicate UPDATEs by uuid).
        """
        body = dict(body, executor_id=self.executor_id, framework_id=self.framework_id)
        payload = json.dumps(body).encode()
        while True:
            conn, reused = self._checkout()
            try:
                answer = conn.post(EXECUTOR_PATH, payload, self._headers)
            except (OSError, http.client.HTTPException) as error:
                self._discard(conn)
                if reused:
                    continue
                raise ExecutorDriverError(f"{body['type']} to agent failed: {error}") from error
            self._checkin(conn, answer.will_close)
            break
        if answer.status not in (200, 202):
            error = ExecutorDriverError(f"{body['type']} refused by agent: {answer.status} {answer.text.strip()[:500]}")
            error.status = answer.status  # type: ignore[attr-defined]
            raise error

    def _checkout(self) -> tuple[Connection, bool]:
        """An idle pooled connection (reused=True) or a new one.

        With _POOL_SIZE connections already out, a call waits for one to come back
        rather than open another: under a burst (hundreds of tasks updating at once)
        the extra connections were closed again on their return, one handshake each
        (with TLS, ~1 ms of CPU here and as much in the agent) for a single call.
        """
        deadline: float | None = None
        with self._pool_lock:
            while True:
                now = time.monotonic()
                while self._pool:
                    conn, idle_since = self._pool.pop()
                    if now - idle_since < _IDLE_REUSE_SECONDS:
                        return conn, True
                    self._open -= 1
                    conn.close()  # the agent may be closing it right now: do not race it
                if self._open < _POOL_SIZE or self._status != DRIVER_RUNNING:
                    break
                if deadline is None:
                    deadline = now + self._http_timeout
                elif now >= deadline:
                    break  # none came back in time: open one anyway
                self._pool_free.wait(deadline - now)
            self._open += 1
        return Connection(self._host, self._port, self._http_timeout, self._http_timeout, tls=self._ssl), False

    def _checkin(self, conn: Connection, will_close: bool) -> None:
        with self._pool_lock:
            self._pool_free.notify()
            if not will_close and len(self._pool) < _POOL_SIZE and self._status == DRIVER_RUNNING:
                self._pool.append((conn, time.monotonic()))
                return
            self._open -= 1
        conn.close()

    def _discard(self, conn: Connection) -> None:
        """A connection that failed: closed, and its place given to a waiting call."""
        conn.close()
        with self._pool_lock:
            self._open -= 1
            self._pool_free.notify()

    def _close_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, []
            self._open -= len(pool)
            self._pool_free.notify_all()
        for conn, _ in pool:
            conn.close()

    @contextlib.contextmanager
    def _task_lane(self, task_id: str) -> Iterator[None]:
        """Serialise the updates of one task (they must reach the agent in order), not all."""
        with self._lock:
            lane = self._lanes.get(task_id)
            if lane is None:
                lane = self._lanes[task_id] = [threading.Lock(), 0]
            lane[1] += 1
        try:
            with lane[0]:
                yield
        finally:
            with self._lock:
                lane[1] -= 1
                if lane[1] == 0:
                    del self._lanes[task_id]

    # -- the stream thread ------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        self._wakeup.wait(seconds)
        self._wakeup.clear()

    def _run(self) -> None:
        attempt = 0
        started = time.monotonic()
        disconnected_at: float | None = None
        ever_subscribed = False
        while self._running():
            outcome = self._subscribe()
            if not self._running():
                break
            if outcome == "fatal":
                self._shutdown_and_stop(DRIVER_ABORTED)
                break
            if outcome == "ended":
                ever_subscribed = True
                self._callback("disconnected")
                if not self.checkpoint:
                    log.warning("lost the agent and not checkpointing: shutting down")
                    self._shutdown_and_stop(DRIVER_STOPPED)
                    break
                disconnected_at = time.monotonic()
                attempt = 0
            now = time.monotonic()
            if ever_subscribed and disconnected_at is not None:
                if now - disconnected_at > self.env.recovery_timeout:
                    log.error("agent did not come back within %.0fs: shutting down",
                              self.env.recovery_timeout)
                    self._shutdown_and_stop(DRIVER_STOPPED)
                    break
            elif not ever_subscribed and now - started > self._registration_timeout:
                self._callback("error", f"could not subscribe with the agent at "
                                        f"{self.env.agent_endpoint} within {self._registration_timeout:.0f}s")
                self._shutdown_and_stop(DRIVER_ABORTED)
                break
            ceiling = min(self.env.subscription_backoff_max, 0.05 * (2 ** min(attempt, 20)))
            attempt += 1
            self._sleep(random.uniform(ceiling / 2, ceiling))

    def _shutdown_and_stop(self, status: str) -> None:
        self._callback("shutdown")
        self._finish(status)

    def _subscribe(self) -> str:
        with self._lock:
            body = {
                "type": "SUBSCRIBE",
                "framework_id": self.framework_id,
                "executor_id": self.executor_id,
                "subscribe": {
                    "unacknowledged_tasks": list(self._tasks.values()),
                    "unacknowledged_updates": [{"status": s} for s in self._updates.values()],
                },
            }
        conn: http.client.HTTPConnection
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._http_timeout,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._http_timeout)
        subscribed = False
        try:
            conn.request("POST", EXECUTOR_PATH, body=json.dumps(body).encode(), headers=self._headers)
            response = conn.getresponse()
            if response.status != 200:
                text = response.read().decode(errors="replace").strip()[:500]
                if 400 <= response.status < 500 and response.status != 408:
                    message = f"SUBSCRIBE refused by agent: {response.status} {text}"
                    log.error("%s", message)
                    self._callback("error", message)
                    return "fatal"
                log.info("SUBSCRIBE answered %s %s; retrying", response.status, text)
                return "retry"
            sock = conn.sock
            if sock is not None:
                sock.settimeout(None)  # agent heartbeats are 30 min apart; EOF tells us it died
            with self._lock:
                self._sock = sock
            if not self._running():
                return "ended"
            decoder = Decoder()
            while self._running():
                chunk = response.read1(65536)
                if not chunk:
                    break
                for record in decoder.feed(chunk):
                    if self._dispatch(json.loads(record)):
                        subscribed = True
                    if not self._running():
                        break
        except (OSError, http.client.HTTPException, RecordIOError, ValueError) as error:
            if self._running():
                log.warning("agent connection failed: %s", error)
        finally:
            with self._lock:
                self._sock = None
                self._subscribed = False
            conn.close()
        return "ended" if subscribed else "retry"

    # -- events -------------------------------------------------------------------

    def _callback(self, name: str, *args: Any) -> None:
        try:
            getattr(self.executor, name)(self, *args)
        except Exception:
            log.exception("Executor.%s raised", name)

    def _dispatch(self, event: dict) -> bool:
        """Handle one event; True when it was SUBSCRIBED."""
        kind = event.get("type")
        payload = event.get(kind.lower(), {}) if isinstance(kind, str) else {}
        wrap = self._wrap
        if kind == "SUBSCRIBED":
            self._on_subscribed(payload)
            return True
        if kind == "LAUNCH":
            task = payload.get("task", {})
            with self._lock:
                self._tasks[task.get("task_id", {}).get("value", "")] = task
            self._callback("launchTask", wrap(task))
        elif kind == "LAUNCH_GROUP":
            tasks = payload.get("task_group", {}).get("tasks", [])
            with self._lock:
                for task in tasks:
                    self._tasks[task.get("task_id", {}).get("value", "")] = task
            self._callback("launchTaskGroup", [wrap(task) for task in tasks])
        elif kind == "KILL":
            task_id = payload.get("task_id", {})
            if payload.get("kill_policy"):
                self.kill_policies[task_id.get("value", "")] = wrap(payload["kill_policy"])
            self._callback("killTask", wrap(task_id))
        elif kind == "ACKNOWLEDGED":
            with self._lock:
                self._updates.pop(payload.get("uuid", ""), None)
                self._tasks.pop(payload.get("task_id", {}).get("value", ""), None)
        elif kind == "MESSAGE":
            self._callback("frameworkMessage", payload.get("data", ""))
        elif kind == "ERROR":
            self._callback("error", payload.get("message", "") or event.get("message", ""))
        elif kind == "SHUTDOWN":
            log.info("agent asked for shutdown")
            self._shutdown_and_stop(DRIVER_STOPPED)
        elif kind != "HEARTBEAT":
            log.warning("ignoring unknown event %r", kind)
        return False

    def _on_subscribed(self, payload: dict) -> None:
        executor_info = payload.get("executor_info", {})
        framework_info = payload.get("framework_info", {})
        agent_info = payload.get("agent_info", {})
        if executor_info.get("executor_id", self.executor_id) != self.executor_id or \
                framework_info.get("id", self.framework_id) != self.framework_id:
            log.error("SUBSCRIBED for another executor: %s", payload)
        first = self.executor_info is None
        self.container_id = payload.get("container_id")  # the executor's own ContainerID
        self.executor_info = self._wrap(executor_info)
        self.framework_info = self._wrap(framework_info)
        self.agent_info = self._wrap(agent_info)
        with self._lock:
            self._subscribed = True
        if first:
            self._callback("registered", self._wrap(executor_info), self._wrap(framework_info),
                           self._wrap(agent_info))
        else:
            self._callback("reregistered", self._wrap(agent_info))
