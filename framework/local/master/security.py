"""Who may call the embedded master, and what each caller may see.

Built once at start-up from `MasterConfig` (framework/security does the
mechanics: credentials, realms, ACL rules, TLS):

- one realm per access level, named as Mesos names them
  (src/master/constants.hpp): `mesos-master-scheduler` for the scheduler API
  (`--authenticate-http-frameworks`), `mesos-master-readonly` for the views
  (`--authenticate-http-readonly`), `mesos-master-readwrite` for the operator
  API and `/teardown` (`--authenticate-http-readwrite`), and
  `dockyard-master-agents` for the internal agent protocol
  (`--authenticate-agents`; Mesos authenticates agents over SASL instead);
- the ACLs (`--acls`), everything allowed without them, as in Mesos;
- TLS (`--tls-*` or `LIBPROCESS_SSL_*`).

`Views` answers the `view_*` ACLs for one caller: views are filtered, never
refused (src/master/http.cpp, `FullFrameworkWriter`; src/common/http.cpp
`approveViewFrameworkInfo`, `approveViewTask`, `approveViewExecutorInfo`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from framework.errors import SecurityError
from framework.local.master import validation
from framework.security.acls import ALLOW_ALL, Acls
from framework.security.authn import BasicAuthenticator, Realm
from framework.security.binding import check_binding
from framework.security.credentials import load_credentials
from framework.security.gate import OPEN_GATE, Access, Gate
from framework.security.tls import Tls, TlsError

if TYPE_CHECKING:
    from framework.local.master.config import MasterConfig

SCHEDULER_REALM = "mesos-master-scheduler"
READONLY_REALM = "mesos-master-readonly"
READWRITE_REALM = "mesos-master-readwrite"
AGENT_REALM = "dockyard-master-agents"
FRAMEWORK_AUTHENTICATORS = ("basic",)
VIEW_ACTIONS = ("view_frameworks", "view_tasks", "view_executors")


@dataclass(frozen=True)
class MasterSecurity:
    """What the master enforces: the gate of its routes, its ACLs, and its TLS setting."""

    gate: Gate = field(default_factory=lambda: OPEN_GATE)
    acls: Acls = ALLOW_ALL
    tls: Tls | None = None


def _realms(config: "MasterConfig") -> list[tuple[Access, str]]:
    """(level, realm) of every realm that authenticates, in the order Mesos sets them up."""
    wanted = [(config.authenticate_http_readonly, Access.READ, READONLY_REALM),
              (config.authenticate_http_readwrite, Access.WRITE, READWRITE_REALM),
              (config.authenticate_http_frameworks, Access.FRAMEWORK, SCHEDULER_REALM),
              (config.authenticate_agents, Access.AGENT, AGENT_REALM)]
    return [(level, realm) for on, level, realm in wanted if on]


def load(config: "MasterConfig") -> MasterSecurity:
    """Read the credentials, ACL and TLS files the flags name (SecurityError when one cannot be used)."""
    realms = _realms(config)
    if config.authenticate_http_frameworks and config.http_framework_authenticators not in FRAMEWORK_AUTHENTICATORS:
        raise SecurityError(f"--http-framework-authenticators {config.http_framework_authenticators!r} is not "
                            f"supported: the embedded master offers only 'basic'")
    credentials = load_credentials(config.credentials) if config.credentials else None
    gate = OPEN_GATE
    if realms:
        if credentials is None:
            # As common/http.cpp `initializeHttpAuthenticators` refuses it (the first realm named).
            raise SecurityError(f"No credentials provided for the default 'basic' HTTP authenticator for "
                                f"realm '{realms[0][1]}' (give --credentials FILE)")
        basic = BasicAuthenticator(credentials)  # one credentials file for every realm, as Mesos
        gate = Gate(realms={level: Realm(name, [basic]) for level, name in realms})
    acls = Acls.load(config.acls) if config.acls else ALLOW_ALL
    try:
        tls = Tls.resolve(config.tls_cert, config.tls_key, config.tls_ca, config.tls_require_client_cert)
    except TlsError as error:
        raise SecurityError(str(error)) from None
    return MasterSecurity(gate, acls, tls)


def check_open_binding(config: "MasterConfig", security: MasterSecurity) -> None:
    """Refuse to serve a non-loopback address with authentication or TLS off (unless --insecure)."""
    off = [flag for on, flag in (
        (config.authenticate_http_frameworks, "--authenticate-http-frameworks"),
        (config.authenticate_http_readonly, "--authenticate-http-readonly"),
        (config.authenticate_http_readwrite, "--authenticate-http-readwrite"),
        (config.authenticate_agents, "--authenticate-agents")) if not on]
    missing = []
    if off:
        missing.append(f"authentication (--credentials with {', '.join(off)})")
    if security.tls is None:
        missing.append("TLS (--tls-cert and --tls-key, or LIBPROCESS_SSL_*)")
    check_binding("the master", config.ip, missing, config.insecure)


# -- users that ACLs are asked about --------------------------------------------------------

def _command_user(holder: Any) -> str | None:
    command = holder.get("command") if isinstance(holder, Mapping) else None
    user = command.get("user") if isinstance(command, Mapping) else None
    return user if isinstance(user, str) else None


def task_user(task_info: Mapping[str, Any], framework_info: Mapping[str, Any]) -> str:
    """The user a task runs as: its command's, else its executor's, else the framework's.

    What `run_tasks` and `view_tasks` are asked about (src/authorizer/local/authorizer.cpp).
    """
    return (_command_user(task_info) or _command_user(task_info.get("executor"))
            or str(framework_info.get("user") or ""))


def executor_user(executor_info: Mapping[str, Any], framework_info: Mapping[str, Any]) -> str:
    """An executor's command user, else the framework's (`view_executors`)."""
    return _command_user(executor_info) or str(framework_info.get("user") or "")


def framework_roles(info: Mapping[str, Any]) -> list[str]:
    """The roles `register_frameworks` is asked about, sorted as Mesos prints its std::set."""
    return sorted(set(validation.framework_roles(info)))


def registration_refused(framework_id: str, roles: list[str]) -> str:
    """Mesos's words for a denied SUBSCRIBE (src/master/authorization.cpp, `operator<<`)."""
    return f"Not authorized to register framework {framework_id} with roles {{ {', '.join(roles)} }}"


