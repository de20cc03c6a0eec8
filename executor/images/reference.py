"""Image references: `busybox`, `127.0.0.1:5000/team/app:v2`, `repo@sha256:...`."""
from __future__ import annotations

import re
from dataclasses import dataclass

from framework.errors import ImagePullError

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = "latest"
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Where the v2 API lives (Docker Hub's API host differs from its name)."""
        return DOCKER_HUB_API if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}"
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, self.tag, digest)


def parse(name: str) -> Reference:
    """Normalise a user's image name the way Docker does."""
    original = name
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise ImagePullError(f"invalid image reference {original!r}")
    digest = None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImagePullError(f"invalid digest in {original!r}")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ImagePullError(f"invalid tag in {original!r}")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    if repository != repository.lower() or not repository:
        raise ImagePullError(f"invalid repository name in {original!r}")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


def names_registry(name: str) -> bool:
    """True when `name` itself names a registry host (`host:5000/app`, `reg.example/app`, `localhost/app`)."""
    first, _, rest = name.strip().split("@", 1)[0].partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def written_repository(name: str) -> str:
    """The repository as the user wrote it: no registry host, no tag or digest, no implied `library/`."""
    base = name.strip().split("@", 1)[0]
    if ":" in base.rsplit("/", 1)[-1]:
        base = base.rsplit(":", 1)[0]
    if names_registry(base):
        base = base.split("/", 1)[1]
    return base
