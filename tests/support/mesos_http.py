"""Raw Mesos v1 HTTP for tests: calls, and RecordIO event streams read in a thread.

Every client here speaks to the master as an `Endpoint` (tests/support/security.py)
says: its identity on every request (streams too), TLS verified with its context.

    master = Master(cluster.master_api())
    framework = Framework(master)                       # subscribed, as the operator
    agent = FakeAgent(Master(cluster.master_api().as_(bundle.identity("agent-a"))))
"""
from __future__ import annotations

import http.client
import json
import queue
import socket
import ssl
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from framework.mesos.recordio import Decoder

from .security import Endpoint

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class EventStream:
    """The records of one streaming response, decoded as they arrive.

    `next()` pops the next event; `wait_for(pred)` skips to the first matching
    one (skipped events stay in `seen`). `ended` is set when the server closed.
    Uses http.client so that `close()` can shut the socket down from this thread
    and the server sees the disconnect at once.
    """

    def __init__(self, method: str, url: str, body: Any,
                 headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> None:
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self._ready = threading.Event()
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self.body: bytes = b""
        self.raw_records: list[bytes] = []
        self.error: Exception | None = None
        parts = urlsplit(url)
        if parts.scheme == "https":
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=10, context=context)
        else:
            self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self._thread = threading.Thread(
            target=self._run, args=(method, parts.path, json.dumps(body).encode(),
                                    headers or JSON_HEADERS), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"no response from {url}")

    def _run(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            self.status = response.status
            self.headers = httpx.Headers(response.getheaders())
            if response.status != 200:
                self.body = response.read()
                return
            self._conn.sock.settimeout(None)  # type: ignore[union-attr]
            self._ready.set()
            decoder = Decoder()
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    return
                for record in decoder.feed(chunk):
                    self.raw_records.append(record)
                    self._events.put(json.loads(record))
        except Exception as error:  # server went away or we closed: the stream just ends
            self.error = error
        finally:
            self._ready.set()
            self.ended.set()
            self._events.put(None)

    @property
    def stream_id(self) -> str:
        assert self.headers is not None
        return self.headers["mesos-stream-id"]

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        event = self._events.get(timeout=timeout)
        if event is None:
            self._events.put(None)
            raise EOFError("stream ended")
        self.seen.append(event)
        return event

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool] | str,
                 timeout: float = 10.0) -> dict[str, Any]:
        if isinstance(predicate, str):
            kind = predicate
            predicate = lambda e: e.get("type") == kind  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event; seen {[e.get('type') for e in self.seen]}")
            try:
                event = self.next(timeout=left)
            except queue.Empty:
                continue
            if predicate(event):
                return event

    def drain(self, quiet: float = 0.3) -> list[dict[str, Any]]:
        """Events that arrive until `quiet` seconds pass with none (for "nothing else" checks)."""
        out = []
        while True:
            try:
                event = self._events.get(timeout=quiet)
            except queue.Empty:
                return out
            if event is None:
                self._events.put(None)
                return out
            self.seen.append(event)
            out.append(event)

    def close(self) -> None:
        """Drop the connection (the server sees a disconnect)."""
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conn.close()
        self.ended.wait(5)


def open_stream(api: Endpoint, path: str, body: Any, headers: dict[str, str] | None = None) -> EventStream:
    """POST `body` to `api`'s `path` as its caller and read the RecordIO answer on a thread;
    `headers` default to JSON's, and get the caller's Authorization unless they carry one."""
    return EventStream("POST", api.url + path, body, headers=api.headers(headers if headers is not None
                                                                          else JSON_HEADERS),
                       context=api.context)


