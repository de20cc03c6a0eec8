"""The scheduler's connection and stream limits, over real sockets against a real process.

Some 20,000 connections that sent nothing once held as many file descriptors until the
scheduler could open no more; forty event-stream clients that never read, and one
20 MB app, took it from 289 MB to 2 GB. The same attacks, at a smaller scale against a
`dockyard scheduler` started with lowered limits (its flags), must leave its file
descriptors and memory bounded, each refused client told why, and the API answering.
No master is needed: the API serves (and stores) without one.
"""
from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle, Identity
from tests.support.procs import Process, dockyard, free_port, wait_for

PER_CLIENT = 8
OVERALL = 24
HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 2.0
STREAM_BYTES = 1_000_000  # above what one change publishes at once (its app in two or three events)
REQUEST_BYTES = 5_000_000  # room for a 4 MB app, the large app of the event-stream test


def basic(identity: Identity) -> str:
    return "Basic " + base64.b64encode(f"{identity.principal}:{identity.secret}".encode()).decode()


class Scheduler:
    def __init__(self, process: Process, port: int, auth: str) -> None:
        self.process = process
        self.port = port
        self.auth = auth

    def connect(self, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.port))
        return sock

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                source: str = "127.0.0.1", timeout: float = 10.0) -> tuple[int, bytes]:
        """(status, body) of one request on its own connection (read until the server closes)."""
        sock = self.connect(source, timeout)
        try:
            head = {"Host": "x", "Authorization": self.auth, "Connection": "close",
                    "Content-Length": str(len(body)), "Content-Type": "application/json", **(headers or {})}
            sock.sendall(f"{method} {path} HTTP/1.1\r\n".encode()
                         + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n" + body)
            return parse(read_all(sock))
        finally:
            sock.close()

    def fds(self) -> int:
        return len(list(Path(f"/proc/{self.process.pid}/fd").iterdir()))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_stream(sock: socket.socket) -> bytes:
    """A chunked response up to its last chunk (the connection may stay open after it)."""
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, bytes]:
    if not raw:
        return 0, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduler]:
    work = tmp_path_factory.mktemp("limits-http")
    bundle = Bundle(work / "security").ensure()
    port = free_port()
    process = Process(dockyard(
        "scheduler", "--master", "127.0.0.1:1", "--port", str(port), "--data-dir", str(work / "data"),
        "--http-users", str(bundle.users_file), "--max-connections", str(OVERALL),
        "--max-connections-per-client", str(PER_CLIENT), "--header-timeout", str(HEADER_TIMEOUT),
        "--body-timeout", str(BODY_TIMEOUT), "--event-stream-bytes", str(STREAM_BYTES),
        "--max-request-bytes", str(REQUEST_BYTES)), work / "scheduler.log")
    made = Scheduler(process, port, basic(bundle.operator))

    def serving() -> bool:
        assert process.alive(), process.output()[-3000:]
        try:
            return made.request("GET", "/ping", timeout=2)[0] == 200
        except OSError:
            return False
    try:
        wait_for(serving, timeout=60, what="the scheduler serving /ping")
        yield made
    finally:
        process.stop()


def refused(sock: socket.socket) -> tuple[int, bytes]:
    """What the server said to a connection it would not serve (then closed)."""
    return parse(read_all(sock))


def test_connections_are_bounded_per_client_and_overall(scheduler: Scheduler) -> None:
    before = scheduler.fds()
    held: list[socket.socket] = []
    try:
        held += [scheduler.connect() for _ in range(PER_CLIENT)]
        extra = scheduler.connect()
        status, body = refused(extra)
        extra.close()
        assert status == 503 and b"connections from 127.0.0.1" in body
        assert scheduler.request("GET", "/ping", source="127.0.0.2")[0] == 200  # another client is served
        for source in ("127.0.0.2", "127.0.0.3"):  # fill the server up from other addresses
            held += [scheduler.connect(source) for _ in range(PER_CLIENT)]
        over = scheduler.connect("127.0.0.4")
        status, body = refused(over)
        over.close()
        assert status == 503 and f"more than {OVERALL} connections".encode() in body
        assert scheduler.fds() <= before + OVERALL + 4
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: scheduler.request("GET", "/ping")[0] == 200, timeout=10, what="served again")


def test_a_flood_of_silent_connections_keeps_descriptors_bounded(scheduler: Scheduler) -> None:
    before = scheduler.fds()
    held, peak = [], 0
    try:
        for index in range(300):  # from 30 addresses, 10 each: the per-client bound alone would allow 240
            try:
                held.append(scheduler.connect(f"127.0.1.{index % 30 + 1}"))
            except OSError:
                pass
            if index % 50 == 0:
                peak = max(peak, scheduler.fds())
        time.sleep(0.5)
        peak = max(peak, scheduler.fds())
        assert peak <= before + OVERALL + 8, (before, peak)
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: scheduler.request("GET", "/ping")[0] == 200, timeout=10, what="served again")


