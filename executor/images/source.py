"""Where images with unqualified names come from: Mesos's `--docker_registry`.

A Mesos agent's `--docker_registry` is either a registry URL (the default for
names that do not name a registry host, like `busybox:1`) or a local directory
of `docker save` archives named `<name>:<tag>.tar`, for clusters with no
registry at all. dockyard's agent takes the same as `--docker-registry` and
hands it to its executors as `$DOCKYARD_DOCKER_REGISTRY`.

Names that do name a host (`127.0.0.1:5000/team/app:2`) keep going to that host;
a local directory is still looked at first (as `<dir>/<name>.tar`), the way
Mesos's local puller looks up every name there.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from framework.errors import ImagePullError

ENV = "DOCKYARD_DOCKER_REGISTRY"


@dataclass(frozen=True)
class RegistrySource:
    """A local archive directory, or a registry host (with its scheme when the URL gave one)."""

    directory: Path | None = None
    host: str | None = None
    insecure: bool | None = None  # None: decide by host (loopback is plain HTTP)

    @classmethod
    def parse(cls, text: str | None) -> "RegistrySource | None":
        """`/dir`, `file:///dir`, `http(s)://host[:port]` or `host[:port]`; None when empty."""
        text = (text or "").strip()
        if not text:
            return None
        if text.startswith("file://"):
            return cls(directory=Path(urllib.parse.unquote(text[len("file://"):])).resolve())
        if text.startswith(("/", "./", "../")) or text in (".", ".."):
            return cls(directory=Path(text).resolve())
        if "://" in text:
            parts = urllib.parse.urlsplit(text)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ImagePullError(f"docker registry {text!r}: expected http(s)://host[:port] or a directory")
            return cls(host=parts.netloc, insecure=parts.scheme == "http")
        if "/" in text:
            raise ImagePullError(f"docker registry {text!r}: a directory must be an absolute path")
        return cls(host=text)

    @classmethod
    def from_env(cls) -> "RegistrySource | None":
        return cls.parse(os.environ.get(ENV))

    def archive_for(self, name: str, candidates: list[str]) -> Path | None:
        """The first `<dir>/<candidate>.tar` that exists, never outside the directory."""
        if self.directory is None:
            return None
        for candidate in candidates:
            if not candidate or ".." in candidate.split("/") or candidate.startswith("/"):
                continue
            path = self.directory / f"{candidate}.tar"
            if path.is_file() and path.resolve().is_relative_to(self.directory.resolve()):
                return path
        return None

    def __str__(self) -> str:
        if self.directory is not None:
            return str(self.directory)
        scheme = {True: "http://", False: "https://"}.get(self.insecure, "")  # type: ignore[arg-type]
        return f"{scheme}{self.host}"
