"""The CLI's settings: where the cluster is and who the user is (`client.json`).

Found in this order: `--config FILE`, `$DOCKYARD_CONFIG`, `./.dockyard/client.json`
(what `dockyard up` writes with its default work dir); none of them means the
defaults (`http://127.0.0.1:8080`, no credentials). `--url` and `$DOCKYARD_URL`
still choose the scheduler. The file:

    {"url": "https://127.0.0.1:8080", "master": "https://127.0.0.1:5050",
     "principal": "operator", "secret": "...", "ca": "/path/ca.pem"}

(`cert` and `key` too when the cluster asks clients for certificates.)
"""
from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.errors import SecurityError
from framework.security.tls import Tls

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_FILE = Path(".dockyard") / "client.json"
FIELDS = {"url", "master", "principal", "secret", "ca", "cert", "key"}


@dataclass(frozen=True)
class ClientConfig:
    url: str = DEFAULT_URL
    master: str | None = None
    principal: str | None = None
    secret: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    source: str | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.principal is None or self.secret is None:
            return None
        return (self.principal, self.secret)

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies servers with `ca` (else the system's CAs); presents `cert` when given."""
        return Tls.client(ca=self.ca, cert=self.cert, key=self.key).client_context()

    def httpx_options(self) -> dict[str, Any]:
        return {"auth": self.auth, "verify": self.ssl_context()}

    def identity(self) -> str:
        """Who we are to a server, and where that came from (for error messages)."""
        where = (f"credentials from {self.source}" if self.source else
                 "no client settings found: --config FILE, $DOCKYARD_CONFIG or ./.dockyard/client.json")
        if self.principal is None:
            return f"no credentials ({where})"
        return f"principal '{self.principal}' ({where})"

    def refusal(self, status: int, server: str, said: str) -> str:
        """One line for a 401 or 403: the server, who we are and from which file, what it said."""
        kind = {401: "Unauthorized", 403: "Forbidden"}.get(status, "refused")
        said = " ".join(said.split())[:300] or "(no message)"
        return f"{server} answered {status} {kind} to {self.identity()}: {said}"

    def with_url(self, url: str | None) -> "ClientConfig":
        if not url:
            return self
        return ClientConfig(**{**self.__dict__, "url": url})


def find(config: str | None = None, environ: dict[str, str] | None = None) -> Path | None:
    environ = dict(os.environ) if environ is None else environ
    if config:
        return Path(config)
    if environ.get("DOCKYARD_CONFIG"):
        return Path(environ["DOCKYARD_CONFIG"])
    return DEFAULT_FILE if DEFAULT_FILE.exists() else None


def load(config: str | None = None, url: str | None = None,
         environ: dict[str, str] | None = None) -> ClientConfig:
    """The settings to use: the file found (see the module docstring), then `url` over its URL."""
    path = find(config, environ)
    if path is None:
        return ClientConfig().with_url(url)
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise SecurityError(f"cannot read the client settings {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise SecurityError(f"the client settings {path} are not JSON: {error}") from None
    if not isinstance(document, dict):
        raise SecurityError(f"the client settings {path} must be a JSON object")
    unknown = set(document) - FIELDS
    if unknown:
        raise SecurityError(f"{path}: unknown field(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(FIELDS))})")
    for name, value in document.items():
        if not isinstance(value, str):
            raise SecurityError(f"{path}: '{name}' must be a string")
    base = path.parent
    for name in ("ca", "cert", "key"):  # relative paths are relative to the file
        if document.get(name) and not os.path.isabs(document[name]):
            document[name] = str((base / document[name]).resolve())
    settings = ClientConfig(**document, source=str(path))
    if settings.principal is not None and settings.secret is None:
        raise SecurityError(f"{path}: 'principal' without 'secret'")
    return settings.with_url(url)


def write(path: Path, settings: dict[str, str]) -> None:
    """Write a client.json (mode 0600: it holds a secret)."""
    from framework.security.bundle import write_private

    write_private(path, json.dumps(settings, indent=2) + "\n")
