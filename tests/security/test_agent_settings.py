"""The agent's security settings on their own: flags into settings, the claims rule, the master lane.

The running agent is tested elsewhere in tests/security/ (test_agent_*.py).
"""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from framework.errors import SecurityError
from framework.local.agent.link import CallFailed, MasterAccess, PostConnection
from framework.local.agent.security import AgentSecurity, principal_json, verify_executor_claims
from framework.security import tokens
from framework.security.authn import Principal
from framework.security.bundle import Bundle
from framework.security.tls import Tls
from tests.support.procs import free_port, wait_for


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    bundle = Bundle(tmp_path_factory.mktemp("security") / "security").ensure(agents=["agent0"])
    bundle.certificate("cluster", ["127.0.0.1", "localhost"])
    return bundle


def test_claims_rule_and_its_messages() -> None:
    token = Principal(None, {"cid": "C", "eid": "E", "fid": "F"})
    assert verify_executor_claims(token, "F", "E", "C") is None
    shown = '{"claims":{"cid":"C","eid":"E","fid":"F"}}'
    assert verify_executor_claims(token, "G", "E", "C") == (
        f"Authenticated principal '{shown}' does not contain an 'fid' claim with the framework ID G, "
        "which is set in the call")
    assert verify_executor_claims(token, "F", "X", "C") == (
        f"Authenticated principal '{shown}' does not contain an 'eid' claim with the executor ID X, "
        "which is set in the call")
    assert verify_executor_claims(token, "F", "E", "D") == (
        f"Authenticated principal '{shown}' does not contain a 'cid' claim with the correct active ContainerID")
    # A principal with a name only (HTTP Basic) has no claims: refused the same way.
    assert "'ops' does not contain an 'fid' claim" in str(verify_executor_claims(Principal("ops"), "F", "E", "C"))
    assert principal_json(Principal("ops")) == "ops"


def test_settings_read_once_and_checked(bundle: Bundle, tmp_path: Path) -> None:
    off = AgentSecurity.from_flags(environ={})
    assert not off.gate().authenticating and off.executor_environment(
        framework_id="F", executor_id="E", container_id="C") == {}
    assert [m.split(" ")[0] for m in off.missing()] == ["authentication", "TLS"]

    # A key alone: tokens for every executor, though the executor API stays open (as Mesos).
    keyed = AgentSecurity.from_flags(executor_secret_key=bundle.executor_key_file, environ={})
    env = keyed.executor_environment(framework_id="F", executor_id="E", container_id="C")
    assert tokens.verify(bundle.executor_key_file.read_bytes(), env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"]) == {
        "cid": "C", "eid": "E", "fid": "F"}
    assert env == keyed.executor_environment(framework_id="F", executor_id="E", container_id="C")  # deterministic
    assert not keyed.gate().authenticating
    assert bundle.executor_key_file.read_text()[:16] not in repr(keyed)  # the key is never printed

    cert, key = bundle.certificate("cluster", ["127.0.0.1"])
    full = AgentSecurity.from_flags(
        http_credentials=bundle.credentials_file, authenticate_readonly=True, authenticate_readwrite=True,
        authenticate_executors=True, executor_secret_key=bundle.executor_key_file,
        credential=bundle.agent_credential_file("agent0"), acls=bundle.acls_file, tls_cert=str(cert),
        tls_key=str(key), tls_ca=str(bundle.ca_cert), environ={})
    assert full.missing() == []
    assert {r.name for r in full.gate().realms.values()} == {
        "mesos-agent-readonly", "mesos-agent-readwrite", "mesos-agent-executor"}
    env = full.executor_environment(framework_id="F", executor_id="E", container_id="C")
    assert env["LIBPROCESS_SSL_ENABLED"] == "true" and env["LIBPROCESS_SSL_CA_FILE"] == str(bundle.ca_cert)
    assert Tls.resolve_client(env) is not None
    assert full.credential is not None and full.credential.principal == "agent-agent0"

    # LIBPROCESS_SSL_* serve too, as for every libprocess process.
    from_env = AgentSecurity.from_flags(environ={"LIBPROCESS_SSL_ENABLED": "true", "LIBPROCESS_SSL_CERT_FILE":
                                                 str(cert), "LIBPROCESS_SSL_KEY_FILE": str(key)})
    assert from_env.tls is not None
    with pytest.raises(SecurityError, match="SSL requires key"):
        AgentSecurity.from_flags(environ={"LIBPROCESS_SSL_ENABLED": "1"})


class TlsEcho:
    """A TLS server answering /internal/agent with the Authorization header it got."""

    def __init__(self, bundle: Bundle) -> None:
        cert, key = bundle.certificate("cluster", ["127.0.0.1", "localhost"])
        self.port = free_port()

        async def echo(request: Request) -> Response:
            return Response(json.dumps({"authorization": request.headers.get("authorization")}), status_code=202)

        self.server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/internal/agent", echo,
                                                                            methods=["POST"])]),
                                                    host="127.0.0.1", port=self.port, log_level="warning",
                                                    ssl_certfile=str(cert), ssl_keyfile=str(key)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "TlsEcho":
        self.thread.start()
        wait_for(lambda: self.server.started, 10, what="the TLS test server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def tls_echo(bundle: Bundle) -> Iterator[TlsEcho]:
    with TlsEcho(bundle) as server:
        yield server


def test_master_lane_speaks_tls_with_the_credential(bundle: Bundle, tls_echo: TlsEcho, tmp_path: Path) -> None:
    access = MasterAccess(ssl=Tls.client(ca=str(bundle.ca_cert)).client_context(), principal="agent-a",
                          secret="s3cret")
    assert "s3cret" not in repr(access)

    async def scenario() -> None:
        connection = PostConnection(access)
        for _ in range(2):  # the second on the same connection: one handshake for both
            status, body = await connection.post(f"127.0.0.1:{tls_echo.port}", "/internal/agent", b"{}", 5)
            assert status == 202
            assert json.loads(body)["authorization"] == "Basic YWdlbnQtYTpzM2NyZXQ="
        connection.close()
        stranger = Bundle(tmp_path / "stranger")
        stranger.certificate("x", ["127.0.0.1"])
        refused = PostConnection(MasterAccess(ssl=Tls.client(ca=str(stranger.ca_cert)).client_context()))
        with pytest.raises(CallFailed, match="TLS"):
            await refused.post(f"127.0.0.1:{tls_echo.port}", "/internal/agent", b"{}", 5)

    asyncio.run(scenario())
