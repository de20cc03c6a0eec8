"""Who may call the scheduler, and who the scheduler is to Mesos: its security flags, read once.

Marathon's flags (marathon HttpConf.scala, MarathonConf.scala; docs/security.md):

- `--mesos-authentication-principal P`: `FrameworkInfo.principal` whenever given;
- `--mesos-authentication-secret-file FILE`: read whole, trailing newline
  included, as Marathon reads it; with the principal, HTTP Basic on SUBSCRIBE
  and every call to the master, and on what the scheduler reads from the master
  and the agents (Marathon's libmesos driver uses SASL; the v1 HTTP API uses Basic);
- `--http-credentials USER:PASSWORD` (or `$MESOSPHERE_HTTP_CREDENTIALS`): an admin
  of the REST API; `--http-realm` (default `Mesosphere`) names the 401 challenge.

dockyard's own: `--http-users FILE` (Mesos's credentials JSON, each entry with a
`role`: `admin`, the default, or `viewer`); `--tls-cert/--tls-key/--tls-ca/
--tls-require-client-cert` (or `LIBPROCESS_SSL_*`): serve HTTPS, speak HTTPS to
peers, verify them with the CA and present our certificate; `--insecure`: serve
a non-loopback address without authentication or TLS, on purpose.

Roles: a viewer may call every READ route (GETs, event streams); WRITE routes
(anything that changes state) are for admins. `--allow-privileged` lets admins
submit specs that reach past the container (privileged Docker, added
capabilities or devices, host-path volumes: scheduler/privileged.py); without
it nobody may. `--acls FILE` (Mesos's ACL format; only `run_tasks` is read) says
which users each caller may run tasks as (scheduler/run_as.py); without it, any.
Where Marathon answers a refused principal 403, so do we, with Marathon's
`{"message": ...}`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

from framework.errors import SecurityError
from framework.security.acls import Acls
from framework.security.authn import BasicAuthenticator, Principal, Realm
from framework.security.binding import check_binding
from framework.security.credentials import (Credentials, Role, load_credentials, parse_user_password,
                                            read_secret_file)
from framework.security.gate import OPEN_GATE, Access, Gate, json_refusal
from framework.security.peer import Peer
from framework.security.tls import Tls, TlsError

REALM = "Mesosphere"  # Marathon's --http_realm default
FORBIDDEN = "Not Authorized to perform this action!"  # what Marathon says to a principal it refuses


@dataclass(frozen=True, eq=False)
class SchedulerSecurity:
    """The scheduler's security settings; the default is what no flag means (nothing on)."""

    principal: str | None = None        # our framework principal (FrameworkInfo.principal)
    secret: str | None = None           # with `principal`: HTTP Basic towards Mesos
    users: Credentials | None = None    # who may call our API (None: nobody is asked)
    realm: str = REALM
    tls: Tls | None = None
    insecure: bool = False
    allow_privileged: bool = False  # admins may submit specs that reach past the container
    acls: Acls | None = None  # `run_tasks`: which users each caller may run tasks as (scheduler/run_as.py)

    def __repr__(self) -> str:  # never print a secret
        return (f"SchedulerSecurity(principal={self.principal!r}, users={len(self.users or ())}, "
                f"realm={self.realm!r}, tls={self.tls is not None}, insecure={self.insecure})")

    @functools.cached_property
    def peer(self) -> Peer:
        """How we call the master, the agents and the leading scheduler (one TLS context, made once)."""
        return Peer(self.principal, self.secret, self.tls)

    @functools.cached_property
    def gate(self) -> Gate:
        """Our API's gate: READ and WRITE authenticated in one realm; viewers refused on WRITE."""
        if self.users is None:
            return OPEN_GATE
        realm = Realm(self.realm, [BasicAuthenticator(self.users)])
        return Gate(realms={Access.READ: realm, Access.WRITE: realm}, permits=_role_check(self.users),
                    render=json_refusal)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def missing(self) -> list[str]:
        """What is off, each naming the flags that turn it on (for `check_binding`)."""
        off = []
        if self.users is None:
            off.append("authentication (--http-credentials USER:PASSWORD or --http-users FILE)")
        if self.tls is None:
            off.append("TLS (--tls-cert and --tls-key)")
        return off


def _role_check(users: Credentials):  # noqa: ANN202 - a Gate.permits callable
    def permits(access: Access, principal: Principal) -> str | None:
        if access != Access.WRITE or users.role(principal.value or "") == Role.ADMIN:
            return None
        return f"{FORBIDDEN} Principal '{principal.value}' is a viewer; only admins may change state"
    return permits


def _realm(name: str) -> str:
    if not name or any(not c.isprintable() or c in '"\\' for c in name) or len(name) > 128:
        raise SecurityError(f"--http-realm {name!r}: use up to 128 printable characters, no quotes")
    return name


def load_security(*, principal: str | None = None, secret_file: str | None = None,
                  http_credentials: str | None = None, http_users: str | None = None,
                  realm: str = REALM, tls_cert: str | None = None, tls_key: str | None = None,
                  tls_ca: str | None = None, require_client_cert: bool = False, insecure: bool = False,
                  environ: Mapping[str, str] | None = None, allow_privileged: bool = False,
                  acls_file: str | None = None) -> SchedulerSecurity:
    """Read every file the flags name, once; SecurityError names the first bad one."""
    if secret_file and not principal:
        raise SecurityError("--mesos-authentication-secret-file needs --mesos-authentication-principal")
    if principal is not None and (not principal or ":" in principal):
        raise SecurityError(f"--mesos-authentication-principal {principal!r}: a non-empty name without ':'")
    secret = read_secret_file(secret_file) if secret_file else None
    users: Credentials | None = None
    if http_users:
        users = load_credentials(http_users)
    if http_credentials is not None:
        credential = parse_user_password(http_credentials)
        if ":" in credential.principal:  # split at the last colon, as Marathon: HTTP Basic could not carry it
            raise SecurityError(f"--http-credentials: user {credential.principal!r} holds a ':', "
                                f"which HTTP Basic cannot carry")
        admin = Credentials([credential])
        users = admin if users is None else users.merged(admin)
    try:
        tls = Tls.resolve(tls_cert, tls_key, tls_ca, require_client_cert, environ=environ)
    except TlsError as error:
        raise SecurityError(str(error)) from None
    acls = Acls.load(acls_file) if acls_file else None
    return SchedulerSecurity(principal=principal or None, secret=secret, users=users, realm=_realm(realm),
                             tls=tls, insecure=insecure, allow_privileged=allow_privileged, acls=acls)


def check_scheduler_binding(security: SchedulerSecurity, ip: str) -> None:
    """Refuse to serve a non-loopback `ip` with authentication or TLS off, unless --insecure."""
    check_binding("the scheduler", ip, security.missing(), security.insecure)

