"""The agent's side of the internal agent<->master protocol (docs/internal-protocol.md).

`MasterLink` keeps one registration stream open to the leading master: REGISTER
(or REREGISTER with everything the agent runs), then reads the master's records
in order and hands them to the agent. It PINGs, notices a silent master (no
HEARTBEAT for 3 intervals), follows 307s and the zk:// detector, and reconnects
with back-off. Calls go out through ordered lanes: updates of one task always
take the same lane, so they reach the master in order, while different tasks
do not wait on each other.

Every call and the registration stream carry the agent's `--credential` as HTTP
Basic, and go over TLS (the master verified with the agent's CA) when the agent
has TLS: a libprocess process speaks TLS on all its sockets or none. A master
that refuses the credential (401/403) is told about in the log, with the
principal and the master's words, and retried with a longer back-off.
"""
from __future__ import annotations

import asyncio
import base64
import http.client
import itertools
import logging
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Awaitable, Callable

import httpx

from framework.mesos import recordio
from framework.mesos.connection import parse_head
from framework.mesos.detector import MasterDetector, detect
from framework.mesos.messages import dumps, loads

log = logging.getLogger(__name__)

VERSION = "1.11.0"
LANES = 4
BATCH_MAX = 100  # calls in one BATCH POST
RETRY_SECONDS = 1.0
BACKOFF_MAX = 2.0
REFUSED_BACKOFF_MAX = 30.0  # a master refusing our credential will not change its mind in 2 s
REFUSAL_LOG_SECONDS = 60.0  # the same refusal is logged at most this often (WARNING)


@dataclass(frozen=True)
class MasterAccess:
    """How the agent reaches the master: plain or TLS, with or without its credential."""

    ssl: ssl.SSLContext | None = None
    principal: str | None = None
    secret: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl is not None else "http"

    @property
    def authorization(self) -> str | None:
        if self.principal is None or self.secret is None:
            return None
        return "Basic " + base64.b64encode(f"{self.principal}:{self.secret}".encode()).decode()

    def who(self) -> str:
        return f"principal '{self.principal}'" if self.principal else "no credential: see --credential"

    def __repr__(self) -> str:  # never print the secret
        return f"MasterAccess(scheme={self.scheme}, principal={self.principal!r})"


class CallFailed(OSError):
    """A call did not get an answer (connection refused, reset, timed out, garbled)."""


