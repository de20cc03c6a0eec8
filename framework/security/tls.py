"""TLS for every server and client, from dockyard's flags or Mesos's `LIBPROCESS_SSL_*`.

Standard library only: the executor reads this at start-up.

A process has one TLS setting for all its sockets, as libprocess has: when it
serves TLS it also speaks TLS to its peers, presenting the same certificate
(which is what mutual TLS then checks). Sources, the flags winning:

- flags: `--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-require-client-cert`.
  dockyard's own settings always verify peers (chain and host name or IP).
- the environment, as libprocess reads it (3rdparty/libprocess/src/openssl.cpp;
  the old `SSL_` prefix too): `ENABLED`, `CERT_FILE`, `KEY_FILE`, `CA_FILE`,
  `CA_DIR`, `VERIFY_SERVER_CERT` (legacy `VERIFY_CERT`), `REQUIRE_CLIENT_CERT`
  (legacy `REQUIRE_CERT`, which also turns server verification on), `CIPHERS`,
  `ENABLE_TLS_V1_2`/`_V1_3`. As in Mesos, a client configured only this way
  verifies its peer only when asked to; dockyard says so in its log.
  `SUPPORT_DOWNGRADE` (plaintext and TLS on one port) is not served: warned about.
"""
from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from typing import Mapping

from framework.errors import DockyardError

log = logging.getLogger(__name__)

_TRUE, _FALSE = {"true", "1"}, {"false", "0"}


class TlsError(DockyardError, ValueError):
    """A TLS setting that cannot be used (a missing key, an unreadable file)."""


def _env(environ: Mapping[str, str], name: str) -> str | None:
    for prefix in ("LIBPROCESS_SSL_", "SSL_"):
        value = environ.get(prefix + name)
        if value is not None:
            return value
    return None


def _env_bool(environ: Mapping[str, str], *names: str) -> bool | None:
    for name in names:
        raw = _env(environ, name)
        if raw is None:
            continue
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise TlsError(f"LIBPROCESS_SSL_{name}={raw!r} is not true, false, 1 or 0")
    return None


