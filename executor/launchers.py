"""Which launcher runs a task: a container for a task with an image, the host otherwise."""
from __future__ import annotations

from executor.launcher import Launcher, LaunchSpec
from framework.isolation import has_image


def launcher_for(spec: LaunchSpec) -> Launcher:
    """The container launcher for a task with an image, the host launcher otherwise.

    Imports are lazy: a command task never pays for the container machinery.
    """
    if has_image(spec.container):
        from executor.containers.launcher import ContainerLauncher

        return ContainerLauncher()
    from executor.host import HostLauncher

    return HostLauncher()
