"""The master's realms against a real `dockyard master` process: who may call what.

Mesos's realms (src/master/constants.hpp) and libprocess's answers
(3rdparty/libprocess/src/authenticator.cpp): a request that does not
authenticate gets 401 with `WWW-Authenticate: Basic realm="<realm>"` and the body
`401 Unauthorized.`, whatever its header holds, and the master keeps serving.
Start-up refuses flags that cannot work, in one line, with exit status 2.
"""
from __future__ import annotations

import base64
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle, Identity
from tests.support.cluster import Cluster
from tests.support.procs import Process, dockyard, free_port, http_ok, wait_for
from tests.support.security import authorization

SCHEDULER = "mesos-master-scheduler"
READONLY = "mesos-master-readonly"
READWRITE = "mesos-master-readwrite"
AGENTS = "dockyard-master-agents"

# (method, path, realm): every authenticated endpoint, and the /master copies Mesos serves too.
ENDPOINTS = [
    ("POST", "/api/v1/scheduler", SCHEDULER), ("POST", "/master/api/v1/scheduler", SCHEDULER),
    ("GET", "/state", READONLY), ("GET", "/state.json", READONLY), ("GET", "/frameworks", READONLY),
    ("GET", "/slaves", READONLY), ("GET", "/tasks", READONLY), ("GET", "/metrics", READONLY),
    ("GET", "/metrics/snapshot", READONLY), ("GET", "/master/state", READONLY),
    ("GET", "/master/state.json", READONLY), ("GET", "/master/frameworks", READONLY),
    ("GET", "/master/slaves", READONLY), ("GET", "/master/tasks", READONLY),
    ("POST", "/api/v1", READWRITE), ("POST", "/master/api/v1", READWRITE),
    ("POST", "/teardown", READWRITE), ("POST", "/master/teardown", READWRITE),
    ("POST", "/internal/agent", AGENTS), ("POST", "/master/internal/agent", AGENTS),
]
OPEN = ["/health", "/master/health", "/version", "/redirect", "/master/redirect"]


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


# Authorization header values (raw bytes, sent as they are) that must never authenticate.
BAD_HEADERS = {
    "missing": None,
    "empty": b"",
    "scheme only": b"Basic",
    "bad base64": b"Basic !!!not-base64!!!",
    "no colon": b"Basic " + _b64(b"operator"),
    "two colons": b"Basic " + _b64(b"operator:x:y"),
    "non-ascii": b"Basic \xff\xfe\xe9:\xe9",
    "utf-8 credentials": b"Basic " + _b64("op\u00e9rator:s\u00e9cret".encode()),
    "64 KB": b"Basic " + b"A" * 65536,
    "bearer": b"Bearer abc.def.ghi",
    "lower-case scheme": b"basic " + _b64(b"operator:x"),
    "unknown principal": b"Basic " + _b64(b"intruder:guess"),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("master-auth") / "security").ensure(agents=["a"])


