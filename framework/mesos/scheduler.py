"""A Mesos v1 HTTP scheduler driver with pymesos's public surface.

One daemon thread owns the SUBSCRIBE connection: it posts SUBSCRIBE, reads the
RecordIO event stream and runs the `Scheduler` callbacks synchronously (as
pymesos does), so a callback that blocks stalls the stream. Every other call is
a plain POST on a separate pool of keep-alive connections (standard library:
calls are on every task's path), carrying the `Mesos-Stream-Id` of the current
subscription.

Behaviour worth knowing:

* **Calls made while not subscribed are queued**, not dropped: before the first
  SUBSCRIBED, and between a lost stream and the next SUBSCRIBED, a call is kept
  (in order) and sent right after the next SUBSCRIBED, with the framework id
  filled in then. Errors of queued calls are logged, since the caller has gone.
  While subscribed, calls are sent at once and a refusal raises `MesosError`.
  Calls after `stop()`/`abort()` raise `MesosError`.
* **Dead streams**: no byte for `heartbeat_factor` x the heartbeat interval
  (15 s unless overridden) closes the stream; the driver re-subscribes.
* **Reconnection**: capped exponential backoff with jitter; 307 answers are
  followed to the leader (`Location: //host:port/path`); 503 is retried; a zk://
  master URI is followed through `MasterDetector`.
* **Failover**: a `framework` with `id` set re-subscribes with it; after the
  first SUBSCRIBED the driver keeps the id and re-subscribes with it.
  `failover_timeout` defaults to 100 s when absent (as pymesos does); Mesos's
  own default of 0 would tear every task down on the first disconnect.
* `stop()` sends TEARDOWN (when subscribed) unless `failover=True`;
  `abort()` only disconnects (the framework stays for its failover timeout).
* An ERROR event calls `Scheduler.error`, then aborts the driver; so does a 4xx
  answer to SUBSCRIBE (the framework info is wrong and retrying will not help).
* Exceptions raised by callbacks are logged and the stream goes on.
* **Authentication and TLS**: `principal` and `secret` put HTTP Basic on SUBSCRIBE
  and every call. `ssl_context` (a client context: our CA, and our certificate for
  mutual TLS) makes both the stream and the calls HTTPS with it; a master URI that
  names its scheme (`http://`, `https://`) keeps it, as a bare `host:port` or a
  zk:// leader follows the context (docs/security.md).
"""
from __future__ import annotations

import base64
import collections
import getpass
import http.client
import json
import logging
import random
import socket
import ssl
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx
from addict import Dict

from framework.errors import MesosError

from .connection import Connection
from .detector import MasterDetector
from .recordio import Decoder, RecordIOError

TEARDOWN_RESUBSCRIBE_WAIT = 5.0  # seconds stop() waits for a live subscription to send TEARDOWN

log = logging.getLogger(__name__)

DAY = 86400.0
DEFAULT_HEARTBEAT_INTERVAL = 15.0
SCHEDULER_PATH = "/api/v1/scheduler"
MAX_REDIRECTS = 5

DRIVER_NOT_STARTED = "DRIVER_NOT_STARTED"
DRIVER_RUNNING = "DRIVER_RUNNING"
DRIVER_ABORTED = "DRIVER_ABORTED"
DRIVER_STOPPED = "DRIVER_STOPPED"

# Outcomes of one SUBSCRIBE attempt.
_REDIRECTED, _RETRY, _ENDED, _FATAL = "redirected", "retry", "ended", "fatal"


def _plain(obj: Any) -> Any:
    """A JSON-only copy (addict Dicts, tuples -> dicts, lists)."""
    return json.loads(json.dumps(obj))


def _id_list(ids: Any) -> list[Any]:
    """pymesos accepts one `{"value": ...}` or a list of them."""
    if isinstance(ids, dict):
        return [_plain(ids)]
    return [_plain(i) for i in ids]


