"""What an agent lets a container task ask for: host-path volumes, privileged mode, seccomp.

The agent's flags (`--allowed-host-paths`, `--allow-privileged`, `--seccomp-profile`)
are read once into a `ContainerPolicy`; executors get it through their environment
(`to_env`), set by the agent after anything a framework put in the executor's
CommandInfo, so a framework cannot widen it. The agent refuses a task that breaks
it before starting an executor; the executor checks again where it mounts, with the
paths resolved at that moment (the check that counts). Standard library only.

It lives with the agent, which owns the flags; the executor's container launcher reads it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from framework import seccomp as profiles
from framework.errors import ContainerError
from framework.isolation import has_image

HOST_PATHS_ENV = "DOCKYARD_ALLOWED_HOST_PATHS"
PRIVILEGED_ENV = "DOCKYARD_ALLOW_PRIVILEGED"

# Never given to a container, whatever --allowed-host-paths says: the host's root, its
# configuration, and the kernel's interfaces (CIS Docker Benchmark 5.5).
NEVER = (Path("/"),)
NEVER_BENEATH = (Path("/etc"), Path("/proc"), Path("/sys"), Path("/dev"))


@dataclass(frozen=True)
class ContainerPolicy:
    """The agent's word on container tasks; the defaults are the strict ones."""

    allowed_host_paths: tuple[Path, ...] = ()  # resolved; empty: no host-path volume at all
    allow_privileged: bool = False
    seccomp: str = profiles.DEFAULT  # "default", "unconfined" or a profile file
    work_dir: Path | None = field(default=None, compare=False)  # the agent's: never mounted

    @classmethod
    def from_flags(cls, allowed_host_paths: str = "", allow_privileged: bool = False,
                   seccomp_profile: str = profiles.DEFAULT, work_dir: Path | None = None) -> "ContainerPolicy":
        """From the agent's flags; ValueError names a flag value it cannot start with."""
        roots = []
        for item in (p.strip() for p in allowed_host_paths.split(",")):
            if not item:
                continue
            if not item.startswith("/"):
                raise ValueError(f"--allowed-host-paths: {item!r} is not an absolute path")
            resolved = Path(os.path.realpath(item))
            if resolved in NEVER or _beneath_any(resolved, NEVER_BENEATH):
                raise ValueError(f"--allowed-host-paths: {item} may never be given to a container")
            if work_dir is not None and (_beneath(resolved, work_dir) or _beneath(work_dir, resolved)):
                raise ValueError(f"--allowed-host-paths: {item} holds or is inside the agent's work dir")
            roots.append(resolved)
        return cls(tuple(roots), allow_privileged, profiles.check_choice(seccomp_profile),
                   Path(os.path.realpath(work_dir)) if work_dir is not None else None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, work_dir: Path | None = None) -> "ContainerPolicy":
        """The agent's policy as an executor inherits it; unset means the strict defaults."""
        env = os.environ if environ is None else environ
        roots = tuple(Path(p) for p in env.get(HOST_PATHS_ENV, "").split(",") if p.startswith("/"))
        work = work_dir if work_dir is not None else (Path(env["DOCKYARD_WORK_DIR"])
                                                      if env.get("DOCKYARD_WORK_DIR") else None)
        return cls(roots, env.get(PRIVILEGED_ENV) == "1", profiles.choice_from_env(env),
                   Path(os.path.realpath(work)) if work is not None else None)

    def to_env(self) -> dict[str, str]:
        return {HOST_PATHS_ENV: ",".join(str(p) for p in self.allowed_host_paths),
                PRIVILEGED_ENV: "1" if self.allow_privileged else "0", profiles.ENV: self.seccomp}

    def host_path(self, host: str) -> Path:
        """`host` (a volume's host path) resolved, if this agent lets a container have it."""
        resolved = Path(os.path.realpath(host))
        if resolved in NEVER or _beneath_any(resolved, NEVER_BENEATH):
            raise ContainerError(f"host path {host} may never be mounted into a container")
        if self.work_dir is not None and (_beneath(resolved, self.work_dir) or _beneath(self.work_dir, resolved)):
            raise ContainerError(f"host path {host} is or holds the agent's work dir")
        if not any(_beneath(resolved, root) for root in self.allowed_host_paths):
            allowed = ", ".join(str(p) for p in self.allowed_host_paths) or "none"
            raise ContainerError(f"host path {host} is not under the agent's --allowed-host-paths ({allowed})")
        return resolved

    def refusal(self, container: dict | None) -> str | None:
        """Why a task's ContainerInfo breaks this policy, or None. Volumes of tasks without an
        image are not mounted by dockyard, so only tasks with an image are looked at."""
        if not container:
            return None
        if is_privileged(container) and not self.allow_privileged:
            return "privileged containers are not allowed on this agent (see its --allow-privileged)"
        if not has_image(container):
            return None
        for volume in container.get("volumes") or []:
            host = volume.get("host_path") or volume.get("hostPath") or ""
            if host.startswith("/"):
                try:
                    self.host_path(host)
                except ContainerError as error:
                    return f"volume {volume.get('container_path') or volume.get('containerPath')}: {error}"
        return None


def is_privileged(container: dict | None) -> bool:
    """A ContainerInfo asking for a privileged container (Docker's `privileged`, in the
    DOCKER info as Marathon and Mesos write it, or dockyard's extension)."""
    container = container or {}
    return bool((container.get("docker") or {}).get("privileged")
                or (container.get("dockyard") or {}).get("privileged"))


def _beneath(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _beneath_any(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(_beneath(path, root) for root in roots)
