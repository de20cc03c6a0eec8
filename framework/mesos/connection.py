"""One keep-alive HTTP/1.1 connection for the drivers' calls (standard library only).

A framework's and an executor's hot path is small POSTs: an ACKNOWLEDGE per status
update, an UPDATE per task state. `http.client` spent ~190 us of CPU on each here
(headers and body in separate writes, response headers through the email parser);
this writes a request in one `sendall` and reads the answer with a few `readline`s
(~40 us). It speaks only what those calls need: a POST, and an answer framed by
Content-Length, chunked encoding or the end of the connection. Errors are the ones
`http.client` raises (OSError, `http.client.HTTPException`), so callers catch the same.

    conn = Connection("127.0.0.1", 5050, timeout=75, connect_timeout=10)
    answer = conn.post("/api/v1/scheduler", body, {"Content-Type": "application/json"})
    answer.status, answer.body, answer.will_close
"""
from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

MAX_LINE = 65536
MAX_HEADERS = 100


def parse_head(head: bytes) -> tuple[int, dict[str, str], bool]:
    """(status, headers with lower-case names, will_close) of an answer's status line and
    headers (the agent's asyncio client reads the same answers: framework/local/agent/link.py)."""
    lines = head.decode("latin-1").split("\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise http.client.BadStatusLine(lines[0].strip())
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    will_close = connection == "close" or (parts[0] == "HTTP/1.0" and connection != "keep-alive")
    return int(parts[1]), headers, will_close


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]  # lower-case names
    will_close: bool  # the server ends the connection after this answer

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class Connection:
    """Connects on first use; after an error, `close()` it and take a new one."""

    def __init__(self, host: str, port: int, timeout: float, connect_timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tls = tls
        self._sock: socket.socket | None = None
        self._reader = None
        authority = f"[{host}]" if ":" in host else host
        self._host_header = f"{authority}:{port}".encode()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        if self._sock is None:
            self._connect()
        assert self._sock is not None and self._reader is not None
        head = [b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (
            path.encode(), self._host_header, len(body))]
        head += [b"%s: %s\r\n" % (name.encode(), value.encode("latin-1")) for name, value in headers.items()]
        self._sock.sendall(b"".join(head) + b"\r\n" + body)
        return self._answer()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    # -- internals ------------------------------------------------------------
    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.timeout)
        except BaseException:
            sock.close()
            raise
        self._sock, self._reader = sock, sock.makefile("rb")

    def _line(self) -> bytes:
        assert self._reader is not None
        line = self._reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("answer line")
        return line

    def _answer(self) -> Answer:
        while True:
            line = self._line()
            if not line:
                raise http.client.RemoteDisconnected("the server closed the connection without an answer")
            status, headers, will_close = parse_head(line + self._head_rest())
            if not 100 <= status < 200:  # an interim answer (100 Continue) is followed by the real one
                break
        if status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            try:
                body = self._exactly(int(headers["content-length"]))
            except ValueError:
                raise http.client.HTTPException(f"bad Content-Length {headers['content-length']!r}") from None
        else:  # framed by the end of the connection
            assert self._reader is not None
            body, will_close = self._reader.read(), True
        return Answer(status, body, headers, will_close)

    def _head_rest(self) -> bytes:
        """The header lines after the status line, up to the blank line (not included)."""
        lines = []
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return b"".join(lines)
            lines.append(line)
        raise http.client.HTTPException(f"more than {MAX_HEADERS} headers")

    def _exactly(self, size: int) -> bytes:
        assert self._reader is not None
        data = self._reader.read(size)
        if len(data) < size:
            raise http.client.IncompleteRead(data, size - len(data))
        return data

    def _chunked(self) -> bytes:
        chunks = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise http.client.HTTPException(f"bad chunk size {size_text!r}") from None
            if size == 0:
                self._head_rest()  # trailers, up to the blank line
                return b"".join(chunks)
            chunks.append(self._exactly(size))
            self._line()  # the CRLF after each chunk
