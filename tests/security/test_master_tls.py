"""The master serving TLS (`--tls-*` or `LIBPROCESS_SSL_*`), against real processes.

A client that does not speak TLS, or does not trust the master's CA, or (with
`--tls-require-client-cert`) has no certificate of the master's CA, fails its
handshake: it never gets an HTTP answer, least of all a 5xx, and the master goes
on serving everyone else.
"""
from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from framework.security.bundle import Bundle
from framework.security.tls import Tls
from tests.support.cluster import Cluster
from tests.support.procs import Process, dockyard, free_port, wait_for


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    made = Bundle(tmp_path_factory.mktemp("master-tls") / "security").ensure()
    made.certificate("cluster", ["127.0.0.1", "localhost"])
    return made


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Another cluster's CA and certificate: trusted by nobody here."""
    other = Bundle(tmp_path_factory.mktemp("stranger") / "security").ensure()
    other.certificate("cluster", ["127.0.0.1"])
    return other


def _trusting(bundle: Bundle, cert: bool = False) -> ssl.SSLContext:
    pem, key = (bundle.directory / "cluster.pem", bundle.directory / "cluster.key")
    return Tls.client(ca=str(bundle.ca_cert), cert=str(pem) if cert else None,
                      key=str(key) if cert else None).client_context()


@pytest.fixture(scope="module")
def tls_master(bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A secured master (the bundle's authentication) serving TLS with the bundle's certificate."""
    with Cluster(tmp_path_factory.mktemp("tls-master"), agents=0, tls=True, bundle=bundle).start() as running:
        yield running


def _plaintext(port: int) -> bytes:
    """What a plain HTTP request to the port gets back (b"" when the server just hangs up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return data


def test_the_master_serves_https_and_refuses_plaintext(tls_master: Cluster, bundle: Bundle) -> None:
    context = _trusting(bundle)
    url, port = tls_master.master_url, tls_master.master_ports[0]
    assert httpx.get(url + "/health", verify=context).status_code == 200
    assert httpx.get(url + "/version", verify=context).json()["version"]
    assert not _plaintext(port).startswith(b"HTTP/1.1 5")
    assert b"HTTP/" not in _plaintext(port)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    # one connection, several requests (keep-alive)
    with httpx.Client(verify=context) as client:
        for _ in range(3):
            assert client.get(url + "/health").status_code == 200
    operator = tls_master.operator
    assert operator is not None
    assert httpx.get(url + "/state", verify=context, auth=(operator.principal, operator.secret)).status_code == 200


def test_a_client_that_does_not_trust_the_ca_fails_its_handshake(tls_master: Cluster,
                                                                  stranger: Bundle, bundle: Bundle) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_master.master_url + "/health", verify=_trusting(stranger))
    assert httpx.get(tls_master.master_url + "/health", verify=_trusting(bundle)).status_code == 200


def test_mutual_tls_refuses_clients_without_a_certificate_of_its_ca(bundle: Bundle, stranger: Bundle,
                                                                    tmp_path: Path) -> None:
    with Cluster(tmp_path, agents=0, mutual_tls=True, bundle=bundle).start() as master:
        for context in (_trusting(bundle), _stranger_client(bundle, stranger)):
            with pytest.raises(httpx.HTTPError):
                response = httpx.get(master.master_url + "/health", verify=context, timeout=5)
                raise AssertionError(f"answered {response.status_code} without a good client certificate")
        assert httpx.get(master.master_url + "/health", verify=_trusting(bundle, cert=True)).status_code == 200
        assert master.masters[0] is not None and master.masters[0].alive()


def _stranger_client(bundle: Bundle, stranger: Bundle) -> ssl.SSLContext:
    """Trusts our CA, but presents a certificate of another CA."""
    return Tls.client(ca=str(bundle.ca_cert), cert=str(stranger.directory / "cluster.pem"),
                      key=str(stranger.directory / "cluster.key")).client_context()


def test_libprocess_ssl_environment_turns_tls_on(bundle: Bundle, tmp_path: Path) -> None:
    env = {"LIBPROCESS_SSL_ENABLED": "true", "LIBPROCESS_SSL_CERT_FILE": str(bundle.directory / "cluster.pem"),
           "LIBPROCESS_SSL_KEY_FILE": str(bundle.directory / "cluster.key"),
           "LIBPROCESS_SSL_CA_FILE": str(bundle.ca_cert)}
    port = free_port()  # started by hand: the cluster support gives TLS as flags, this test as environment
    master = Process(dockyard("master", "--ip", "127.0.0.1", "--port", str(port), "--work-dir", str(tmp_path / "m"),
                              *bundle.master_flags()), tmp_path / "master.log", env=env)
    try:
        def healthy() -> bool:
            assert master.alive(), master.output()[-3000:]
            try:
                return httpx.get(f"https://127.0.0.1:{port}/health", verify=_trusting(bundle)).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(healthy, timeout=30, what="the master serving TLS from LIBPROCESS_SSL_*")
        assert b"HTTP/" not in _plaintext(port)
    finally:
        master.stop()
