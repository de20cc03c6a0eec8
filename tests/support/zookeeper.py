"""A real ZooKeeper server (Debian's `zookeeper` package) on a loopback port."""
from __future__ import annotations

import shutil
from pathlib import Path

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