class PostConnection:
    """One keep-alive HTTP/1.1 connection for small JSON POSTs to the master.

    The agent's hot path (three UPDATEs per task) does not need a general HTTP
    client: one write per request and a Content-Length answer are all there is.
    Servers close idle keep-alive connections (uvicorn after 5 s), so a
    connection idle for long is replaced, and a request that fails on a reused
    connection before any answer is tried once more on a fresh one (the master
    de-duplicates updates by uuid, so a repeat is harmless).
    """

    IDLE_SECONDS = 3.0

    def __init__(self, access: MasterAccess | None = None) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._target: str | None = None
        self._last_used = 0.0
        self._ssl = access.ssl if access is not None else None
        authorization = access.authorization if access is not None else None
        self._extra = b"Authorization: %s\r\n" % authorization.encode() if authorization else b""

    async def post(self, target: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_used > self.IDLE_SECONDS:
            self.close()
        for attempt in (1, 2):
            reused = self._writer is not None
            try:
                answer = await asyncio.wait_for(self._exchange(target, path, body), timeout)
                self._last_used = loop.time()
                return answer
            except ssl.SSLError as error:  # an OSError, but a failed handshake is not a stale connection
                self.close()
                raise CallFailed(f"POST {path} to {target}: TLS: {error}") from None
            except (asyncio.TimeoutError, ValueError, asyncio.LimitOverrunError, http.client.HTTPException) as error:
                self.close()
                raise CallFailed(f"POST {path} to {target}: {error!r}") from None
            except (OSError, asyncio.IncompleteReadError) as error:
                self.close()
                if reused and attempt == 1:
                    continue  # the server had closed the idle connection: once more, fresh
                raise CallFailed(f"POST {path} to {target}: {error!r}") from None
        raise AssertionError("unreachable")

    async def _exchange(self, target: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self._writer is None or self._target != target or self._writer.is_closing():
            self.close()
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
            # One handshake per connection: keep-alive pays it once for many calls.
            self._reader, self._writer = await asyncio.open_connection(
                host, int(port), ssl=self._ssl, server_hostname=host if self._ssl is not None else None)
            self._target = target
        assert self._reader is not None and self._writer is not None
        self._writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                           b"%sContent-Length: %d\r\n\r\n%s" % (path.encode(), target.encode(), self._extra,
                                                                   len(body), body))
        status, headers, will_close = parse_head(await self._reader.readuntil(b"\r\n\r\n"))
        if "content-length" not in headers:
            raise ValueError(f"answer {status} without Content-Length")
        answer = await self._reader.readexactly(int(headers["content-length"]))
        if will_close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Lanes:
    """Ordered delivery of agent calls; a failed POST is retried until it lands.

    What queued on a lane while its previous POST was out goes in the next one as a
    BATCH (in order): under a burst the agent makes a few round trips, not one per
    update. A master that does not know BATCH (an older one, 400) gets them one by one.
    """

    def __init__(self, post: Callable[[dict, PostConnection], Awaitable[int]], registered: asyncio.Event,
                 connect: Callable[[], PostConnection] = PostConnection) -> None:
        self._post = post
        self._registered = registered
        self._connect = connect
        self._queues = [asyncio.Queue[tuple[dict, asyncio.Event, int]]() for _ in range(LANES)]
        self._epoch = 0
        self._workers: list[asyncio.Task] = []
        self.batches = True

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._run(queue)) for queue in self._queues]

    def submit(self, key: str, call: dict) -> asyncio.Event:
        """Queue `call` on the lane of `key`; the Event is set once the master took it."""
        done = asyncio.Event()
        self._queues[zlib.crc32(key.encode()) % LANES].put_nowait((call, done, self._epoch))
        return done

    def reset(self) -> None:
        """A (re)registration call carries every pending update: drop what is queued."""
        self._epoch += 1

    async def _run(self, queue: asyncio.Queue) -> None:
        connection = self._connect()
        while True:
            items = [await queue.get()]
            while len(items) < BATCH_MAX and not queue.empty():
                items.append(queue.get_nowait())
            for epoch, group in itertools.groupby(items, key=lambda item: item[2]):
                await self._deliver([call for call, _, _ in group], epoch, connection)
            for _, done, _ in items:
                done.set()

    async def _deliver(self, calls: list[dict], epoch: int, connection: PostConnection) -> None:
        """Until the master took `calls`, or a re-registration (a newer epoch) carries them."""
        if len(calls) > 1 and not self.batches:
            for call in calls:
                await self._deliver([call], epoch, connection)
            return
        refused = 0
        while epoch == self._epoch:
            await self._registered.wait()
            if epoch != self._epoch:
                return
            try:
                status = await self._post(calls[0] if len(calls) == 1 else {"type": "BATCH", "calls": calls},
                                          connection)
            except OSError as error:
                log.debug("posting %d call(s) failed: %s; retrying", len(calls), error)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if status == 400 and len(calls) > 1:
                log.warning("the master does not take batches: posting calls one by one")
                self.batches = False
                await self._deliver(calls, epoch, connection)
                return
            if status in (401, 403):
                # Not taken: the master refuses our credential. The update stays pending
                # (a re-registration carries it too); try again, more slowly each time.
                refused += 1
                await asyncio.sleep(min(RETRY_SECONDS * 2 ** min(refused, 5), REFUSED_BACKOFF_MAX))
                continue
            if status == 202 or status == 404 or 400 <= status < 500:
                return  # taken; or the stream is being re-established, carrying it
            await asyncio.sleep(RETRY_SECONDS)

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)


