"""The agent's security settings, read once from its flags (docs/security.md).

What Mesos's agent does, with its flag names (src/slave/flags.cpp, slave.cpp
`initialize`, slave/http.cpp `executor`, `verifyExecutorClaims`):

- `--authenticate-http-readonly`: `/state`, `/files/*`, `/monitor/statistics`,
  `/metrics*` need HTTP Basic from `--http-credentials` (realm `mesos-agent-readonly`);
- `--authenticate-http-readwrite`: `/api/v1`, the debug API (realm `mesos-agent-readwrite`),
  which with executor authentication also takes executor tokens (each confined to its own
  container there: framework/local/agent/nested.py);
- `--authenticate-http-executors`: the executor API needs the executor's own
  token (realm `mesos-agent-executor`, Bearer only), and the token's claims must
  name the framework, executor and *current* container of the call;
- `--executor-secret-key` (alias `--jwt-secret-key`): every executor launch gets
  a token in `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, even with executor
  authentication off (slave.cpp `generateSecret`);
- `--credential`: who the agent is to the master (HTTP Basic on every call);
- `--acls`: `access_sandboxes` decides who reads which sandbox (files API);
- `--tls-*` or `LIBPROCESS_SSL_*`: TLS on the agent's port, to the master, and
  for its executors (`tls.child_environment()`).
"""
from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from framework.errors import SecurityError
from framework.local.agent.link import MasterAccess
from framework.local.agent.sandbox import TOKEN_ENV
from framework.security.acls import ALLOW_ALL, Acls
from framework.security.authn import BasicAuthenticator, BearerAuthenticator, Principal, Realm
from framework.security.credentials import Credential, Credentials, load_credential, load_credentials
from framework.security.gate import Access, Gate, text_refusal
from framework.security.tls import Tls, TlsError

log = logging.getLogger(__name__)

READONLY_REALM = "mesos-agent-readonly"
READWRITE_REALM = "mesos-agent-readwrite"
EXECUTOR_REALM = "mesos-agent-executor"


@dataclass(frozen=True)
class AgentSecurity:
    """Everything security-related the agent was started with; the default is all off."""

    http_credentials: Credentials | None = None
    authenticate_readonly: bool = False
    authenticate_readwrite: bool = False
    authenticate_executors: bool = False
    executor_key: bytes | None = field(default=None, repr=False)
    credential: Credential | None = None
    acls: Acls = ALLOW_ALL
    tls: Tls | None = None
    insecure: bool = False

    @classmethod
    def from_flags(cls, *, http_credentials: str | Path | None = None, authenticate_readonly: bool = False,
                   authenticate_readwrite: bool = False, authenticate_executors: bool = False,
                   executor_secret_key: str | Path | None = None, credential: str | Path | None = None,
                   acls: str | Path | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                   tls_ca: str | None = None, tls_require_client_cert: bool = False, insecure: bool = False,
                   environ: Mapping[str, str] | None = None) -> "AgentSecurity":
        """Read every file once; SecurityError names the flag of the first problem."""
        credentials = None
        if http_credentials is not None:
            credentials = _flagged(load_credentials, http_credentials, "--http-credentials")
        for wanted, realm in ((authenticate_readonly, READONLY_REALM), (authenticate_readwrite, READWRITE_REALM)):
            if wanted and credentials is None:
                raise SecurityError(f"No credentials provided for the default 'basic' HTTP authenticator for "
                                    f"realm '{realm}' (see --http-credentials)")
        key = None
        if executor_secret_key is not None:
            from framework.security.tokens import load_key

            key = _flagged(load_key, executor_secret_key, "--executor-secret-key")
            _warn_if_open(Path(executor_secret_key))
        if authenticate_executors and key is None:
            raise SecurityError("--executor-secret-key (alias --jwt-secret-key) must be specified when "
                                "--authenticate-http-executors is set")
        own = None
        if credential is not None:
            own = _flagged(load_credential, credential, "--credential")
            log.info("agent using credential for: %s", own.principal)
        rules = _flagged(Acls.load, acls, "--acls") if acls is not None else ALLOW_ALL
        try:
            tls = Tls.resolve(cert=tls_cert, key=tls_key, ca=tls_ca, require_client_cert=tls_require_client_cert,
                              environ=environ)
        except TlsError as error:
            raise SecurityError(str(error)) from None
        if tls is not None and tls.verify_server and not (tls.ca_file or tls.ca_dir):
            log.warning("TLS without --tls-ca: the master's certificate, and this agent's for its executors, "
                        "are verified against the system's CAs only")
        return cls(http_credentials=credentials, authenticate_readonly=authenticate_readonly,
                   authenticate_readwrite=authenticate_readwrite, authenticate_executors=authenticate_executors,
                   executor_key=key, credential=own, acls=rules, tls=tls, insecure=insecure)

    # -- serving ------------------------------------------------------------------------------
    def gate(self) -> Gate:
        """The agent's realms: Basic for the operator ones, executor tokens only for executors."""
        realms: dict[Access, Realm] = {}
        if self.authenticate_readonly and self.http_credentials is not None:
            realms[Access.READ] = Realm(READONLY_REALM, [BasicAuthenticator(self.http_credentials)])
        tokens = BearerAuthenticator(self.executor_key) \
            if self.authenticate_executors and self.executor_key is not None else None
        if self.authenticate_readwrite and self.http_credentials is not None:
            # With executor authentication Mesos takes executor tokens here too (its `basic,jwt`
            # combined authenticator): an executor drives nested containers under its own.
            realms[Access.WRITE] = Realm(READWRITE_REALM, [BasicAuthenticator(self.http_credentials),
                                                           *([tokens] if tokens else [])])
        if tokens is not None:
            realms[Access.EXECUTOR] = Realm(EXECUTOR_REALM, [tokens])
        return Gate(realms=realms, render=text_refusal)

    def missing(self) -> list[str]:
        """What is off, each with the flags that turn it on (for `check_binding`)."""
        missing = []
        off = [flag for flag, on in (("--authenticate-http-readonly", self.authenticate_readonly),
                                     ("--authenticate-http-readwrite", self.authenticate_readwrite),
                                     ("--authenticate-http-executors", self.authenticate_executors)) if not on]
        if off:
            missing.append(f"authentication ({', '.join(off)}, with --http-credentials and "
                           f"--executor-secret-key)")
        if self.tls is None:
            missing.append("TLS (--tls-cert and --tls-key, or LIBPROCESS_SSL_*)")
        return missing

    def uvicorn_options(self) -> dict:
        return self.tls.uvicorn_options() if self.tls is not None else {}

    # -- executors -------------------------------------------------------------------------------
    def executor_environment(self, *, framework_id: str, executor_id: str, container_id: str) -> dict[str, str]:
        """What an executor needs to reach us: its token, and TLS settings when we serve TLS."""
        env: dict[str, str] = {}
        if self.executor_key is not None:
            from framework.security.tokens import issue

            # Deterministic: an executor recovered after an agent restart keeps a valid token,
            # and none is ever checkpointed.
            env[TOKEN_ENV] = issue(self.executor_key, framework_id=framework_id, executor_id=executor_id,
                                   container_id=container_id)
        if self.tls is not None:
            env.update(self.tls.child_environment())
        return env

    # -- the master --------------------------------------------------------------------------------
    @property
    def master_scheme(self) -> str:
        return "https" if self.tls is not None else "http"


