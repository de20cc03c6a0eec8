"""A `dockyard scheduler` process subscribed to a test cluster, and a small JSON client for its API.

Shared by the jobs, services and security tests so each starts the scheduler the
same way (one place to change its flags) and talks to it the same way. It is
secured as its cluster is (tests/support/cluster.py): the framework principal and
secret towards the master, the bundle's users on its API, TLS when the cluster
has it; `call`/`status` act as the operator.

    with SchedulerProcess.start(cluster, workdir, clock=True) as scheduler:
        scheduler.call("POST", "/v1/jobs", {...})          # as the operator; raises on 4xx/5xx
        scheduler.as_(cluster.bundle.viewer).json("GET", "/v1/jobs")   # (status, JSON)
        scheduler.client_file                              # client.json for the CLI's --config
        scheduler.set_clock_offset(60)    # only with clock=True: the hidden --clock-file
"""
from __future__ import annotations

import io
import json
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from framework.security.bundle import Identity

from .procs import Process, dockyard, free_port, wait_for
from .security import Endpoint, client_context, tls_flags, write_client_file

if TYPE_CHECKING:
    from .cluster import Cluster

S = TypeVar("S", bound="SchedulerProcess")
T = TypeVar("T")


class SchedulerProcess:
    """One scheduler process subscribed to a master; stopped (whole process group) by `stop()`."""

    def __init__(self, api: Endpoint, process: Process, workdir: Path, clock_file: Path | None = None,
                 client_file: Path | None = None) -> None:
        self.api = api
        self.process = process
        self.workdir = workdir
        self.clock_file = clock_file
        self.client_file = client_file

    @classmethod
    def start(cls: type[S], cluster: "Cluster", workdir: Path, *extra: str, clock: bool = False,
              log_name: str = "scheduler.log", port: int | None = None, tls: bool = False,
              mutual_tls: bool = False, subscribed: bool = True) -> S:
        """Start it with its data under `workdir`, secured as `cluster` is, and wait until it has
        subscribed (`subscribed=False`: until it serves, e.g. when the master must refuse it).

        `tls=True` (or `mutual_tls=True`) on a cluster without TLS puts TLS on the scheduler alone:
        the master is then named `http://` explicitly. `extra` flags come last, so they win over the defaults."""
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        own_tls = cluster.tls or bool(tls) or mutual_tls
        master = cluster.master_uri
        flags = [f for f in cluster.security_flags("scheduler") if f != "--insecure"]
        if own_tls and not cluster.tls:
            assert cluster.bundle is not None, "TLS needs the cluster's bundle"
            flags += tls_flags(cluster.bundle, mutual=mutual_tls)
            master = f"http://{cluster.master_address}"
        elif own_tls and mutual_tls and not cluster.mutual_tls:
            flags.append("--tls-require-client-cert")
        argv = ["scheduler", "--master", master, "--port", str(port), "--data-dir", str(workdir / "data"),
                *flags, *extra]
        clock_file = None
        if clock:
            clock_file = workdir / "clock-offset"
            clock_file.write_text("0")
            argv += ["--clock-file", str(clock_file)]
        process = Process(dockyard(*argv), workdir / log_name)
        context = client_context(cluster.bundle) if own_tls and cluster.bundle is not None else None
        api = Endpoint(f"{'https' if own_tls else 'http'}://127.0.0.1:{port}", cluster.operator, context)
        client_file = write_client_file(workdir / "client.json", api, cluster.master_api(), cluster.bundle)
        ready = "/health" if subscribed else "/ping"
        try:
            wait_for(lambda: not process.alive() or api.ok(ready), timeout=30,
                     what=f"scheduler {'subscribed' if subscribed else 'serving'}")
        except TimeoutError as error:
            process.stop()
            raise TimeoutError(f"{error}\n{process.output()[-3000:]}") from None
        if not process.alive():
            process.stop()
            raise RuntimeError(f"the scheduler exited:\n{process.output()[-3000:]}")
        return cls(api, process, workdir, clock_file, client_file)

    # -- where ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def address(self) -> str:
        return self.api.address

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def as_(self, identity: Identity | None) -> Endpoint:
        """The API as another caller (None: without credentials)."""
        return self.api.as_(identity)

    # -- calls as the operator ----------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer; a 4xx/5xx raises urllib.error.HTTPError (with the body to read)."""
        status, headers, raw = self.api.call(method, path, body)
        if status >= 400:
            raise urllib.error.HTTPError(self.url + path, status, raw.decode(errors="replace")[:300],
                                         headers, io.BytesIO(raw))  # type: ignore[arg-type]
        return _json(raw)

    def status(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, JSON body) without raising on 4xx/5xx."""
        status, _, raw = self.api.call(method, path, body)
        return status, _json(raw)

    def health(self) -> dict:
        """What `/health` says (open); {} while it does not answer."""
        try:
            _, body = self.api.as_(None).json("GET", "/health", timeout=3)
        except OSError:
            return {}
        return body if isinstance(body, dict) else {}

    def wait_until(self, look: Callable[[], T], done: Callable[[T], bool], what: str,
                   timeout: float = 30) -> T:
        """Poll `look()` until `done` holds; on timeout fail with the last look and the scheduler's log."""
        def ready() -> T | None:
            value = look()
            return value if done(value) else None
        try:
            return wait_for(ready, timeout=timeout, what=what)  # type: ignore[return-value]
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {look()}\n{self.process.output()[-4000:]}") from None

    def set_clock_offset(self, seconds: float) -> None:
        """Move the scheduler's clock (real time + offset); needs `clock=True`."""
        if self.clock_file is None:
            raise RuntimeError("started without clock=True: no --clock-file to move")
        self.clock_file.write_text(repr(seconds))

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _json(raw: bytes) -> Any:
    return json.loads(raw) if raw.strip() else None
