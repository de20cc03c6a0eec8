"""The security package on its own: credentials, Basic and Bearer, ACL rules, tokens, TLS, bundles.

The servers' use of it is tested against running processes elsewhere in tests/security/.
"""
from __future__ import annotations

import base64
import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import jwt
import pytest

from framework.errors import SecurityError
from framework.security import tokens
from framework.security.acls import Acls
from framework.security.authn import BasicAuthenticator, BearerAuthenticator, Principal, Realm, Unauthorized
from framework.security.binding import check_binding
from framework.security.bundle import Bundle
from framework.security.client import load as load_client
from framework.security.credentials import (Role, credentials_from, load_credential, load_credentials,
                                            parse_user_password, read_secret_file)
from framework.security.tls import Tls, TlsError


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- credentials --------------------------------------------------------------------------

def test_mesos_credentials_file_and_roles(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": [{"principal": "ops", "secret": "s1"},
                                                {"principal": "eye", "secret": "s2", "role": "viewer"}]}))
    credentials = load_credentials(path)
    assert credentials.check("ops", "s1") and not credentials.check("ops", "s2")
    assert not credentials.check("nobody", "s1")
    assert credentials.role("ops") == Role.ADMIN and credentials.role("eye") == Role.VIEWER


@pytest.mark.parametrize("document, message", [
    ({"credentials": []}, "holds no credentials"),
    ({"credentials": [{"principal": "a"}]}, "'secret'"),
    ({"credentials": [{"principal": "a:b", "secret": "s"}]}, "holds a ':'"),
    ({"credentials": [{"principal": "a", "secret": "s", "role": "root"}]}, "role 'root'"),
    ([1, 2], "'credentials' list"),
])
def test_bad_credentials_files_name_the_problem(tmp_path: Path, document: object, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(document))
    with pytest.raises(SecurityError, match=message):
        load_credentials(path)


def test_single_credential_and_marathon_forms(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text('{"principal": "agent-a", "secret": "x"}')
    assert load_credential(path).principal == "agent-a"
    assert parse_user_password("admin:pa:ss").principal == "admin:pa"  # Marathon's (.+):(.+)
    with pytest.raises(SecurityError):
        parse_user_password("nocolon")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    assert read_secret_file(secret) == "s3cret\n"  # read whole, as Marathon does


# -- authentication -----------------------------------------------------------------------

@pytest.fixture
def realm() -> Realm:
    return Realm("mesos-master-readwrite", [BasicAuthenticator(credentials_from({"ops": "s3cret"}))])


def test_basic_authenticates_exactly_two_parts(realm: Realm) -> None:
    assert realm.authenticate(basic("ops", "s3cret")) == Principal("ops")
    assert isinstance(realm.authenticate(basic("ops", "s3cret:extra")), Unauthorized)


@pytest.mark.parametrize("header", [
    None, "", "Basic", "Basic !!!notbase64", "Basic " + base64.b64encode(b"nocolon").decode(),
    "Basic " + base64.b64encode("ops:s3crét".encode()).decode(), "Basic " + "A" * 65536,
    "Bearer abc", "Basic  " + base64.b64encode(b"ops:s3cret").decode(), "basic " + base64.b64encode(b"ops:s3cret").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(), "Digest username=ops",
])
def test_malformed_headers_are_401_with_the_challenge(realm: Realm, header: str | None) -> None:
    outcome = realm.authenticate(header)
    assert isinstance(outcome, Unauthorized)
    assert outcome.challenge == 'Basic realm="mesos-master-readwrite"'
    assert outcome.body == "401 Unauthorized."


def test_combined_realm_joins_challenges_and_describes_bad_tokens() -> None:
    key = b"k" * 32
    realm = Realm("mesos-agent-executor", [BasicAuthenticator(credentials_from({"a": "b"})),
                                           BearerAuthenticator(key)])
    none = realm.authenticate(None)
    assert isinstance(none, Unauthorized)
    assert none.challenge == 'Basic realm="mesos-agent-executor",Bearer realm="mesos-agent-executor"'
    forged = realm.authenticate("Bearer " + tokens.issue(b"x" * 32, framework_id="f", executor_id="e",
                                                         container_id="c"))
    assert isinstance(forged, Unauthorized)
    assert 'error="invalid_token"' in forged.challenge and "signature" in forged.challenge
    good = realm.authenticate("Bearer " + tokens.issue(key, framework_id="f", executor_id="e", container_id="c"))
    assert good == Principal(None, {"cid": "c", "eid": "e", "fid": "f"})


# -- executor tokens -------------------------------------------------------------------------

def test_token_has_mesos_header_and_claims() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    token = tokens.issue(key, framework_id="F", executor_id="E", container_id="C")
    header, payload, _ = token.split(".")
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    assert base64.urlsafe_b64decode(pad(header)) == b'{"alg":"HS256","typ":"JWT"}'
    assert base64.urlsafe_b64decode(pad(payload)) == b'{"cid":"C","eid":"E","fid":"F"}'
    assert "=" not in token
    assert tokens.verify(key, token) == {"cid": "C", "eid": "E", "fid": "F"}


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-3],                                   # truncated signature
    lambda t: t.split(".")[0] + "." + t.split(".")[1],  # no signature
    lambda t: "x" + t,                                  # garbled header
    lambda t: jwt.encode({"cid": "C", "eid": "E", "fid": "F"}, "", algorithm="none"),  # alg none
    lambda t: jwt.encode({"cid": "C", "eid": "E", "fid": "F", "exp": 1}, b"0123456789abcdef0123456789abcdef",
                         algorithm="HS256"),            # expired
    lambda t: jwt.encode({"sub": "x"}, b"0123456789abcdef0123456789abcdef", algorithm="HS256"),  # no claims
])
def test_tampered_tokens_are_refused(mangle) -> None:  # noqa: ANN001
    key = b"0123456789abcdef0123456789abcdef"
    token = mangle(tokens.issue(key, framework_id="F", executor_id="E", container_id="C"))
    with pytest.raises(tokens.TokenError):
        tokens.verify(key, token)