def test_headers_too_slow_are_cut_off(scheduler: Scheduler) -> None:
    sock = scheduler.connect(timeout=HEADER_TIMEOUT + 5)
    try:
        started = time.monotonic()
        sock.sendall(b"GET /v2/apps HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        status, body = parse(read_all(sock))
        waited = time.monotonic() - started
    finally:
        sock.close()
    assert status == 408 and b"headers not received" in body
    assert HEADER_TIMEOUT - 0.5 <= waited <= HEADER_TIMEOUT + 3


def test_huge_headers_are_refused(scheduler: Scheduler) -> None:
    status, body = scheduler.request("GET", "/ping", headers={"X-Big": "a" * (300 << 10)})
    assert status == 431 and json.loads(body)["message"]


def test_a_body_too_slow_is_cut_off(scheduler: Scheduler) -> None:
    sock = scheduler.connect(timeout=BODY_TIMEOUT + 5)
    try:
        sock.sendall(f"POST /v2/apps HTTP/1.1\r\nHost: x\r\nAuthorization: {scheduler.auth}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\":".encode())
        status, body = parse(read_all(sock))
    finally:
        sock.close()
    assert status == 408 and json.loads(body)["details"][0]["errors"][0].startswith("Request body not received")


def test_fifty_megabytes_are_refused_without_being_read(scheduler: Scheduler) -> None:
    rss = scheduler.rss_mb()
    started = time.monotonic()
    status, body = scheduler.request("POST", "/v2/apps", headers={"Content-Length": str(50 << 20)})
    assert status == 413 and time.monotonic() - started < 1.0
    # the same without a length: chunks until the server stops listening
    sock = scheduler.connect(timeout=10)
    sent = 0
    try:
        sock.sendall(f"POST /v2/apps HTTP/1.1\r\nHost: x\r\nAuthorization: {scheduler.auth}\r\n"
                     f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        piece = b"[" + b"1," * (32 << 10)
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        while sent < 50 << 20:
            sock.sendall(frame)
            sent += len(piece)
    except OSError:
        pass  # the server answered and closed: the rest is never sent
    status, body = parse(read_all(sock))
    sock.close()
    assert status == 413 and sent < 50 << 20, sent
    assert scheduler.rss_mb() - rss < 30


def test_deep_nesting_is_refused_in_milliseconds(scheduler: Scheduler) -> None:
    started = time.monotonic()
    status, body = scheduler.request("POST", "/v2/apps", b"[" * 10_000 + b"]" * 10_000)
    assert status == 422 and time.monotonic() - started < 0.5
    assert "nested deeper" in json.loads(body)["details"][0]["errors"][0]


def test_event_stream_readers_that_never_read_are_dropped(scheduler: Scheduler) -> None:
    def huge(app_id: str) -> bytes:
        return json.dumps({"id": app_id, "cmd": "true #" + "x" * (4 << 20), "cpus": 0.01, "mem": 32,
                           "instances": 0}).encode()

    # what one 4 MB app costs the scheduler with nobody listening (its copies, the allocator's arenas)
    assert scheduler.request("POST", "/v2/apps", huge("/big/first"), source="127.0.0.9")[0] == 201
    readers = []
    for index in range(20):  # as many as the connection bounds leave room for, from four clients
        sock = scheduler.connect(f"127.0.2.{index % 4 + 1}", timeout=30)
        sock.sendall(f"GET /v2/events HTTP/1.1\r\nHost: x\r\nAuthorization: {scheduler.auth}\r\n"
                     f"Accept: text/event-stream\r\n\r\n".encode())
        readers.append(sock)
    try:
        time.sleep(1.0)
        rss = scheduler.rss_mb()
        assert scheduler.request("POST", "/v2/apps", huge("/big/huge"), source="127.0.0.9")[0] == 201
        big = "x" * (200 << 10)
        for index in range(12):
            app = {"id": f"/big/app{index}", "cmd": "sleep 60", "cpus": 0.01, "mem": 32, "instances": 0,
                   "env": {"BIG": big}}
            status, body = scheduler.request("POST", "/v2/apps", json.dumps(app).encode(), source="127.0.0.9")
            assert status == 201, body
        grown = scheduler.rss_mb() - rss
        # A 4 MB app costs the scheduler some 40 MB with nobody listening (its copies: body, spec,
        # versions, store record, events), the 20 readers about 1 MB each on top. Each reader once
        # encoded every event itself and held it whole for its socket: the 4 MB app alone (in two
        # events) cost each of the 20 some 16 MB more, 320 MB in all.
        assert grown < 100, grown
        started = time.monotonic()
        streams = [read_stream(sock) for sock in readers]  # each stream ends: its reader was dropped
        assert time.monotonic() - started < 20
        assert all(s.endswith(b"\r\n0\r\n\r\n") for s in streams)
        heard = [s.count(b"event: api_post_event") for s in streams]
        assert all(n < 13 for n in heard), heard  # what the socket's buffers held, then the end
    finally:
        for sock in readers:
            sock.close()
    assert scheduler.request("GET", "/ping")[0] == 200


def test_a_reader_that_keeps_up_gets_every_event(scheduler: Scheduler) -> None:
    sock = scheduler.connect("127.0.3.1", timeout=10)
    sock.sendall(f"GET /v2/events?event_type=api_post_event HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: {scheduler.auth}\r\n\r\n".encode())
    try:
        time.sleep(0.5)
        big = "y" * (200 << 10)
        for index in range(3):
            app = {"id": f"/kept/app{index}", "cmd": "sleep 60", "cpus": 0.01, "mem": 32, "instances": 0,
                   "env": {"BIG": big}}
            assert scheduler.request("POST", "/v2/apps", json.dumps(app).encode(), source="127.0.0.9")[0] == 201
        seen = b""
        deadline = time.monotonic() + 10
        while seen.count(b"event: api_post_event") < 3 and time.monotonic() < deadline:
            seen += sock.recv(1 << 20)
        assert seen.count(b"event: api_post_event") == 3
    finally:
        sock.close()