@pytest.fixture(scope="module")
def master(bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master secured with the bundle as every test cluster is (each realm authenticated)."""
    with Cluster(tmp_path_factory.mktemp("master-auth-run"), agents=0, bundle=bundle).start() as running:
        yield running


def raw_request(port: int, method: str, path: str, authorization_value: bytes | None) -> tuple[int, dict, bytes]:
    """One request written byte for byte (no client library cleans the header up)."""
    body = b"{}" if method == "POST" else b""
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
            b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    if authorization_value is not None:
        head.append(b"Authorization: " + authorization_value)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    fields = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        fields[name.decode().strip().lower()] = value.decode("latin-1").strip()
    return int(status_line.split()[1]), fields, payload


@pytest.mark.parametrize("method, path, realm", ENDPOINTS)
def test_every_realm_answers_401_to_every_bad_header(master: Cluster, method: str, path: str,
                                                     realm: str) -> None:
    for name, value in BAD_HEADERS.items():
        status, fields, body = raw_request(master.master_ports[0], method, path, value)
        assert status == 401, (name, status, body[:200])
        assert fields["www-authenticate"] == f'Basic realm="{realm}"', name
        assert body == b"401 Unauthorized.", name
    assert master.master_api().as_(None).call("GET", "/health")[0] == 200  # still serving


def test_wrong_secret_and_other_realms_credentials(master: Cluster, bundle: Bundle) -> None:
    wrong = Identity("operator", bundle.operator.secret + "x")
    for method, path, _ in ENDPOINTS:
        status, _, _ = raw_request(master.master_ports[0], method, path,
                                   authorization(wrong)["Authorization"].encode())
        assert status == 401, (method, path)


def test_good_credentials_pass_and_open_endpoints_stay_open(master: Cluster, bundle: Bundle) -> None:
    operator = authorization(bundle.operator)["Authorization"].encode()
    for method, path, realm in ENDPOINTS:
        status, _, body = raw_request(master.master_ports[0], method, path, operator)
        # past the gate: the handler answers (200 for views, 400 or 404 for an empty call)
        assert status in (200, 400, 404), (method, path, status, body[:200])
    for path in OPEN:
        status, fields, _ = raw_request(master.master_ports[0], "GET", path, None)
        assert status in (200, 307), (path, status)
        assert "www-authenticate" not in fields


def _start(tmp_path: Path, *flags: str, ip: str = "127.0.0.1") -> subprocess.CompletedProcess:
    argv = dockyard("master", "--ip", ip, "--port", str(free_port()), "--work-dir", str(tmp_path / "w"), *flags)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_authentication_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    for flag, realm in (("--authenticate-http-readonly", READONLY), ("--authenticate-http-readwrite", READWRITE),
                        ("--authenticate-http-frameworks", SCHEDULER), ("--authenticate-agents", AGENTS)):
        done = _start(tmp_path, flag)
        assert done.returncode == 2, done.stderr
        assert (f"No credentials provided for the default 'basic' HTTP authenticator for realm '{realm}'"
                in done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("make, message", [
    (lambda d: ["--credentials", str(d / "missing.json"), "--authenticate-http-readonly"],
     "cannot read the credentials file"),
    (lambda d: ["--credentials", str(_write(d / "c.json", '{"credentials": [')), "--authenticate-agents"],
     "is not JSON"),
    (lambda d: ["--credentials", str(_write(d / "c.json", '{"credentials": [{"principal": "a"}]}')),
                "--authenticate-agents"], "'secret'"),
    (lambda d: ["--acls", str(_write(d / "a.json", '{"run_task": []}'))], "unknown ACL action 'run_task'"),
    (lambda d: ["--acls", str(_write(d / "a.json", "[]"))], "expected a JSON object"),
    (lambda d: ["--tls-cert", str(d / "x.pem")], "--tls-cert and --tls-key go together"),
    (lambda d: ["--tls-cert", str(d / "x.pem"), "--tls-key", str(d / "x.key")], "cannot be read"),
    (lambda d: ["--authenticate-http-frameworks", "--http-framework-authenticators", "jwt", "--credentials",
                str(d / "c.json")], "'jwt' is not supported"),
])
def test_bad_files_are_one_line_and_exit_2(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    done = _start(tmp_path, *make(tmp_path))
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_an_open_master_stays_on_loopback(tmp_path: Path, bundle: Bundle) -> None:
    done = _start(tmp_path, ip="0.0.0.0")
    assert done.returncode == 2
    for flag in ("--authenticate-http-frameworks", "--authenticate-http-readonly",
                 "--authenticate-http-readwrite", "--authenticate-agents", "--tls-cert", "--insecure"):
        assert flag in done.stderr, done.stderr
    # authentication on, TLS still off: TLS is named, authentication no more
    done = _start(tmp_path, "--credentials", str(bundle.credentials_file), "--authenticate-http-frameworks",
                  "--authenticate-http-readonly", "--authenticate-http-readwrite", "--authenticate-agents",
                  ip="0.0.0.0")
    assert done.returncode == 2 and "TLS" in done.stderr and "--authenticate-agents" not in done.stderr


def test_insecure_serves_a_network_address_open(tmp_path: Path) -> None:
    """About `--insecure` itself: started by hand, open on purpose."""
    port = free_port()
    process = Process(dockyard("master", "--ip", "0.0.0.0", "--port", str(port), "--work-dir",
                               str(tmp_path / "open"), "--insecure"), tmp_path / "open.log")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health") or not process.alive(), timeout=30)
        assert process.alive(), process.output()
        assert "(--insecure)" in process.output()  # said out loud in the log
    finally:
        process.stop()