class _CallPool:
    """Keep-alive connections for the driver's calls, reused across threads.

    Calls are small POSTs, two per task (ACKs) under load: httpx spent ~1.2 ms of CPU
    on each, http.client ~0.19 ms, `Connection` ~0.04 ms, and the scheduler is
    CPU-bound on them. A reused connection the master has meanwhile closed fails
    before any answer: that call is retried once on a fresh connection. Idle
    connections older than `idle_reuse` are not reused (uvicorn closes them after 5 s).
    """

    def __init__(self, scheme: str, auth: tuple[str, str] | None, timeout: float, connect_timeout: float,
                 size: int = 16, idle_reuse: float = 2.0, context: ssl.SSLContext | None = None) -> None:
        self._tls = (context or ssl.create_default_context()) if scheme == "https" else None
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._size = size
        self._idle_reuse = idle_reuse
        self._auth = ("Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()) if auth else None
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[Connection, float]]] = {}
        self._closed = False

    def post(self, address: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """(status, body text) of one POST to `address` (host:port)."""
        if self._auth:
            headers = dict(headers, Authorization=self._auth)
        while True:
            conn, reused = self._checkout(address)
            try:
                answer = conn.post(path, body, headers)
            except (OSError, http.client.HTTPException):
                conn.close()
                if reused:
                    continue
                raise
            self._checkin(address, conn, answer.will_close)
            return answer.status, answer.text

    def _checkout(self, address: str) -> tuple[Connection, bool]:
        now = time.monotonic()
        with self._lock:
            if self._closed:
                raise RuntimeError("the driver's connection pool is closed")
            idle = self._idle.get(address, [])
            while idle:
                conn, since = idle.pop()
                if now - since < self._idle_reuse:
                    return conn, True
                conn.close()
        host, _, port = address.rpartition(":")
        default = 443 if self._tls else 80
        return Connection((host or address).strip("[]"), int(port) if port.isdigit() else default,
                          self._timeout, self._connect_timeout, self._tls), False

    def _checkin(self, address: str, conn: Connection, will_close: bool) -> None:
        with self._lock:
            idle = self._idle.setdefault(address, [])
            if not will_close and not self._closed and len(idle) < self._size:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for conn, _ in idle:
                conn.close()


class MesosSchedulerDriver:
    """Drive a `Scheduler` against a Mesos (or dockyard) master over the v1 HTTP API."""

    def __init__(
        self,
        sched: Any,
        framework: Any,
        master_uri: str,
        use_addict: bool = True,
        implicit_acknowledgements: bool = True,
        principal: str | None = None,
        secret: str | None = None,
        failover: bool = False,
        timeout: float = DAY,
        *,
        heartbeat_factor: float = 5.0,
        heartbeat_interval: float | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 15.0,
        call_timeout: float = 75.0,
        connect_timeout: float = 10.0,
        max_queued_calls: int = 10000,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Positional parameters are pymesos's (`use_addict` defaults to True here).

        `master_uri`: `host[:port]`, `http(s)://host:port` or `zk://hosts/path`.
        `timeout`: give up (error + abort) after this long without a subscription.
        `heartbeat_factor` x `heartbeat_interval` (default: what SUBSCRIBED announces,
        else 15 s) without a byte on the stream declares it dead.
        `backoff_initial`/`backoff_max`: re-subscription delays (doubling, jittered).
        `ssl_context`: speak HTTPS to the master with it (verify, present our certificate).
        """
        self.sched = sched
        self.master_uri = master_uri
        self.implicit_acknowledgements = implicit_acknowledgements
        self._wrap: Callable[[Any], Any] = Dict if use_addict else (lambda value: value)
        self._framework: dict = _plain(framework)
        self._framework.setdefault("user", getpass.getuser())
        self._framework.setdefault("failover_timeout", 100.0)
        self._failover = failover
        self._timeout = timeout
        self._heartbeat_factor = heartbeat_factor
        self._heartbeat_override = heartbeat_interval
        self._announced_interval: float | None = None
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._max_queued = max_queued_calls
        self._auth = (principal, secret) if principal is not None and secret is not None else None
        if master_uri.startswith(("http://", "https://")):
            self._scheme = master_uri.split("://", 1)[0]
        else:
            self._scheme = "https" if ssl_context is not None else "http"

        self._lock = threading.RLock()
        self._state_changed = threading.Condition(self._lock)
        self._wakeup = threading.Event()
        self._status = DRIVER_NOT_STARTED
        self._stream_id: str | None = None
        self._master: str | None = None      # the master we are subscribed to
        self._redirect: str | None = None    # leader named by the last 307
        self._sock: socket.socket | None = None
        self._last_activity = time.monotonic()  # last byte read, or end of the last callback
        self._busy = False                        # a callback is running: not reading is fine
        self._halted = threading.Event()
        self._inflight = 0                        # calls being posted (close waits for them)
        self._queue: collections.deque[dict] = collections.deque()
        self._thread: threading.Thread | None = None
        self._detector: MasterDetector | None = None
        self._calls = _CallPool(self._scheme, self._auth, call_timeout, connect_timeout, context=ssl_context)
        self._streams = httpx.Client(auth=self._auth, follow_redirects=False,
                                     verify=ssl_context if ssl_context is not None else True)

    # -- state --------------------------------------------------------------

    @property
    def framework_id(self) -> str | None:
        fid = self._framework.get("id")
        return fid.get("value") if fid else None

    @property
    def framework(self) -> dict:
        """The FrameworkInfo sent on SUBSCRIBE (with the id once known)."""
        with self._lock:
            return _plain(self._framework)

    @property
    def connected(self) -> bool:
        """True while subscribed (a stream id is held)."""
        with self._lock:
            return self._stream_id is not None

    @property
    def master(self) -> str | None:
        """"host:port" of the master currently subscribed to."""
        with self._lock:
            return self._master

    @property
    def stream_id(self) -> str | None:
        with self._lock:
            return self._stream_id

    @property
    def status(self) -> str:
        return self._status

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> str:
        """Start subscribing in the background; returns the driver status."""
        with self._lock:
            if self._status != DRIVER_NOT_STARTED:
                return self._status
            self._status = DRIVER_RUNNING
        self._detector = MasterDetector(self.master_uri)
        self._detector.on_change(self._on_leader_change)
        self._thread = threading.Thread(target=self._run, name="mesos-scheduler-stream", daemon=True)
        self._thread.start()
        threading.Thread(target=self._watch, name="mesos-scheduler-watchdog", daemon=True).start()
        return DRIVER_RUNNING

    def stop(self, failover: bool = False) -> str:
        """Stop the driver; without `failover` the framework is torn down first.

        TEARDOWN needs a live subscription: stopped while disconnected, the
        framework is left to the master's failover timeout instead.
        """
        failover = failover or self._failover
        if not failover:
            # A stream being re-established (a missed heartbeat on a busy machine) must not
            # turn a teardown into a silent failover: wait a little for the subscription.
            deadline = time.monotonic() + TEARDOWN_RESUBSCRIBE_WAIT
            while self._stream_id is None and self._status == DRIVER_RUNNING and time.monotonic() < deadline:
                time.sleep(0.05)
        with self._lock:
            if self._status != DRIVER_RUNNING:
                return self._status
            self._status = DRIVER_STOPPED
            stream_id, master = self._stream_id, self._master
            self._state_changed.notify_all()
        if not failover and stream_id is not None and master is not None:
            try:
                self._post(self._stamp({"type": "TEARDOWN"}), stream_id, master)
            except MesosError as error:
                log.warning("TEARDOWN failed: %s", error)
            with self._lock:
                self._framework.pop("id", None)
        self._shutdown_threads()
        return DRIVER_STOPPED

    def abort(self) -> str:
        """Disconnect without teardown; no more callbacks after this returns."""
        with self._lock:
            if self._status != DRIVER_RUNNING:
                return self._status
            self._status = DRIVER_ABORTED
            self._state_changed.notify_all()
        self._shutdown_threads()
        return DRIVER_ABORTED

    def join(self, timeout: float | None = None) -> str:
        """Block until the driver is stopped or aborted; returns the status."""
        with self._state_changed:
            self._state_changed.wait_for(lambda: self._status not in (DRIVER_RUNNING,), timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout if timeout is not None else 5.0)
        return self._status

    def run(self) -> str:
        self.start()
        return self.join()

    def _running(self) -> bool:
        return self._status == DRIVER_RUNNING

    def _shutdown_threads(self) -> None:
        with self._lock:
            dropped = len(self._queue)
            self._queue.clear()
            self._stream_id = None
        if dropped:
            log.warning("driver stopped with %d queued calls unsent", dropped)
        self._wakeup.set()
        self._halted.set()
        self._interrupt_stream()
        if self._detector is not None:
            self._detector.close()

    # -- calls ----------------------------------------------------------------

    def acceptOffers(self, offer_ids: Any, operations: list, filters: Any = None) -> None:
        if not operations:
            return self.declineOffer(offer_ids, filters)
        accept: dict = {"offer_ids": _id_list(offer_ids), "operations": _plain(operations)}
        if filters is not None:
            accept["filters"] = _plain(filters)
        self._call({"type": "ACCEPT", "accept": accept})

    def launchTasks(self, offer_ids: Any, tasks: list, filters: Any = None) -> None:
        if not tasks:
            return self.declineOffer(offer_ids, filters)
        self.acceptOffers(offer_ids, [{"type": "LAUNCH", "launch": {"task_infos": _plain(tasks)}}], filters)

    def launchTaskGroup(self, offer_ids: Any, executor: Any, tasks: list, filters: Any = None) -> None:
        """ACCEPT with one LAUNCH_GROUP (dockyard extension; pymesos needs acceptOffers)."""
        executor = _plain(executor)
        if self.framework_id and "framework_id" not in executor:
            executor["framework_id"] = {"value": self.framework_id}
        operation = {"type": "LAUNCH_GROUP",
                     "launch_group": {"executor": executor, "task_group": {"tasks": _plain(tasks)}}}
        self.acceptOffers(offer_ids, [operation], filters)

    def declineOffer(self, offer_ids: Any, filters: Any = None) -> None:
        decline: dict = {"offer_ids": _id_list(offer_ids)}
        if filters is not None:
            decline["filters"] = _plain(filters)
        self._call({"type": "DECLINE", "decline": decline})

    def acceptInverseOffers(self, offer_ids: Any, filters: Any = None) -> None:
        body: dict = {"inverse_offer_ids": _id_list(offer_ids)}
        if filters is not None:
            body["filters"] = _plain(filters)
        self._call({"type": "ACCEPT_INVERSE_OFFERS", "accept_inverse_offers": body})

    def declineInverseOffer(self, offer_ids: Any, filters: Any = None) -> None:
        body: dict = {"inverse_offer_ids": _id_list(offer_ids)}
        if filters is not None:
            body["filters"] = _plain(filters)
        self._call({"type": "DECLINE_INVERSE_OFFERS", "decline_inverse_offers": body})

    def reviveOffers(self, roles: Any = ()) -> None:
        body: dict = {"type": "REVIVE"}
        if roles:
            body["revive"] = {"roles": [roles] if isinstance(roles, str) else list(roles)}
        self._call(body)

    def suppressOffers(self, roles: Any = ()) -> None:
        body: dict = {"type": "SUPPRESS"}
        if roles:
            body["suppress"] = {"roles": [roles] if isinstance(roles, str) else list(roles)}
        self._call(body)

    def killTask(self, task_id: Any, agent_id: Any = None, kill_policy: Any = None) -> None:
        """KILL; `agent_id` and `kill_policy` (`{"grace_period": {"nanoseconds": n}}`) optional."""
        kill: dict = {"task_id": _plain(task_id)}
        if agent_id:
            kill["agent_id"] = _plain(agent_id)
        if kill_policy:
            kill["kill_policy"] = _plain(kill_policy)
        self._call({"type": "KILL", "kill": kill})

    def shutdownExecutor(self, executor_id: Any, agent_id: Any) -> None:
        self._call({"type": "SHUTDOWN",
                    "shutdown": {"executor_id": _plain(executor_id), "agent_id": _plain(agent_id)}})

    def teardown(self) -> None:
        """TEARDOWN without stopping the driver (the master then closes the stream)."""
        self._call({"type": "TEARDOWN"})

    def acknowledgeStatusUpdate(self, status: Any) -> None:
        """ACKNOWLEDGE an update; updates without `uuid` (from the master) are skipped."""
        if not status.get("uuid") or not status.get("agent_id"):
            return
        self._call({"type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": _plain(status["agent_id"]), "task_id": _plain(status["task_id"]),
            "uuid": status["uuid"]}})

    def acknowledgeOperationStatusUpdate(self, status: Any) -> None:
        if not status.get("uuid") or not status.get("operation_id"):
            return
        self._call({"type": "ACKNOWLEDGE_OPERATION_STATUS",
                    "acknowledge_operation_status": _plain(status)})

    def reconcileTasks(self, tasks: list) -> None:
        """RECONCILE; an empty list asks for every task the master knows (implicit)."""
        entries = []
        for task in tasks:
            entry = {"task_id": _plain(task["task_id"])}
            if task.get("agent_id"):
                entry["agent_id"] = _plain(task["agent_id"])
            entries.append(entry)
        self._call({"type": "RECONCILE", "reconcile": {"tasks": entries}})

    def reconcileOperations(self, operations: list) -> None:
        entries = []
        for op in operations:
            entry = {"operation_id": _plain(op["operation_id"])}
            for key in ("agent_id", "resource_provider_id"):
                if op.get(key):
                    entry[key] = _plain(op[key])
            entries.append(entry)
        self._call({"type": "RECONCILE_OPERATIONS", "reconcile_operations": {"operations": entries}})

    def sendFrameworkMessage(self, executor_id: Any, agent_id: Any, data: str | bytes) -> None:
        """MESSAGE to an executor; `data` is base64 text (bytes are encoded for you)."""
        if isinstance(data, bytes):
            import base64

            data = base64.b64encode(data).decode()
        self._call({"type": "MESSAGE", "message": {
            "executor_id": _plain(executor_id), "agent_id": _plain(agent_id), "data": data}})

    def requestResources(self, requests: list) -> None:
        self._call({"type": "REQUEST", "request": {"requests": _plain(requests)}})

    def _stamp(self, body: dict) -> dict:
        """Fill the top-level framework id at send time (queued calls predate it)."""
        fid = self.framework_id
        if fid:
            body = dict(body, framework_id={"value": fid})
        return body

    def _call(self, body: dict) -> None:
        with self._lock:
            if self._status != DRIVER_RUNNING and self._status != DRIVER_NOT_STARTED:
                raise MesosError(f"{body['type']}: scheduler driver is {self._status}")
            if self._stream_id is None or self._master is None:
                if len(self._queue) >= self._max_queued:
                    raise MesosError(f"{body['type']}: not subscribed and {self._max_queued} calls queued")
                self._queue.append(body)
                log.debug("queued %s until subscribed", body["type"])
                return
            stream_id, master = self._stream_id, self._master
        self._post(self._stamp(body), stream_id, master)

    def _post(self, body: dict, stream_id: str, master: str) -> None:
        with self._lock:
            self._inflight += 1
        try:
            status, text = self._calls.post(master, SCHEDULER_PATH, json.dumps(body).encode(), {
                "Content-Type": "application/json", "Accept": "application/json",
                "Mesos-Stream-Id": stream_id})
        except (OSError, http.client.HTTPException, RuntimeError) as error:  # RuntimeError: pool closed
            raise MesosError(f"{body['type']} to {master} failed: {error}") from error
        finally:
            with self._state_changed:
                self._inflight -= 1
                self._state_changed.notify_all()
        if status not in (200, 202):
            raise MesosError(f"{body['type']} refused by {master}: {status} {text.strip()[:500]}")

    def _flush_queue(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._stream_id is None or self._master is None:
                    return
                body = self._queue.popleft()
                stream_id, master = self._stream_id, self._master
            try:
                self._post(self._stamp(body), stream_id, master)
            except MesosError as error:
                log.error("queued call failed: %s", error)

    # -- the stream thread ------------------------------------------------------

    def _stale_after(self) -> float:
        interval = self._heartbeat_override or self._announced_interval or DEFAULT_HEARTBEAT_INTERVAL
        return self._heartbeat_factor * interval

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_initial * (2 ** min(attempt, 30)))
        return random.uniform(ceiling / 2, ceiling)

    def _on_leader_change(self, leader: str | None) -> None:
        with self._lock:
            subscribed_to = self._master if self._stream_id else None
            self._redirect = None
        if subscribed_to is not None and subscribed_to != leader:
            log.info("leading master changed to %s; leaving %s", leader, subscribed_to)
            self._interrupt_stream()
        self._wakeup.set()

    def _watch(self) -> None:
        """Close a stream that stayed silent too long (the read itself has no usable timeout:
        httpx fixes it before SUBSCRIBED announces the heartbeat interval)."""
        while not self._halted.wait(min(1.0, self._stale_after() / 5)):
            with self._lock:
                sock, busy, last = self._sock, self._busy, self._last_activity
            silent = time.monotonic() - last
            if sock is not None and not busy and silent > self._stale_after():
                log.warning("no event for %.1fs (limit %.1fs): stream considered dead",
                            silent, self._stale_after())
                self._interrupt_stream()

    def _interrupt_stream(self) -> None:
        """Wake the stream thread out of a blocking read."""
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _sleep(self, seconds: float) -> None:
        self._wakeup.wait(seconds)
        self._wakeup.clear()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._halted.set()
            self._streams.close()
            # Let calls in flight (an implicit ACK, stop()'s TEARDOWN) finish first.
            with self._state_changed:
                self._state_changed.wait_for(lambda: self._inflight == 0, 10.0)
            self._calls.close()

    def _loop(self) -> None:
        attempt = 0
        redirects = 0
        unsubscribed_since = time.monotonic()
        assert self._detector is not None
        while self._running():
            with self._lock:
                master = self._redirect or self._detector.leader()
            if master is None:
                log.info("no leading master known; waiting")
                self._sleep(self._backoff(attempt))
                attempt += 1
                continue
            outcome = self._subscribe(master)
            if not self._running():
                break
            if outcome == _FATAL:
                self.abort()
                break
            if outcome == _REDIRECTED and redirects < MAX_REDIRECTS:
                redirects += 1
                continue
            redirects = 0
            with self._lock:
                self._redirect = None
            if outcome == _ENDED:
                attempt = 0
                unsubscribed_since = time.monotonic()
            elif time.monotonic() - unsubscribed_since > self._timeout:
                self._report_error(f"no master subscription for {self._timeout:.0f}s")
                self.abort()
                break
            delay = self._backoff(attempt)
            attempt += 1
            log.info("re-subscribing in %.2fs", delay)
            self._sleep(delay)

    def _subscribe(self, master: str) -> str:
        """One SUBSCRIBE attempt: returns how it ended."""
        with self._lock:
            framework = _plain(self._framework)
        body: dict = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework}}
        if framework.get("id"):
            body["framework_id"] = framework["id"]
        url = f"{self._scheme}://{master}{SCHEDULER_PATH}"
        timeout = httpx.Timeout(connect=self._connect_timeout, read=self._stale_after(),
                                write=self._connect_timeout, pool=self._connect_timeout)
        subscribed = False
        try:
            with self._streams.stream("POST", url, content=json.dumps(body).encode(), timeout=timeout,
                                      headers={"Content-Type": "application/json",
                                               "Accept": "application/json"}) as response:
                code = response.status_code
                if code == 307:
                    location = response.headers.get("Location", "")
                    leader = urlsplit(location).netloc or location.strip("/")
                    log.info("master %s redirects to the leader %s", master, leader)
                    with self._lock:
                        self._redirect = leader or None
                    return _REDIRECTED if leader else _RETRY
                if code == 503:
                    log.info("master %s is not ready (503)", master)
                    return _RETRY
                if code != 200:
                    text = response.read().decode(errors="replace").strip()[:500]
                    if 400 <= code < 500:
                        self._report_error(f"SUBSCRIBE refused by {master}: {code} {text}")
                        self.abort()
                        return _FATAL
                    log.warning("SUBSCRIBE to %s failed: %s %s", master, code, text)
                    return _RETRY
                stream_id = response.headers.get("Mesos-Stream-Id", "")
                self._attach_socket(response)
                if not self._running():
                    return _ENDED
                decoder = Decoder()
                for chunk in response.iter_raw():
                    self._last_activity = time.monotonic()
                    for record in decoder.feed(chunk):
                        outcome = self._dispatch_timed(json.loads(record), stream_id, master)
                        if outcome == "subscribed":
                            subscribed = True
                        elif outcome is not None:
                            return outcome
                        if not self._running():
                            return _ENDED
                log.info("event stream from %s ended", master)
        except httpx.ReadTimeout:
            log.warning("no event from %s for %.1fs: stream considered dead", master, self._stale_after())
        except (httpx.HTTPError, OSError, RecordIOError, ValueError) as error:
            if self._running():
                log.warning("event stream from %s failed: %s", master, error)
        finally:
            self._detach(subscribed)
        return _ENDED if subscribed else _RETRY

    def _attach_socket(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._sock = sock
            self._last_activity = time.monotonic()

    def _dispatch_timed(self, event: dict, stream_id: str, master: str) -> str | None:
        with self._lock:
            self._busy = True
        try:
            return self._dispatch(event, stream_id, master)
        finally:
            with self._lock:
                self._busy = False
                self._last_activity = time.monotonic()

    def _detach(self, subscribed: bool) -> None:
        with self._lock:
            self._sock = None
            self._stream_id = None
            self._master = None if not subscribed else self._master
        if subscribed and self._running():
            self._callback("disconnected")

    # -- events -------------------------------------------------------------------

    def _callback(self, name: str, *args: Any) -> None:
        if not self._running():
            return
        try:
            getattr(self.sched, name)(self, *args)
        except Exception:
            log.exception("Scheduler.%s raised", name)

    def _report_error(self, message: str) -> None:
        # A warning: the scheduler's `error` callback decides how loud this is (and what to do).
        log.warning("error from the master: %s", message)
        self._callback("error", message)

    def _dispatch(self, event: dict, stream_id: str, master: str) -> str | None:
        kind = event.get("type")
        payload = event.get(kind.lower(), {}) if isinstance(kind, str) else {}
        wrap = self._wrap
        if kind == "SUBSCRIBED":
            self._on_subscribed(payload, stream_id, master)
            return "subscribed"
        if kind == "HEARTBEAT":
            self._callback("processHeartBeat")
        elif kind == "OFFERS":
            if payload.get("offers"):
                self._callback("resourceOffers", [wrap(o) for o in payload["offers"]])
            if payload.get("inverse_offers"):
                self._callback("inverseOffers", [wrap(o) for o in payload["inverse_offers"]])
        elif kind == "INVERSE_OFFERS":
            self._callback("inverseOffers", [wrap(o) for o in payload.get("inverse_offers", [])])
        elif kind == "RESCIND":
            self._callback("offerRescinded", wrap(payload.get("offer_id", {})))
        elif kind == "RESCIND_INVERSE_OFFER":
            self._callback("inverseOfferRescinded", wrap(payload.get("inverse_offer_id", {})))
        elif kind == "UPDATE":
            status = payload.get("status", {})
            self._callback("statusUpdate", wrap(status))
            if self.implicit_acknowledgements and status.get("uuid"):
                self._implicit_ack(self.acknowledgeStatusUpdate, status)
        elif kind == "UPDATE_OPERATION_STATUS":
            status = payload.get("status", {})
            self._callback("operationStatusUpdate", wrap(status))
            if self.implicit_acknowledgements and status.get("uuid"):
                self._implicit_ack(self.acknowledgeOperationStatusUpdate, status)
        elif kind == "MESSAGE":
            self._callback("frameworkMessage", wrap(payload.get("executor_id", {})),
                           wrap(payload.get("agent_id", {})), payload.get("data", ""))
        elif kind == "FAILURE":
            if payload.get("executor_id"):
                self._callback("executorLost", wrap(payload["executor_id"]),
                               wrap(payload.get("agent_id", {})), payload.get("status"))
            elif payload.get("agent_id"):
                self._callback("slaveLost", wrap(payload["agent_id"]))
        elif kind == "ERROR":
            self._report_error(payload.get("message", "") or event.get("message", ""))
            self.abort()
            return _FATAL
        else:
            log.warning("ignoring unknown event %r", kind)
        return None

    def _implicit_ack(self, ack: Callable[[Any], None], status: dict) -> None:
        try:
            ack(status)
        except MesosError as error:
            log.warning("implicit acknowledgement failed (the agent will resend): %s", error)

    def _on_subscribed(self, payload: dict, stream_id: str, master: str) -> None:
        fid = payload.get("framework_id", {}).get("value")
        with self._lock:
            had_id = bool(self.framework_id)
            if fid:
                self._framework["id"] = {"value": fid}
            self._stream_id = stream_id
            self._master = master
            interval = payload.get("heartbeat_interval_seconds")
            if interval:
                self._announced_interval = float(interval)
        log.info("subscribed to %s as framework %s", master, fid)
        self._flush_queue()
        master_info = dict(payload.get("master_info") or {})
        host, _, port = master.rpartition(":")
        master_info.setdefault("hostname", host)
        master_info.setdefault("port", int(port))
        if had_id:
            self._callback("reregistered", self._wrap(master_info))
        else:
            self._callback("registered", self._wrap({"value": fid}), self._wrap(master_info))
