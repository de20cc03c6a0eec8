"""What `dockyard up`, the lab and Vagrant generate to run secured: a security bundle.

On first start, under `<work dir>/security/` (mode 0700, every file 0600):

| file | what | used as |
|---|---|---|
| `ca.pem`, `ca.key` | a private CA | every component's `--tls-ca` |
| `<name>.pem`, `<name>.key` | a certificate for one host (its IPs and names) | `--tls-cert`, `--tls-key` |
| `credentials.json` | every principal (Mesos's format) | master `--credentials`, agents `--http-credentials` |
| `users.json` | the operator (admin) and the viewer | scheduler `--http-users` |
| `agent-<name>.json` | one agent's own credential | agent `--credential` |
| `scheduler.secret` | the scheduler's framework secret | `--mesos-authentication-secret-file` |
| `operator.secret` | the operator's secret alone | `curl -u "operator:$(cat ...)"` |
| `executor.key` | the key executor tokens are signed with | agent `--executor-secret-key` |
| `acls.json` | who may do what (permissive false) | master's, agents' and scheduler's `--acls` |
| `secrets.key` | the key the scheduler's secret store is sealed with | scheduler `--secrets-key-file` |
| `secrets-acls.json` | who may write and reference which secrets | scheduler `--secrets-acls` |

A restart reuses everything; a certificate is issued again only when it no
longer covers the addresses asked for. Machines that cannot share files (the
Vagrant lab's virtual machines) derive the same secrets, keys and CA from one
shared random seed instead (`seed=`); each then issues its own certificate. Principals: `operator` (may do
everything), `viewer` (may look), `dockyard` (the scheduler's framework) and
`agent-<name>` for each agent.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from framework.security.credentials import Credential, Credentials, Role, load_credentials
from framework.security.tokens import new_key

OPERATOR = "operator"
VIEWER = "viewer"
SCHEDULER = "dockyard"
CA_DAYS = 3650
CERT_DAYS = 825


def write_private(path: Path, data: bytes | str) -> None:
    """Write atomically (temp file, then rename) with mode 0600 from the first byte."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _secret() -> str:
    return secrets.token_urlsafe(24)


def _derived(seed: bytes, label: str) -> bytes:
    return hmac.new(seed, label.encode(), hashlib.sha256).digest()


def _derived_text(seed: bytes, label: str) -> str:
    return base64.urlsafe_b64encode(_derived(seed, label)).decode().rstrip("=")


@dataclass(frozen=True)
class Identity:
    principal: str
    secret: str


