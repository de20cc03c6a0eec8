"""How an agent isolates the tasks it runs, from its `--isolation` flag (Mesos's isolator names).

The agent reads the flag once, refuses what it cannot keep, and passes it to its executors
through their environment (`DOCKYARD_ISOLATION`); the executor's launchers read it there.
A task whose ContainerInfo names an image (`has_image`) always runs in a full container;
`Isolators` says what the others get. Standard library only: the executor imports this on
its start-up path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

ENV = "DOCKYARD_ISOLATION"


def has_image(container: dict | None) -> bool:
    """True when a ContainerInfo names an image (MESOS `mesos.image` or DOCKER `docker.image`)."""
    if not container:
        return False
    return bool((container.get("mesos") or {}).get("image") or (container.get("docker") or {}).get("image"))


@dataclass(frozen=True)
class Isolators:
    """What a command task without an image gets, from the agent's `--isolation`.

    `cgroups/cpu,cgroups/mem,namespaces/pid` (the default): its own cgroups, with the
    task's cpus, mem, pids and disk limits and OOM/disk limitation reasons, and its own
    PID namespace with its own /proc, under an init, so that no task sees another's
    processes (a task reading /proc/<pid>/environ of another task of its user would read
    its secrets). The namespace costs a small program's exec and two forks per task
    (executor/containers/hostinit.c); without namespaces/pid a task shares the host's
    /proc. `posix/cpu,posix/mem` (Mesos's own default): a plain
    process group. Tasks with an image always run in a full container whatever this says;
    `namespaces/user` is for them only: their root is an unprivileged host user
    (executor/containers/userns.py).
    """

    cgroups: bool = True
    pid_namespace: bool = True
    user_namespace: bool = False

    DEFAULT: ClassVar[str] = "cgroups/cpu,cgroups/mem,namespaces/pid"
    CGROUPS: ClassVar[tuple[str, ...]] = ("cgroups/cpu", "cgroups/mem", "cgroups/pids", "cgroups/all")
    # accepted as Mesos spells them; in dockyard these are always on (disk/du, image containers)
    # or only measure (posix/*)
    ALWAYS: ClassVar[tuple[str, ...]] = ("posix/cpu", "posix/mem", "posix/disk", "disk/du", "filesystem/linux",
                                         "filesystem/posix", "docker/runtime")

    @classmethod
    def parse(cls, text: str) -> "Isolators":
        names = [name.strip() for name in text.split(",") if name.strip()]
        known = (*cls.CGROUPS, "namespaces/pid", "namespaces/user", *cls.ALWAYS)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown isolator {unknown[0]!r} (known here: {', '.join(known)})")
        found = cls(cgroups=any(name in cls.CGROUPS for name in names), pid_namespace="namespaces/pid" in names,
                    user_namespace="namespaces/user" in names)
        if found.pid_namespace and not found.cgroups:
            raise ValueError("namespaces/pid needs a cgroups/ isolator too: the task's cgroup is how its "
                             "processes are found, limited and killed")
        return found

    @classmethod
    def from_env(cls) -> "Isolators":
        """The agent's --isolation, which executors inherit as DOCKYARD_ISOLATION (checked there)."""
        try:
            return cls.parse(os.environ.get(ENV, cls.DEFAULT))
        except ValueError:
            return cls.parse(cls.DEFAULT)