@dataclass(frozen=True)
class Tls:
    """One process's TLS setting; `None` where TLS is off."""

    cert: str | None = None
    key: str | None = None
    ca_file: str | None = None
    ca_dir: str | None = None
    require_client_cert: bool = False
    verify_server: bool = True
    ciphers: str | None = None
    tls13: bool = True
    tls12: bool = True

    # -- construction ---------------------------------------------------------------
    @classmethod
    def resolve(cls, cert: str | None = None, key: str | None = None, ca: str | None = None,
                require_client_cert: bool = False,
                environ: Mapping[str, str] | None = None) -> "Tls | None":
        """The setting of a server process: flags first, else `LIBPROCESS_SSL_*`; None when off."""
        environ = os.environ if environ is None else environ
        if cert or key:
            if not (cert and key):
                raise TlsError("--tls-cert and --tls-key go together")
            tls = cls(cert=cert, key=key, ca_file=ca, require_client_cert=require_client_cert,
                      verify_server=True)
            return tls._checked()
        if ca or require_client_cert:
            raise TlsError("--tls-ca and --tls-require-client-cert need --tls-cert and --tls-key")
        if not _env_bool(environ, "ENABLED"):
            return None
        cert, key = _env(environ, "CERT_FILE"), _env(environ, "KEY_FILE")
        if not key:
            raise TlsError("SSL requires key! NOTE: Set path with LIBPROCESS_SSL_KEY_FILE")
        if not cert:
            raise TlsError("SSL requires certificate! NOTE: Set path with LIBPROCESS_SSL_CERT_FILE")
        require = bool(_env_bool(environ, "REQUIRE_CLIENT_CERT", "REQUIRE_CERT"))
        verify = bool(_env_bool(environ, "VERIFY_SERVER_CERT", "VERIFY_CERT")) or require
        if _env_bool(environ, "SUPPORT_DOWNGRADE", "ENABLE_DOWNGRADE"):
            log.warning("LIBPROCESS_SSL_SUPPORT_DOWNGRADE is not supported: this process serves TLS only")
        if not verify:
            log.warning("TLS from LIBPROCESS_SSL_*: peers' certificates are not verified (as in Mesos); "
                        "set LIBPROCESS_SSL_VERIFY_SERVER_CERT=true, or use --tls-ca")
        tls = cls(cert=cert, key=key, ca_file=_env(environ, "CA_FILE"), ca_dir=_env(environ, "CA_DIR"),
                  require_client_cert=require, verify_server=verify, ciphers=_env(environ, "CIPHERS"),
                  tls12=_env_bool(environ, "ENABLE_TLS_V1_2") is not False,
                  tls13=_env_bool(environ, "ENABLE_TLS_V1_3") is not False)
        return tls._checked()

    @classmethod
    def resolve_client(cls, environ: Mapping[str, str] | None = None) -> "Tls | None":
        """The setting of a client-only process (an executor) from `LIBPROCESS_SSL_*`; None when off.

        A client needs no key of its own unless the server asks for one (mutual TLS).
        """
        environ = os.environ if environ is None else environ
        if not _env_bool(environ, "ENABLED"):
            return None
        verify = bool(_env_bool(environ, "VERIFY_SERVER_CERT", "VERIFY_CERT", "REQUIRE_CLIENT_CERT",
                                "REQUIRE_CERT"))
        tls = cls(cert=_env(environ, "CERT_FILE"), key=_env(environ, "KEY_FILE"), ca_file=_env(environ, "CA_FILE"),
                  ca_dir=_env(environ, "CA_DIR"), verify_server=verify, ciphers=_env(environ, "CIPHERS"),
                  tls12=_env_bool(environ, "ENABLE_TLS_V1_2") is not False,
                  tls13=_env_bool(environ, "ENABLE_TLS_V1_3") is not False)
        tls.client_context()
        return tls

    @classmethod
    def client(cls, ca: str | None = None, cert: str | None = None, key: str | None = None) -> "Tls":
        """A client-only setting (the CLI): verify with `ca` (else the system's CAs)."""
        return cls(cert=cert, key=key, ca_file=ca, verify_server=True)

    def _checked(self) -> "Tls":
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA file", self.ca_file)):
            if path and not os.access(path, os.R_OK):
                raise TlsError(f"TLS {what} {path} cannot be read")
        if self.require_client_cert and not (self.ca_file or self.ca_dir):
            raise TlsError("requiring client certificates needs a CA to check them with (--tls-ca)")
        if not (self.tls12 or self.tls13):
            raise TlsError("every TLS version is disabled (LIBPROCESS_SSL_ENABLE_TLS_V1_2/_V1_3)")
        self.server_context() if self.key else self.client_context()  # fail at start, not at first use
        return self

    # -- contexts -------------------------------------------------------------------
    def _versions(self, context: ssl.SSLContext) -> None:
        context.minimum_version = ssl.TLSVersion.TLSv1_2 if self.tls12 else ssl.TLSVersion.TLSv1_3
        context.maximum_version = ssl.TLSVersion.TLSv1_3 if self.tls13 else ssl.TLSVersion.TLSv1_2
        if self.ciphers:
            try:
                context.set_ciphers(self.ciphers)
            except ssl.SSLError as error:
                raise TlsError(f"cipher list {self.ciphers!r}: {error}") from None

    def _load_verify(self, context: ssl.SSLContext) -> None:
        try:
            if self.ca_file or self.ca_dir:
                context.load_verify_locations(cafile=self.ca_file, capath=self.ca_dir)
            else:
                context.load_default_certs()
        except (OSError, ssl.SSLError) as error:
            raise TlsError(f"cannot load the CA {self.ca_file or self.ca_dir}: {error}") from None

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._versions(context)
        try:
            context.load_cert_chain(self.cert or "", self.key)
        except (OSError, ssl.SSLError) as error:
            raise TlsError(f"cannot load the certificate {self.cert} with key {self.key}: {error}") from None
        if self.require_client_cert:
            self._load_verify(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._versions(context)
        if self.verify_server:
            self._load_verify(context)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert and self.key:
            try:
                context.load_cert_chain(self.cert, self.key)  # our identity, for mutual TLS
            except (OSError, ssl.SSLError) as error:
                raise TlsError(f"cannot load the client certificate {self.cert}: {error}") from None
        return context

    # -- wiring -----------------------------------------------------------------------
    def uvicorn_options(self) -> dict:
        """`uvicorn.Config` keyword arguments serving this setting."""
        options: dict = {"ssl_certfile": self.cert, "ssl_keyfile": self.key}
        if self.require_client_cert:
            options.update(ssl_ca_certs=self.ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
        if self.ciphers:
            options["ssl_ciphers"] = self.ciphers
        return options

    def child_environment(self) -> dict[str, str]:
        """`LIBPROCESS_SSL_*` for a process we start (an executor) to speak TLS back to us."""
        env = {"LIBPROCESS_SSL_ENABLED": "true",
               "LIBPROCESS_SSL_VERIFY_SERVER_CERT": "true" if self.verify_server else "false"}
        if self.require_client_cert and self.cert and self.key:
            # Only when we ask for a client certificate does the child need ours (and our key).
            env.update(LIBPROCESS_SSL_CERT_FILE=self.cert, LIBPROCESS_SSL_KEY_FILE=self.key)
        if self.ca_file:
            env["LIBPROCESS_SSL_CA_FILE"] = self.ca_file
        if self.ca_dir:
            env["LIBPROCESS_SSL_CA_DIR"] = self.ca_dir
        return env

    @property
    def scheme(self) -> str:
        return "https"


def scheme(tls: Tls | None) -> str:
    return "https" if tls is not None else "http"


def client_context(tls: Tls | None) -> ssl.SSLContext | None:
    return tls.client_context() if tls is not None else None