class Bundle:
    """The files of one cluster's security, created on demand and kept."""

    def __init__(self, directory: Path, seed: bytes | None = None) -> None:
        if seed is not None and len(seed) < 16:
            raise ValueError("a bundle seed needs at least 16 bytes")
        self.seed = seed
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    # -- paths ---------------------------------------------------------------------
    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def credentials_file(self) -> Path:
        return self.directory / "credentials.json"

    @property
    def users_file(self) -> Path:
        return self.directory / "users.json"

    @property
    def scheduler_secret_file(self) -> Path:
        return self.directory / "scheduler.secret"

    @property
    def operator_secret_file(self) -> Path:
        """The operator's secret alone, for `curl -u "operator:$(cat ...)"`."""
        return self.directory / "operator.secret"

    @property
    def executor_key_file(self) -> Path:
        return self.directory / "executor.key"

    @property
    def acls_file(self) -> Path:
        return self.directory / "acls.json"

    @property
    def secrets_key_file(self) -> Path:
        """Fernet keys of the scheduler's secret store (docs/secrets.md); kept apart from its state."""
        return self.directory / "secrets.key"

    @property
    def secrets_acls_file(self) -> Path:
        return self.directory / "secrets-acls.json"

    def agent_credential_file(self, name: str) -> Path:
        return self.directory / f"agent-{name}.json"

    # -- creation --------------------------------------------------------------------
    def ensure(self, agents: Iterable[str] = ()) -> "Bundle":
        """Every file but server certificates (`certificate()` issues those), for these agents.

        The CA is made here too, so a client can be handed `ca.pem` before any server exists."""
        self._ensure_ca()
        credentials = self._credentials()
        wanted = {OPERATOR: Role.ADMIN, VIEWER: Role.VIEWER, SCHEDULER: Role.ADMIN}
        wanted.update({f"agent-{name}": Role.ADMIN for name in agents})
        missing = [p for p in wanted if p not in credentials]
        if missing:
            entries = [Credential(p, self._existing_secret(credentials, p)) for p in credentials.principals()]
            entries += [Credential(p, self._new_secret(p)) for p in missing]
            credentials = Credentials(entries)
            write_private(self.credentials_file, json.dumps(credentials.to_json(), indent=2) + "\n")
        users = Credentials([Credential(OPERATOR, self._existing_secret(credentials, OPERATOR), Role.ADMIN),
                             Credential(VIEWER, self._existing_secret(credentials, VIEWER), Role.VIEWER)])
        self._write_if_missing(self.users_file, json.dumps(users.to_json(), indent=2) + "\n")
        self._write_if_changed(self.scheduler_secret_file, self._existing_secret(credentials, SCHEDULER))
        self._write_if_changed(self.operator_secret_file, self._existing_secret(credentials, OPERATOR))
        for name in agents:
            principal = f"agent-{name}"
            self._write_if_changed(self.agent_credential_file(name), json.dumps(
                {"principal": principal, "secret": self._existing_secret(credentials, principal)}) + "\n")
        if not self.executor_key_file.exists():
            write_private(self.executor_key_file,
                          _derived_text(self.seed, "executor-key").encode() if self.seed else new_key())
        self._write_if_missing(self.acls_file, json.dumps(default_acls(), indent=2) + "\n")
        if not self.secrets_key_file.exists():  # never replaced: `dockyard secret rotate-key` changes it
            key = base64.urlsafe_b64encode(_derived(self.seed, "secrets-key") if self.seed else secrets.token_bytes(32))
            write_private(self.secrets_key_file, key + b"\n")
        self._write_if_missing(self.secrets_acls_file, json.dumps(default_secret_acls(), indent=2) + "\n")
        return self

    def _new_secret(self, principal: str) -> str:
        return _derived_text(self.seed, f"secret:{principal}")[:32] if self.seed else _secret()

    def _credentials(self) -> Credentials:
        if self.credentials_file.exists():
            return load_credentials(self.credentials_file)
        return Credentials()

    @staticmethod
    def _existing_secret(credentials: Credentials, principal: str) -> str:
        return credentials._by_principal[principal].secret  # noqa: SLF001 - our own file

    @staticmethod
    def _write_if_missing(path: Path, text: str) -> None:
        """Files an operator may edit (users, ACLs): written once, then theirs."""
        if not path.exists():
            write_private(path, text)

    def _write_if_changed(self, path: Path, text: str) -> None:
        if not path.exists() or path.read_text() != text:
            write_private(path, text)

    def identity(self, principal: str) -> Identity:
        credentials = self._credentials()
        if principal not in credentials:
            raise KeyError(f"no principal {principal!r} in {self.credentials_file}")
        return Identity(principal, self._existing_secret(credentials, principal))

    # -- the flags that use it ------------------------------------------------------------
    def tls_flags(self, cert: Path, key: Path, mutual: bool = False) -> list[str]:
        flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(self.ca_cert)]
        return flags + (["--tls-require-client-cert"] if mutual else [])

    def master_flags(self) -> list[str]:
        """Every master realm authenticated, agents too, and the ACLs."""
        return ["--credentials", str(self.credentials_file), "--authenticate-http-frameworks",
                "--authenticate-http-readonly", "--authenticate-http-readwrite", "--authenticate-agents",
                "--acls", str(self.acls_file)]

    def agent_flags(self, name: str) -> list[str]:
        """The agent's own credential, its realms authenticated, executor tokens, the ACLs."""
        return ["--credential", str(self.agent_credential_file(name)),
                "--http-credentials", str(self.credentials_file),
                "--authenticate-http-readonly", "--authenticate-http-readwrite",
                "--authenticate-http-executors", "--executor-secret-key", str(self.executor_key_file),
                "--acls", str(self.acls_file)]

    def scheduler_flags(self) -> list[str]:
        """The framework's principal towards the master, the API's users and what they may run
        tasks as, the secret store's key."""
        return ["--mesos-authentication-principal", SCHEDULER,
                "--mesos-authentication-secret-file", str(self.scheduler_secret_file),
                "--http-users", str(self.users_file), "--acls", str(self.acls_file),
                "--secrets-key-file", str(self.secrets_key_file), "--secrets-acls", str(self.secrets_acls_file)]

    @property
    def operator(self) -> Identity:
        return self.identity(OPERATOR)

    @property
    def viewer(self) -> Identity:
        return self.identity(VIEWER)

    # -- certificates ------------------------------------------------------------------
    def certificate(self, name: str, hosts: Iterable[str]) -> tuple[Path, Path]:
        """(certificate, key) of `name`, valid for every host name and IP in `hosts`."""
        from cryptography import x509

        self._ensure_ca()
        cert_path, key_path = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        wanted = sorted(set(hosts))
        if cert_path.exists() and key_path.exists():
            existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if set(wanted) <= _sans(existing) and _valid_for_a_while(existing):
                return cert_path, key_path
        key_pem, cert_pem = self._issue(name, wanted)
        write_private(key_path, key_pem)
        write_private(cert_path, cert_pem)
        return cert_path, key_path

    def _ensure_ca(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        if self.ca_cert.exists() and self.ca_key.exists():
            return
        if self.seed is None:
            key = ec.generate_private_key(ec.SECP256R1())
            tag, serial = secrets.token_hex(4), x509.random_serial_number()
            start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
        else:
            # The same key, name and serial on every machine of the seed: a certificate issued on
            # one verifies with the CA copy made on another (the signature bytes differ, nothing else).
            order = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)  # P-256's n
            key = ec.derive_private_key(int.from_bytes(_derived(self.seed, "ca-key"), "big") % (order - 1) + 1,
                                        ec.SECP256R1())
            tag = _derived(self.seed, "ca-name").hex()[:8]
            serial = int.from_bytes(_derived(self.seed, "ca-serial")[:16], "big") >> 1
            start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dockyard CA {tag}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(start)
                .not_valid_after(start + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.ca_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
        write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))

    def _issue(self, name: str, hosts: list[str]) -> tuple[bytes, bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
                .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                               critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
                cert.public_bytes(serialization.Encoding.PEM))