def verify_executor_claims(principal: Principal, framework_id: str, executor_id: str,
                           container_id: str) -> str | None:
    """Why an executor token may not make this call (slave/http.cpp `verifyExecutorClaims`), or None."""
    claims = principal.claims
    shown = principal_json(principal)
    if claims.get("fid") != framework_id:
        return (f"Authenticated principal '{shown}' does not contain an 'fid' claim with the framework ID "
                f"{framework_id}, which is set in the call")
    if claims.get("eid") != executor_id:
        return (f"Authenticated principal '{shown}' does not contain an 'eid' claim with the executor ID "
                f"{executor_id}, which is set in the call")
    if claims.get("cid") != container_id:
        return f"Authenticated principal '{shown}' does not contain a 'cid' claim with the correct active ContainerID"
    return None


def principal_json(principal: Principal) -> str:
    """A principal as libprocess prints one: the bare value, else `{"claims": {...}}` (http.cpp `jsonify`)."""
    if principal.value is not None and not principal.claims:
        return principal.value
    document: dict = {}
    if principal.value is not None:
        document["value"] = principal.value
    if principal.claims:
        document["claims"] = dict(sorted(principal.claims.items()))
    return json.dumps(document, separators=(",", ":"))


def _flagged(loader, path, flag: str):  # noqa: ANN001, ANN202 - one loader of framework.security each
    try:
        return loader(path)
    except SecurityError as error:
        raise SecurityError(f"{error} (see {flag})") from None


def _warn_if_open(path: Path) -> None:
    """As Mesos: a key readable by others still works, but is worth a warning."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IXOTH):
        log.warning("permissions on executor secret key file '%s' are too open; it is recommended that your "
                    "key file is NOT accessible by others", path)


def master_access(security: AgentSecurity) -> MasterAccess:
    """How the agent calls its master: its credential, and TLS verifying the master when it has TLS."""
    credential = security.credential
    return MasterAccess(ssl=security.tls.client_context() if security.tls is not None else None,
                        principal=credential.principal if credential else None,
                        secret=credential.secret if credential else None)
