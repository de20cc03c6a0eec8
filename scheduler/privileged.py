"""What in a spec reaches past its container, and who may ask for it.

`container.docker.privileged`, Docker `parameters` that add capabilities, devices
or host namespaces, and volumes whose `hostPath` names a path on the host give a
task the machine it runs on. They are refused (422, naming each field) unless the
caller may: an admin of a scheduler started with `--allow-privileged` (or any
caller of one started with it and without authentication, which has no roles).
A relative `hostPath` without `..` stays inside the task's sandbox (Mesos's
sandbox-path volume) and is allowed to everyone.
"""
from __future__ import annotations

from typing import Any, Iterable

from starlette.requests import Request

from framework.security.credentials import Role
from framework.security.gate import principal_name

# Docker options that reach past the container: the host's devices, capabilities, namespaces, files.
PRIVILEGED_PARAMETERS = frozenset({
    "privileged", "cap-add", "device", "device-cgroup-rule", "security-opt", "pid", "ipc", "uts",
    "userns", "network", "net", "volume", "v", "mount", "volumes-from", "cgroup-parent", "cgroupns",
    "sysctl", "runtime", "gpus", "oom-kill-disable",
})
WHY = "needs a privileged principal: an admin of a scheduler started with --allow-privileged"


def _get(obj: Any, *names: str) -> Any:
    """A field of a model or a dict, by the first of `names` it has."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def host_path_escapes(host_path: Any) -> bool:
    """An absolute path, or one that climbs out of the sandbox with `..`."""
    if not isinstance(host_path, str) or not host_path:
        return False
    return host_path.startswith("/") or ".." in host_path.replace("\\", "/").split("/")


def privileged_fields(docker: Any, volumes: Iterable[Any] | None, docker_path: str,
                      volumes_path: str) -> list[str]:
    """The paths of what reaches past the container in one docker section and its volumes."""
    paths: list[str] = []
    if docker is not None:
        if _get(docker, "privileged") is True:
            paths.append(f"{docker_path}/privileged")
        for index, parameter in enumerate(_get(docker, "parameters") or []):
            key = parameter.get("key") if isinstance(parameter, dict) else None
            if isinstance(key, str) and key.strip().lstrip("-").lower() in PRIVILEGED_PARAMETERS:
                paths.append(f"{docker_path}/parameters({index})")
    for index, volume in enumerate(volumes or []):
        if host_path_escapes(_get(volume, "hostPath", "host_path")):
            paths.append(f"{volumes_path}({index})/hostPath")
    return paths


def details(paths: list[str]) -> list[dict[str, Any]]:
    return [{"path": path, "errors": [WHY]} for path in paths]


def may_run_privileged(request: Request) -> bool:
    """Whether this request's principal may submit privileged specs (see the module's docstring)."""
    security = getattr(request.app.state, "security", None)
    if security is None or not getattr(security, "allow_privileged", False):
        return False
    users = security.users
    if users is None:
        return True
    return users.role(principal_name(request) or "") == Role.ADMIN