def _sans(cert: object) -> set[str]:
    from cryptography import x509

    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        return set()
    names = {str(ip) for ip in extension.value.get_values_for_type(x509.IPAddress)}
    return names | set(extension.value.get_values_for_type(x509.DNSName))


def _valid_for_a_while(cert: object) -> bool:
    remaining = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)  # type: ignore[attr-defined]
    return remaining > datetime.timedelta(days=30)


def default_acls() -> dict:
    """Least privilege for a generated cluster: the operator may do everything, the viewer may
    look, the scheduler may register and run its tasks and read what it launched. Tasks may run
    as any user for the operator and the scheduler, as any but root for anyone else. Every other
    principal in the credentials file is an agent's: the viewer and the scheduler may not register
    agents (a fake agent is sent real tasks), anyone else may, so adding an agent needs no new rule."""
    operator_and_scheduler = {"values": [OPERATOR, SCHEDULER]}
    readers = {"values": [OPERATOR, VIEWER, SCHEDULER]}
    anyone = {"type": "ANY"}
    operator = {"values": [OPERATOR]}
    return {
        "permissive": False,
        "register_frameworks": [{"principals": operator_and_scheduler, "roles": anyone}],
        "register_agents": [{"principals": {"values": [VIEWER, SCHEDULER]}, "agents": {"type": "NONE"}},
                            {"principals": anyone, "agents": anyone}],
        # The scheduler asks this of its API's callers, the master of frameworks (docs/security.md).
        "run_tasks": [{"principals": operator_and_scheduler, "users": anyone},
                      {"principals": {"type": "NONE"}, "users": {"values": ["root"]}},
                      {"principals": anyone, "users": anyone}],
        "teardown_frameworks": [{"principals": operator, "framework_principals": anyone}],
        "view_frameworks": [{"principals": readers, "users": anyone}],
        "view_tasks": [{"principals": readers, "users": anyone}],
        "view_executors": [{"principals": readers, "users": anyone}],
        "access_sandboxes": [{"principals": readers, "users": anyone}],
        "get_quotas": [{"principals": readers, "roles": anyone}],
        "update_quotas": [{"principals": operator, "roles": anyone}],
        **{action: [{"principals": operator, "agents": anyone}]
           for action in ("drain_agents", "deactivate_agents", "reactivate_agents")},
        **{action: [{"principals": operator, "users": anyone}] for action in (
            "launch_nested_container_sessions_as_user",
            "launch_nested_container_sessions_under_parent_with_user",
            "launch_nested_containers_as_user", "launch_nested_containers_under_parent_with_user",
            "attach_containers_input", "attach_containers_output", "wait_nested_containers",
            "kill_nested_containers", "remove_nested_containers")},
    }


def default_secret_acls() -> dict:
    """The operator may write every secret and use it in apps and jobs; nobody else may (the
    viewer may list their names and versions: that is the API's READ)."""
    operator = {"values": [OPERATOR]}
    return {"permissive": False,
            "reference_secrets": [{"principals": operator, "paths": {"type": "ANY"}}],
            "write_secrets": [{"principals": operator, "paths": {"type": "ANY"}}]}