class Master:
    """A client of one master's HTTP endpoints, as `api`'s caller."""

    def __init__(self, api: Endpoint) -> None:
        self.api = api
        self.base = api.url
        self.client = httpx.Client(timeout=10, verify=api.httpx_options()["verify"])
        self.opened: list[Any] = []  # streams, frameworks and agents to clean up

    def framework_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """`info` naming the principal this client authenticates with (unless it names one)."""
        if self.api.identity is None or "principal" in info:
            return info
        return {**info, "principal": self.api.identity.principal}

    def as_(self, identity: Any) -> "Master":
        """A client of the same master as another caller (cleaned up with this one)."""
        other = Master(self.api.as_(identity))
        self.opened.append(other)
        return other

    def headers(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        """`headers` (default: JSON) with our Authorization, unless they carry their own."""
        return self.api.headers(headers if headers is not None else JSON_HEADERS)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> httpx.Response:
        return self.client.post(self.base + path, headers=self.headers(headers),
                                content=raw if raw is not None else json.dumps(body).encode())

    def call(self, body: Any, stream_id: str | None = None, **extra: str) -> httpx.Response:
        headers = dict(JSON_HEADERS)
        if stream_id is not None:
            headers["Mesos-Stream-Id"] = stream_id
        headers.update(extra)
        return self.post("/api/v1/scheduler", body, headers=headers)

    def stream(self, path: str, body: Any, headers: dict[str, str] | None = None) -> EventStream:
        """A POST whose answer is a RecordIO stream (read on a thread), cleaned up with this client."""
        stream = open_stream(self.api, path, body, headers)
        self.opened.append(stream)
        return stream

    def subscribe(self, framework_info: dict[str, Any], framework_id: str | None = None,
                  headers: dict[str, str] | None = None, **subscribe: Any) -> EventStream:
        body: dict[str, Any] = {"type": "SUBSCRIBE",
                                "subscribe": {"framework_info": framework_info, **subscribe}}
        if framework_id is not None:
            body["framework_id"] = {"value": framework_id}
        return self.stream("/api/v1/scheduler", body, headers=headers)

    def operator(self, kind: str, **payload: Any) -> dict[str, Any]:
        response = self.post("/api/v1", {"type": kind, **payload})
        response.raise_for_status()
        return response.json()

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.client.get(self.base + path, headers=self.api.headers(), **options)

    def cleanup(self) -> None:
        """Tear down what tests opened so the next test sees an empty cluster."""
        for item in reversed(self.opened):
            try:
                item.close()
            except Exception:  # best effort: the test may have closed it already
                pass
        self.opened.clear()

    def close(self) -> None:
        self.cleanup()
        self.client.close()


class Framework:
    """A subscribed framework: its id, stream and helpers for calls. Its FrameworkInfo names the
    principal it authenticates with (`master`'s caller), as a secured framework's does."""

    def __init__(self, master: Master, info: dict[str, Any] | None = None,
                 **subscribe: Any) -> None:
        self.master = master
        self.info = master.framework_info(info or {"user": "tester", "name": "test-framework"})
        self.stream = master.subscribe(self.info, **subscribe)
        assert self.stream.status == 200, (self.stream.status, self.stream.body)
        subscribed = self.stream.wait_for("SUBSCRIBED")
        self.id: str = subscribed["subscribed"]["framework_id"]["value"]
        master.opened.append(self)

    def call(self, kind: str, **payload: Any) -> httpx.Response:
        return self.master.call({"type": kind, "framework_id": {"value": self.id}, **payload},
                                stream_id=self.stream.stream_id)

    def offers(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self.stream.wait_for("OFFERS", timeout)["offers"]["offers"]

    def update(self, task_id: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        def match(event: dict[str, Any]) -> bool:
            return event.get("type") == "UPDATE" and (
                task_id is None or event["update"]["status"]["task_id"]["value"] == task_id)
        return self.stream.wait_for(match, timeout)["update"]["status"]

    def close(self) -> None:
        if not self.stream.ended.is_set():
            try:
                self.call("TEARDOWN")
            except httpx.HTTPError:
                pass
        self.stream.close()


class FakeAgent:
    """A real client of the master's internal agent protocol (docs/internal-protocol.md), as the
    caller of `master` (on a master with `--authenticate-agents`: the agent's principal).

    `registered=False` accepts a refusal: `status` and `stream.body` say what the master
    answered, and `id` stays `agent_id`."""

    def __init__(self, master: Master, hostname: str = "agent1", port: int = 5051,
                 resources: list[dict[str, Any]] | None = None,
                 attributes: list[dict[str, Any]] | None = None,
                 agent_id: str | None = None, reregister: dict[str, Any] | None = None,
                 registered: bool = True) -> None:
        from framework.mesos.resources import Resources

        self.master = master
        self.resources = resources if resources is not None else Resources.parse(
            "cpus:4;mem:4096;disk:1000;ports:[31000-32000]").to_json()
        info: dict[str, Any] = {"hostname": hostname, "port": port, "resources": self.resources,
                                "attributes": attributes or []}
        if agent_id is None:
            body: dict[str, Any] = {"type": "REGISTER", "agent_info": info, "ip": "127.0.0.1",
                                    "version": "1.11.0"}
        else:
            info["id"] = {"value": agent_id}
            body = {"type": "REREGISTER", "agent_id": {"value": agent_id}, "agent_info": info,
                    "ip": "127.0.0.1", "version": "1.11.0", **(reregister or {})}
        self.stream = open_stream(master.api, "/internal/agent", body)
        self.status = self.stream.status
        self.id: str = agent_id or ""
        master.opened.append(self)
        if registered:
            assert self.status == 200, (self.status, self.stream.body)
        if self.status == 200:
            first = self.stream.next()
            payload = first.get("registered") or first.get("reregistered")
            self.id = payload["agent_id"]["value"]

    def post(self, kind: str, caller: Master | None = None, **payload: Any) -> httpx.Response:
        """One call naming this agent's id, as `caller` (default: this agent's own client)."""
        return (caller or self.master).post("/internal/agent",
                                            {"type": kind, "agent_id": {"value": self.id}, **payload})

    def update(self, framework_id: str, task_id: str, state: str, uuid: str | None = None,
               caller: Master | None = None, **status: Any) -> tuple[httpx.Response, str]:
        from framework.mesos.messages import new_uuid

        uuid = uuid or new_uuid()
        body = {"task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
                "uuid": uuid, "timestamp": time.time(), **status}
        response = self.post("UPDATE", caller, framework_id={"value": framework_id}, status=body,
                             latest_state=state)
        return response, uuid

    def close(self) -> None:
        if self.status == 200:
            try:
                self.post("UNREGISTER")
            except httpx.HTTPError:
                pass
        self.stream.close()


def task_info(task_id: str, agent_id: str, cpus: float = 0.1, mem: float = 32,
              **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": agent_id},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
    }
    if "executor" not in extra:
        info["command"] = {"value": "true"}
    info.update(extra)
    return info


def launch(task_infos: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "LAUNCH", "launch": {"task_infos": task_infos}}