def launch_refused(task_id: str, framework_id: str, user: str) -> str:
    return f"Not authorized to launch task {task_id} of framework {framework_id} under user '{user}'"


class Views:
    """What one caller may see of frameworks, tasks and executors (the `view_*` ACLs)."""

    def __init__(self, acls: Acls, principal: str | None) -> None:
        self.acls = acls
        self.principal = principal
        # No view rule and a permissive file (or no file): everything is visible, unasked.
        self.everything = acls.permissive and not any(acls.rules.get(a) for a in VIEW_ACTIONS)
        self._answers: dict[tuple[str, str], bool] = {}

    def _allowed(self, action: str, user: str) -> bool:
        if self.everything:
            return True
        key = (action, user)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self.acls.authorized(action, self.principal, user)
        return answer

    def framework(self, info: Mapping[str, Any]) -> bool:
        return self._allowed("view_frameworks", str(info.get("user") or ""))

    def task(self, task_info: Mapping[str, Any], framework_info: Mapping[str, Any]) -> bool:
        """A task is seen when its framework is, and the task itself is (as Mesos's GET_TASKS)."""
        return self.framework(framework_info) and self._allowed(
            "view_tasks", task_user(task_info, framework_info))

    def executor(self, executor_info: Mapping[str, Any], framework_info: Mapping[str, Any]) -> bool:
        return self.framework(framework_info) and self._allowed(
            "view_executors", executor_user(executor_info, framework_info))


ALL_VISIBLE = Views(ALLOW_ALL, None)