def test_short_keys_are_refused(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"short")
    with pytest.raises(SecurityError, match="at least 32"):
        tokens.load_key(tmp_path / "k")


# -- ACLs ---------------------------------------------------------------------------------------

def test_acl_rules_follow_the_mesos_match_and_allow_tables() -> None:
    acls = Acls.from_json({
        "permissive": False,
        "run_tasks": [{"principals": {"values": ["marathon"]}, "users": {"values": ["nobody"]}},
                      {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
                      {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
        "teardown_frameworks": [{"principals": {"type": "ANY"}, "framework_principals": {"type": "ANY"}}],
    })
    assert acls.authorized("run_tasks", "marathon", "nobody")
    assert not acls.authorized("run_tasks", "marathon", "root")   # matched by the NONE entry: a deny
    assert acls.authorized("run_tasks", "ops", "root")
    assert not acls.authorized("run_tasks", None, "nobody")       # no principal: ANY, never in 'values'
    assert acls.authorized("teardown_frameworks", None, "x")
    assert not acls.authorized("view_tasks", "ops", "root")       # no entry: permissive false
    assert Acls.from_json({"view_tasks": []}).authorized("view_tasks", "ops", "root")  # permissive default


def test_several_objects_must_each_be_allowed() -> None:
    acls = Acls.from_json({"permissive": False,
                           "register_frameworks": [{"principals": {"values": ["a"]}, "roles": {"values": ["r1"]}}]})
    assert acls.authorized("register_frameworks", "a", ["r1"])
    assert not acls.authorized("register_frameworks", "a", ["r1", "r2"])


@pytest.mark.parametrize("document, message", [
    ({"run_task": []}, "unknown ACL action 'run_task'"),
    ({"run_tasks": [{"principals": {"type": "ANY"}}]}, "exactly 'principals' and 'users'"),
    ({"run_tasks": [{"principals": {"type": "SOME"}, "users": {"type": "ANY"}}]}, "needs 'values'"),
    ({"permissive": "no"}, "'permissive'"),
])
def test_bad_acl_files_are_refused(document: dict, message: str) -> None:
    with pytest.raises(SecurityError, match=message):
        Acls.from_json(document)


# -- TLS, bundles, binding -----------------------------------------------------------------------

def _serve_once(context: ssl.SSLContext) -> tuple[int, threading.Thread, list]:
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list = []

    def serve() -> None:
        with listener:
            peer, _ = listener.accept()
            try:
                with context.wrap_socket(peer, server_side=True) as tls:
                    tls.sendall(tls.recv(5))
            except (ssl.SSLError, OSError) as error:
                errors.append(error)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, errors


def test_bundle_certificates_verify_and_mutual_tls_needs_a_client_cert(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "security").ensure(agents=["agent1"])
    cert, key = bundle.certificate("cluster", ["127.0.0.1", "localhost"])
    server = Tls.resolve(cert=str(cert), key=str(key), ca=str(bundle.ca_cert), require_client_cert=True, environ={})
    assert server is not None
    port, thread, errors = _serve_once(server.server_context())
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with server.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"hello")
            assert tls.recv(5) == b"hello"
    thread.join(5)

    port, thread, errors = _serve_once(server.server_context())
    anonymous = Tls.client(ca=str(bundle.ca_cert)).client_context()
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with anonymous.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"hello")
                tls.recv(5)
    thread.join(5)
    assert errors  # the server refused the handshake

    other = Bundle(tmp_path / "other")
    other._ensure_ca()  # noqa: SLF001
    port, thread, _ = _serve_once(server.server_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            Tls.client(ca=str(other.ca_cert)).client_context().wrap_socket(raw, server_hostname="127.0.0.1")
    thread.join(5)


def test_bundle_files_are_private_and_reused(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "security").ensure(agents=["agent1", "agent2"])
    cert, _ = bundle.certificate("cluster", ["127.0.0.1"])
    first = {p.name: p.read_bytes() for p in bundle.directory.iterdir()}
    assert stat.S_IMODE(bundle.directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in bundle.directory.iterdir())
    again = Bundle(tmp_path / "security").ensure(agents=["agent1", "agent2"])
    again.certificate("cluster", ["127.0.0.1"])
    assert {p.name: p.read_bytes() for p in again.directory.iterdir()} == first
    assert load_credential(again.agent_credential_file("agent2")).principal == "agent-agent2"
    assert load_credentials(again.users_file).role("viewer") == Role.VIEWER
    Acls.load(again.acls_file)  # what we generate, we can read
    again.certificate("cluster", ["127.0.0.1", "10.1.2.3"])  # a new address: issued again
    assert cert.read_bytes() != first["cluster.pem"]


def test_libprocess_environment_is_honoured(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "s")
    cert, key = bundle.certificate("c", ["127.0.0.1"])
    assert Tls.resolve(environ={}) is None
    with pytest.raises(TlsError, match="SSL requires key"):
        Tls.resolve(environ={"LIBPROCESS_SSL_ENABLED": "true"})
    tls = Tls.resolve(environ={"SSL_ENABLED": "1", "SSL_CERT_FILE": str(cert), "SSL_KEY_FILE": str(key),
                               "LIBPROCESS_SSL_CA_FILE": str(bundle.ca_cert), "LIBPROCESS_SSL_REQUIRE_CERT": "true"})
    assert tls is not None and tls.require_client_cert and tls.verify_server
    with pytest.raises(TlsError, match="not true, false"):
        Tls.resolve(environ={"LIBPROCESS_SSL_ENABLED": "yes"})
    child = tls.child_environment()
    assert Tls.resolve_client(child) is not None and child["LIBPROCESS_SSL_VERIFY_SERVER_CERT"] == "true"


def test_open_binding_is_refused_off_loopback() -> None:
    check_binding("master", "127.0.0.1", ["authentication (--credentials)"], insecure=False)
    check_binding("master", "10.0.0.5", [], insecure=False)
    check_binding("master", "10.0.0.5", ["TLS (--tls-cert)"], insecure=True)
    with pytest.raises(SecurityError, match=r"--tls-cert.*--insecure"):
        check_binding("master", "10.0.0.5", ["TLS (--tls-cert)"], insecure=False)
    with pytest.raises(SecurityError):
        check_binding("agent", "0.0.0.0", ["authentication"], insecure=False)


def test_client_settings_are_found_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_client(environ={}).auth is None
    (tmp_path / ".dockyard").mkdir()
    (tmp_path / ".dockyard" / "client.json").write_text(json.dumps(
        {"url": "https://127.0.0.1:8080", "principal": "operator", "secret": "s", "ca": "security/ca.pem"}))
    settings = load_client(environ={})
    assert settings.auth == ("operator", "s")
    assert settings.ca == str(tmp_path / ".dockyard" / "security" / "ca.pem")
    assert load_client(environ={}, url="http://other:1").url == "http://other:1"
    (tmp_path / "bad.json").write_text('{"url": "x", "password": "p"}')
    with pytest.raises(SecurityError, match="unknown field"):
        load_client(environ={"DOCKYARD_CONFIG": str(tmp_path / "bad.json")})


def test_bundles_from_one_seed_agree_across_machines(tmp_path: Path) -> None:
    seed = b"s" * 32
    control = Bundle(tmp_path / "control", seed=seed).ensure(agents=["agent1"])
    agent = Bundle(tmp_path / "agent1", seed=seed).ensure(agents=["agent1"])
    assert control.operator == agent.operator
    assert control.executor_key_file.read_bytes() == agent.executor_key_file.read_bytes()
    assert control.identity("agent-agent1") == agent.identity("agent-agent1")
    assert Bundle(tmp_path / "other", seed=b"t" * 32).ensure().operator != control.operator
    # A certificate issued on the control node verifies with the agent node's own copy of the CA.
    cert, key = control.certificate("control", ["127.0.0.1"])
    server = Tls.resolve(cert=str(cert), key=str(key), environ={})
    assert server is not None
    port, thread, errors = _serve_once(server.server_context())
    agent.certificate("agent1", ["127.0.0.2"])  # makes the agent's CA copy
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with Tls.client(ca=str(agent.ca_cert)).client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"hello")
            assert tls.recv(5) == b"hello"
    thread.join(5)
    assert not errors