class MasterLink:
    """Registration, the master's stream, pings and outgoing calls."""

    def __init__(self, master: str, *, registration: Callable[[str | None], dict],
                 on_record: Callable[[dict], Awaitable[None]],
                 on_registered: Callable[[str, dict], Awaitable[None]],
                 access: MasterAccess | None = None) -> None:
        self.master_uri = master
        self.access = access or MasterAccess()
        self._registration = registration  # agent_id|None -> REGISTER or REREGISTER call
        self._on_record = on_record
        self._on_registered = on_registered
        self.agent_id: str | None = None
        self.master: str | None = None  # host:port of the master we talk to
        self.master_info: dict = {}
        self.ping_interval = 5.0
        self.registered = asyncio.Event()
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=httpx.Limits(max_connections=32),
                                        verify=self.access.ssl if self.access.ssl is not None else True)
        self.lanes = Lanes(self._post, self.registered, self._connection)
        self._control = self._connection()  # PING and UNREGISTER
        self._refusals: dict[tuple[str, int, str], float] = {}  # (call, status, answer) -> last logged
        self._detector: MasterDetector | None = None
        self._tasks: list[asyncio.Task] = []
        self._stream_task: asyncio.Task | None = None
        self._leader_changed = asyncio.Event()
        self._closing = False
        self._last_refused = False  # the last stream ended in a 401/403

    def _connection(self) -> PostConnection:
        return PostConnection(self.access)

    def _refused(self, what: str, master: str, status: int, answer: str) -> None:
        """A 401/403: say who we were and what the master said (once a minute for the same answer)."""
        key = (what, status, answer)
        now = time.monotonic()
        level = logging.WARNING if now - self._refusals.get(key, -REFUSAL_LOG_SECONDS) >= REFUSAL_LOG_SECONDS \
            else logging.DEBUG
        if level == logging.WARNING:
            self._refusals[key] = now
        log.log(level, "master %s refused %s from this agent (%s) with %d: %s; retrying", master, what,
                self.access.who(), status, answer.strip()[:300] or "(no message)")

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._detector = await asyncio.to_thread(detect, self.master_uri)
        self._detector.on_change(lambda _leader: loop.call_soon_threadsafe(self._leader_changed.set))
        self.lanes.start()
        self._tasks = [asyncio.create_task(self._connect_loop()), asyncio.create_task(self._ping_loop())]

    async def stop(self, unregister: bool = False) -> None:
        self._closing = True
        if unregister and self.agent_id and self.master:
            try:
                farewell = self._connection()
                await self._post({"type": "UNREGISTER", "agent_id": {"value": self.agent_id}}, farewell,
                                 timeout=3.0)
                farewell.close()
            except OSError:
                pass
        self._control.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.lanes.stop()
        await self.client.aclose()
        if self._detector is not None:
            await asyncio.to_thread(self._detector.close)

    def forget_id(self) -> None:
        """The master refused us (SHUTDOWN): register afresh next time."""
        self.agent_id = None

    def reconnect(self) -> None:
        """Drop the stream; the connect loop re-registers."""
        if self._stream_task is not None:
            self._stream_task.cancel()

    # -- calls --------------------------------------------------------------------------
    def send(self, key: str, call: dict) -> asyncio.Event:
        """Queue a call (UPDATE, EXECUTOR_EXITED, MESSAGE) for ordered, retried delivery."""
        return self.lanes.submit(key, call)

    async def _post(self, call: dict, connection: PostConnection, timeout: float = 10.0) -> int:
        if not self.master:
            raise CallFailed("no master known")
        if self.agent_id is not None and "agent_id" not in call:
            call = {**call, "agent_id": {"value": self.agent_id}}
        status, answer = await connection.post(self.master, "/internal/agent", dumps(call), timeout)
        if status == 404:
            log.warning("master does not know agent %s: re-registering", self.agent_id)
            self.reconnect()
        elif status in (401, 403):
            self._refused(str(call.get("type")), self.master, status, answer.decode(errors="replace"))
        elif status >= 400:
            log.warning("master refused %s: %s %s", call.get("type"), status, answer[:300].decode(errors="replace"))
        elif answer and call.get("type") == "BATCH":
            for refusal in loads(answer).get("refused", []):
                refused = call["calls"][refusal["index"]]
                log.warning("master refused %s: %s %s", refused.get("type"), refusal["status"], refusal["message"])
        return status

    # -- loops --------------------------------------------------------------------------
    async def _ping_loop(self) -> None:
        while True:
            await self.registered.wait()
            await asyncio.sleep(self.ping_interval)
            if not self.registered.is_set() or self.agent_id is None:
                continue
            try:
                await self._post({"type": "PING", "agent_id": {"value": self.agent_id}}, self._control,
                                 timeout=max(self.ping_interval, 1.0))
            except OSError as error:
                log.info("ping to master %s failed: %s", self.master, error)

    async def _connect_loop(self) -> None:
        backoff = 0.1
        redirect: str | None = None
        while not self._closing:
            assert self._detector is not None
            self._leader_changed.clear()
            leader = redirect or self._detector.leader()
            redirect = None
            if leader is None:
                try:
                    await asyncio.wait_for(self._leader_changed.wait(), BACKOFF_MAX)
                except asyncio.TimeoutError:
                    pass
                continue
            self.master = leader
            self._stream_task = asyncio.create_task(self._stream(leader))
            watcher = asyncio.create_task(self._leader_changed.wait())
            done, _ = await asyncio.wait({self._stream_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            watcher.cancel()
            if self._stream_task not in done:
                self._stream_task.cancel()
            try:
                result = await self._stream_task
            except asyncio.CancelledError:
                if self._closing:
                    raise
                result = None
            except Exception as error:  # connection refused, reset, bad record: reconnect
                # A failed TLS handshake (unknown CA, wrong name) will not mend by itself: say it loudly.
                tls_failure = isinstance(error.__cause__ or error.__context__, ssl.SSLError) or \
                    "SSL" in str(error) or "CERTIFICATE" in str(error)
                log.log(logging.WARNING if tls_failure else logging.INFO, "master stream to %s ended: %s",
                        leader, error)
                result = None
            self.registered.clear()
            if isinstance(result, str):
                redirect, backoff = result, 0.1
                continue
            if result is True:
                backoff = 0.1  # the stream worked for a while; come back quickly
            ceiling = REFUSED_BACKOFF_MAX if result is None and self._last_refused else BACKOFF_MAX
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, ceiling)

    async def _stream(self, master: str) -> bool | str | None:
        """One registration stream. Returns a redirect target, or whether it registered
        (None: the master refused our credential)."""
        call = self._registration(self.agent_id)
        self.lanes.reset()  # the call carries every unacknowledged update; later ones queue anew
        self._last_refused = False
        timeout = httpx.Timeout(10.0, read=None)
        headers = {"Content-Type": "application/json"}
        if self.access.authorization:
            headers["Authorization"] = self.access.authorization
        async with self.client.stream("POST", f"{self.access.scheme}://{master}/internal/agent", content=dumps(call),
                                      headers=headers, timeout=timeout) as response:
            if response.status_code == 307:
                location = response.headers.get("location", "")
                return location.lstrip("/").split("/", 1)[0] or False
            if response.status_code in (401, 403):
                body = (await response.aread()).decode(errors="replace")
                self._refused(call["type"], master, response.status_code, body)
                self._last_refused = True
                return None
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                log.warning("master %s refused %s: %s %s", master, call["type"], response.status_code, body)
                if response.status_code == 404:
                    self.agent_id = None
                return False
            decoder = recordio.Decoder()
            chunks = response.aiter_raw().__aiter__()
            registered = False
            while True:
                silence = self.ping_interval * 3 if registered else 30.0
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), silence)
                except StopAsyncIteration:
                    log.info("master %s closed the stream", master)
                    return registered
                except asyncio.TimeoutError:
                    log.warning("master %s silent for %.0fs: reconnecting", master, silence)
                    return registered
                for record in decoder.feed(chunk):
                    event = loads(record).to_dict()
                    kind = event.get("type")
                    if kind in ("REGISTERED", "REREGISTERED"):
                        body = event.get(kind.lower(), {})
                        self.agent_id = body["agent_id"]["value"]
                        self.master_info = body.get("master_info", {})
                        self.ping_interval = float(body.get("ping_interval_seconds", 5.0))
                        registered = True
                        await self._on_registered(kind, body)
                        self.registered.set()
                        log.info("%s with master %s as %s", kind.lower(), master, self.agent_id)
                    else:
                        await self._on_record(event)
                        # A launch burst arrives as hundreds of records in a few chunks: let
                        # the executors' streams send each task on as it is handled, not after all.
                        await asyncio.sleep(0)
