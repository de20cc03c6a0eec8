"""framework/security/peer.py: how the scheduler calls the master, the agents and the leader,
and framework/security/client.py's refusal lines."""
from __future__ import annotations

import http.server
import json
import ssl
import threading
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from framework.security.bundle import Bundle
from framework.security.client import ClientConfig
from framework.security.peer import Peer
from framework.security.tls import Tls


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("peer") / "security").ensure()


@pytest.fixture
def mutual_server(bundle: Bundle) -> Iterator[tuple[str, list[dict]]]:
    """An HTTPS server that demands a client certificate of the bundle's CA and records what it saw."""
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            seen.append({"authorization": self.headers.get("Authorization"),
                         "client": dict(x[0] for x in peer["subject"])["commonName"] if peer else None})
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    cert, key = bundle.certificate("cluster", ["127.0.0.1", "localhost"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = Tls(cert=str(cert), key=str(key), ca_file=str(bundle.ca_cert),
                  require_client_cert=True).server_context()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def scheduler_peer(bundle: Bundle) -> Peer:
    cert, key = bundle.certificate("cluster", ["127.0.0.1", "localhost"])
    tls = Tls.resolve(str(cert), str(key), str(bundle.ca_cert), environ={})
    return Peer("dockyard", bundle.scheduler_secret_file.read_text(), tls)


def test_urls_follow_tls_unless_the_address_names_its_scheme(bundle: Bundle) -> None:
    plain, secured = Peer(), scheduler_peer(bundle)
    assert plain.base_url("127.0.0.1:5050") == "http://127.0.0.1:5050"
    assert secured.base_url("127.0.0.1:5050") == "https://127.0.0.1:5050"
    assert secured.base_url("http://127.0.0.1:5050/master") == "http://127.0.0.1:5050"
    assert plain.headers() == {} and plain.auth is None and plain.ssl_context() is None
    assert plain.httpx_options() == {"auth": None, "verify": True}
    assert secured.headers()["Authorization"].startswith("Basic ")
    assert secured.secret not in repr(secured)


def test_reads_present_our_principal_and_certificate(bundle: Bundle, mutual_server) -> None:  # noqa: ANN001
    url, seen = mutual_server
    peer = scheduler_peer(bundle)
    assert peer.get_json(url + "/state") == {"ok": True}
    with httpx.Client(**peer.httpx_options()) as client:
        assert client.get(url + "/state").json() == {"ok": True}
    assert [s["client"] for s in seen] == ["cluster", "cluster"]
    assert seen[0]["authorization"] == seen[1]["authorization"] == peer.headers()["Authorization"]
    # Without our certificate the server does not talk; without the CA we do not trust it.
    with pytest.raises((ssl.SSLError, OSError)):
        Peer(tls=Tls.client(ca=str(bundle.ca_cert))).get_json(url + "/state")
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/state", verify=True)


def test_refusal_lines_say_who_and_from_where(tmp_path: Path) -> None:
    anonymous = ClientConfig()
    line = anonymous.refusal(401, "the scheduler at http://h:8080", "Unauthorized:\n no credentials")
    assert line == ("the scheduler at http://h:8080 answered 401 Unauthorized to no credentials (no client "
                    "settings found: --config FILE, $DOCKYARD_CONFIG or ./.dockyard/client.json): "
                    "Unauthorized: no credentials")
    viewer = ClientConfig(principal="viewer", secret="s", source=str(tmp_path / "c.json"))
    line = viewer.refusal(403, "the agent at https://a:5051", "x" * 1000)
    assert line.startswith(f"the agent at https://a:5051 answered 403 Forbidden to principal 'viewer' "
                           f"(credentials from {tmp_path / 'c.json'}): x")
    assert len(line) < 500  # a long answer is cut, the line stays one line
