"""A real registry (Debian's docker-registry, distribution 2.8) on a free loopback port."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from tests.support.procs import Process, free_port, http_ok, wait_for

BINARY = "/usr/bin/docker-registry"


def available() -> bool:
    return shutil.which(BINARY) is not None or Path(BINARY).exists()


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash (the only htpasswd format distribution accepts), via libcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        except (ValueError, OSError, ImportError):
            return None
    return hashed if hashed and hashed.startswith("$2") else None


class Registry:
    """`docker-registry serve config.yml` with filesystem storage in `root`."""

    def __init__(self, root: Path, users: dict[str, str] | None = None, auth_config: str = "") -> None:
        self.root = root
        self.auth_config = auth_config  # e.g. a token server's `auth: token: ...` section
        self.port = free_port()
        self.users = users or {}
        self.host = f"127.0.0.1:{self.port}"
        self.process: Process | None = None

    def start(self) -> "Registry":
        self.root.mkdir(parents=True, exist_ok=True)
        auth = self.auth_config
        if self.users:
            lines = []
            for user, password in self.users.items():
                hashed = bcrypt_hash(password)
                if hashed is None:
                    raise RuntimeError("no bcrypt support for htpasswd")
                lines.append(f"{user}:{hashed}")
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = (f"auth:\n  htpasswd:\n    realm: dockyard-test\n"
                    f"    path: {self.root / 'htpasswd'}\n")
        (self.root / "config.yml").write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + auth)
        self.process = Process([BINARY, "serve", str(self.root / "config.yml")], self.root / "registry.log")
        wait_for(lambda: self._up(), timeout=20, what=f"registry on {self.host}")
        return self

    def _up(self) -> bool:
        if self.process and not self.process.alive():
            raise RuntimeError(f"registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
        if self.users or self.auth_config:
            import urllib.error
            import urllib.request
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2)
            except urllib.error.HTTPError as error:
                return error.code == 401
            except OSError:
                return False
            return True
        return http_ok(f"http://{self.host}/v2/")

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None
