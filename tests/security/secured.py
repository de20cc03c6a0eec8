"""A `dockyard scheduler` process started with security flags, and calls made as one identity.

tests/support/scheduler.py waits on plain-HTTP `/health` (which needs a master);
this waits on `/ping` (open, as Marathon's) over HTTP or HTTPS, so a scheduler
serving TLS, or one whose framework is not subscribed, can be started too.

    bundle = Bundle(tmp_path / "security").ensure()
    with SecuredScheduler.start(master, tmp_path / "s", bundle, "--http-users", users, tls=True) as s:
        s.call("GET", "/v2/apps", bundle.viewer)   # (status, lower-case headers, body)
"""
from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

from framework.security.bundle import Bundle, Identity
from framework.security.tls import Tls
from tests.support.procs import Process, dockyard, free_port, wait_for
from tests.support.security import call, master_flags, tls_flags


def client_context(bundle: Bundle, with_cert: bool = True) -> ssl.SSLContext:
    """Trusts the bundle's CA; presents the bundle's certificate (mutual TLS) unless told not to."""
    cert, key = bundle.certificate("cluster", ["127.0.0.1", "localhost"])
    if with_cert:
        return Tls.client(ca=str(bundle.ca_cert), cert=str(cert), key=str(key)).client_context()
    return Tls.client(ca=str(bundle.ca_cert)).client_context()


class SecuredScheduler:
    def __init__(self, process: Process, port: int, scheme: str, context: ssl.SSLContext | None) -> None:
        self.process = process
        self.port = port
        self.scheme = scheme
        self.context = context

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, master: str, workdir: Path, bundle: Bundle, *flags: str, tls: bool = False, mutual: bool = False,
              log_name: str = "scheduler.log", port: int | None = None) -> "SecuredScheduler":
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        argv = ["scheduler", "--master", master, "--port", str(port), "--data-dir", str(workdir / "data"), *flags]
        if tls:
            argv += tls_flags(bundle, mutual=mutual)
        process = Process(dockyard(*argv), workdir / log_name)
        scheduler = cls(process, port, "https" if tls else "http", client_context(bundle) if tls else None)

        def serving() -> bool:
            if not process.alive():
                return True
            try:
                return scheduler.call("GET", "/ping", timeout=2)[0] == 200
            except OSError:
                return False
        try:
            wait_for(serving, timeout=30, what="the scheduler serving /ping")
        except TimeoutError as error:
            process.stop()
            raise TimeoutError(f"{error}\n{process.output()[-3000:]}") from None
        if not process.alive():
            raise RuntimeError(f"the scheduler exited:\n{process.output()[-3000:]}")
        return scheduler

    def call(self, method: str, path: str, identity: Identity | None = None, body: Any = None,
             headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        return call(method, self.url + path, identity, body, headers, context=self.context, timeout=timeout)

    def json(self, method: str, path: str, identity: Identity | None = None, body: Any = None) -> tuple[int, Any]:
        status, _, raw = self.call(method, path, identity, body)
        return status, (json.loads(raw) if raw.strip() else None)

    def health(self) -> dict:
        try:
            status, _, raw = self.call("GET", "/health", timeout=3)
        except OSError:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return {}

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> "SecuredScheduler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SecuredMaster:
    """The embedded master with a bundle's flags over mutual TLS, and no agent (the scheduler's
    side of it is what is tested); started here because tests/support/cluster.py speaks plain HTTP."""

    def __init__(self, process: Process, port: int, bundle: Bundle) -> None:
        self.process, self.port, self.bundle = process, port, bundle

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, workdir: Path, bundle: Bundle) -> "SecuredMaster":
        port = free_port()
        flags = [f for f in master_flags(bundle) if f != "--authenticate-agents"]
        process = Process(dockyard("master", "--ip", "127.0.0.1", "--port", str(port), "--work-dir",
                                   str(workdir / "master"), *flags, *tls_flags(bundle, mutual=True)),
                          workdir / "master.log")
        master = cls(process, port, bundle)

        def healthy() -> bool:
            if not process.alive():
                raise RuntimeError(f"the master exited:\n{process.output()[-3000:]}")
            try:
                return master.call("GET", "/health", timeout=2)[0] == 200
            except OSError:
                return False
        try:
            wait_for(healthy, timeout=30, what="the secured master")
        except BaseException:
            process.stop()
            raise
        return master

    def call(self, method: str, path: str, identity: Identity | None = None, body: Any = None,
             timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        return call(method, self.url + path, identity, body, context=client_context(self.bundle), timeout=timeout)

    def state(self) -> dict:
        status, _, body = self.call("GET", "/master/state", self.bundle.operator)
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> "SecuredMaster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
