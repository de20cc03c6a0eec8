"""`dockyard scheduler` with bad security flags or files: one clear line, exit 2, no traceback.

Also the pure part: `load_security` reads each file once into typed settings, and the
binding check names the flags that are missing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from framework.errors import SecurityError
from framework.security.bundle import Bundle
from framework.security.credentials import Role
from scheduler.security import REALM, check_scheduler_binding, load_security
from tests.support.procs import dockyard, free_port


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# (flags made from a temp dir, extra environment, what the line must say)
CASES: dict[str, tuple[Callable[[Path], list[str]], dict[str, str], str]] = {
    "missing users file": (lambda d: ["--http-users", str(d / "missing.json")], {},
                           "cannot read the credentials file"),
    "users file not JSON": (lambda d: ["--http-users", _write(d / "u.json", "{not json")], {}, "is not JSON"),
    "unknown role": (lambda d: ["--http-users", _write(d / "u.json", json.dumps(
        {"credentials": [{"principal": "ops", "secret": "s", "role": "root"}]}))], {}, "role 'root'"),
    "credentials without colon": (lambda d: ["--http-credentials", "nocolon"], {}, "USER:PASSWORD"),
    "user with a colon": (lambda d: ["--http-credentials", "ops:pa:ss"], {}, "holds a ':'"),
    "credentials from the environment": (lambda d: [], {"MESOSPHERE_HTTP_CREDENTIALS": "nocolon"},
                                         "USER:PASSWORD"),
    "secret without principal": (lambda d: ["--mesos-authentication-secret-file", _write(d / "s", "x")], {},
                                 "needs --mesos-authentication-principal"),
    "missing secret file": (lambda d: ["--mesos-authentication-principal", "dockyard",
                                       "--mesos-authentication-secret-file", str(d / "nope")], {},
                            "cannot read the secret file"),
    "cert without key": (lambda d: ["--tls-cert", _write(d / "c.pem", "x")], {}, "go together"),
    "unreadable certificate": (lambda d: ["--tls-cert", str(d / "c.pem"), "--tls-key", str(d / "k.pem")], {},
                               "cannot be read"),
    "garbage certificate": (lambda d: ["--tls-cert", _write(d / "c.pem", "x"), "--tls-key",
                                       _write(d / "k.pem", "y")], {}, "cannot load the certificate"),
    "client certs without TLS": (lambda d: ["--tls-require-client-cert"], {}, "need --tls-cert"),
    "bad realm": (lambda d: ["--http-realm", 'evil"realm'], {}, "--http-realm"),
    "open on the network": (lambda d: ["--ip", "0.0.0.0"], {},
                            "refuses to serve 0.0.0.0 open: authentication (--http-credentials"),
    "authenticated but no TLS": (lambda d: ["--ip", "0.0.0.0", "--http-credentials", "ops:pw"], {},
                                 "open: TLS (--tls-cert and --tls-key)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_flags_exit_2_with_one_line(tmp_path: Path, case: str) -> None:
    make, env, says = CASES[case]
    done = subprocess.run(dockyard("scheduler", "--master", "127.0.0.1:1", "--port", str(free_port()),
                                   "--data-dir", str(tmp_path / "data"), *make(tmp_path)),
                          capture_output=True, text=True, timeout=60,
                          env={**{k: v for k, v in os.environ.items() if k != "MESOSPHERE_HTTP_CREDENTIALS"},
                               **env})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("dockyard scheduler: ") and says in lines[0], lines[0]


def test_settings_are_read_once_into_typed_fields(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "security").ensure()
    cert, key = bundle.certificate("cluster", ["127.0.0.1"])
    security = load_security(principal="dockyard", secret_file=str(bundle.scheduler_secret_file),
                             http_credentials="ops:pass word", http_users=str(bundle.users_file),
                             tls_cert=str(cert), tls_key=str(key), tls_ca=str(bundle.ca_cert),
                             require_client_cert=True)
    assert security.principal == "dockyard" and security.secret == bundle.scheduler_secret_file.read_text()
    assert security.users is not None
    assert security.users.role("ops") == Role.ADMIN and security.users.check("ops", "pass word")
    assert security.users.role("viewer") == Role.VIEWER and security.users.role("operator") == Role.ADMIN
    assert security.realm == REALM and security.tls is not None and security.tls.require_client_cert
    assert security.missing() == []
    assert "pass word" not in repr(security) and bundle.operator.secret not in repr(security)
    assert security.peer.auth == ("dockyard", security.secret)
    assert security.peer.ssl_context() is security.peer.ssl_context()  # made once
    check_scheduler_binding(security, "0.0.0.0")  # everything on: any address


def test_no_flags_means_nothing_on_and_loopback_only() -> None:
    security = load_security()
    assert security.users is None and security.tls is None and security.principal is None
    assert not security.gate.authenticating
    check_scheduler_binding(security, "127.0.0.1")
    check_scheduler_binding(security, "::1")
    with pytest.raises(SecurityError, match="--insecure"):
        check_scheduler_binding(security, "10.0.0.1")
    check_scheduler_binding(load_security(insecure=True), "10.0.0.1")
