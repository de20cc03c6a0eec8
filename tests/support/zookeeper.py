"""A real ZooKeeper server (Debian's `zookeeper` package) on a loopback port."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

from .procs import Process, free_port, wait_for

CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


def available() -> bool:
    return Path("/usr/share/java/zookeeper.jar").exists() and shutil.which("java") is not None


def _serving(port: int) -> bool:
    """`stat` answers with the server's statistics only once it serves sessions (`ruok`
    says "imok" as soon as the port is open, while a session request may still stall)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"stat")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer.startswith(b"Zookeeper version:") and b"Mode:" in answer


class ZooKeeper:
    """Standalone ZooKeeper; `restart()` keeps its data, as a real restart does."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.process: Process | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/mesos") -> str:
        return f"zk://{self.hosts}{path}"

    def start(self) -> "ZooKeeper":
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.process = Process(
            ["java", "-Dzookeeper.4lw.commands.whitelist=ruok,stat", "-Xmx256m", "-cp", CLASSPATH,
             "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.port), str(data)],
            self.workdir / "zookeeper.log",
        )
        wait_for(lambda: _serving(self.port), timeout=60, what=f"ZooKeeper on {self.port} serving")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def expire_session(client: Any, hosts: str, timeout: float = 30.0) -> None:
    """Expire a kazoo `client`'s session for real: attach to the same session and close it
    (the server then tells `client` SESSION_EXPIRED when it next talks to it).

    `client` reconnects at once when its session moves away, and may win it back before
    our close is handled (which then goes nowhere): so again, until an attach finds the
    session already expired (the server answers it with a zero timeout)."""
    import struct
    import time

    from kazoo.protocol.serialization import Close, Connect, int_struct

    session_id, password = client.client_id
    host, port = hosts.split(",")[0].split(":")
    attach = bytes(Connect(0, 0, 10_000, session_id, password, False).serialize())
    close = int_struct.pack(1) + int_struct.pack(Close.type) + Close.serialize()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(int_struct.pack(len(attach)) + attach + int_struct.pack(len(close)) + close)
            answer = b""
            while chunk := sock.recv(4096):  # the server answers, then closes the connection
                answer += chunk
        if len(answer) >= 12 and struct.unpack("!i", answer[8:12])[0] <= 0:
            return  # length, protocol version, then the session timeout: 0 = expired
    raise AssertionError(f"session {session_id:#x} still alive after {timeout:.0f} s of closing it")
