"""Marathon AppDefinitions: validation (422 naming each field), defaults, normalised output.

Input is Marathon's JSON (YAML works too). Output is what Marathon itself would
answer, with every default filled (marathon-lb indexes health-check fields
directly) and only keys the PyPI `marathon` client knows (it raises on any other).
dockyard's own extensions ride in `labels`.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from framework.errors import SpecError
from scheduler.placement.constraints import Constraint, ConstraintError
from scheduler.placement.constraints import parse as parse_constraints

_SEGMENT = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")


class SpecModel(BaseModel):
    # Unknown input keys are ignored (Marathon's own behaviour for most of them); they
    # never reach the output, where the client would choke on them.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class CommandCheck(SpecModel):
    value: str


class HealthCheck(SpecModel):
    protocol: Literal["HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"] = "HTTP"
    path: str | None = None
    portIndex: int | None = Field(default=None, ge=0)
    port: int | None = Field(default=None, ge=0, le=65535)
    command: CommandCheck | None = None
    gracePeriodSeconds: int = Field(default=300, ge=0)
    intervalSeconds: int = Field(default=60, ge=0)
    timeoutSeconds: int = Field(default=20, ge=0)
    maxConsecutiveFailures: int = Field(default=3, ge=0)
    delaySeconds: int = Field(default=15, ge=0)
    ignoreHttp1xx: bool = False

    @model_validator(mode="after")
    def _shape(self) -> "HealthCheck":
        if self.protocol == "COMMAND" and self.command is None:
            raise ValueError("COMMAND health checks need command.value")
        if self.protocol in ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS") and self.path is None:
            self.path = "/"
        if self.protocol != "COMMAND" and self.port is None and self.portIndex is None:
            self.portIndex = 0
        return self

    def out(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "protocol": self.protocol, "gracePeriodSeconds": self.gracePeriodSeconds,
            "intervalSeconds": self.intervalSeconds, "timeoutSeconds": self.timeoutSeconds,
            "maxConsecutiveFailures": self.maxConsecutiveFailures, "delaySeconds": self.delaySeconds,
        }
        if self.protocol == "COMMAND":
            data["command"] = {"value": self.command.value if self.command else ""}
        else:
            if self.port is not None:
                data["port"] = self.port
            else:
                data["portIndex"] = self.portIndex
            if self.path is not None:
                data["path"] = self.path
            if self.protocol in ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"):
                data["ignoreHttp1xx"] = self.ignoreHttp1xx
        return data


class ReadinessCheck(SpecModel):
    name: str = "readinessCheck"
    protocol: Literal["HTTP", "HTTPS"] = "HTTP"
    path: str = "/"
    portName: str = "http-api"
    intervalSeconds: int = Field(default=30, ge=1)
    timeoutSeconds: int = Field(default=10, ge=1)
    httpStatusCodesForReady: list[int] = Field(default_factory=lambda: [200])
    preserveLastResponse: bool = False


class PortDefinition(SpecModel):
    port: int = Field(default=0, ge=0, le=65535)
    protocol: str = "tcp"
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    def out(self) -> dict[str, Any]:
        data: dict[str, Any] = {"port": self.port, "protocol": self.protocol, "labels": self.labels}
        if self.name:
            data["name"] = self.name
        return data


class UpgradeStrategy(SpecModel):
    minimumHealthCapacity: float = Field(default=1.0, ge=0.0, le=1.0)
    maximumOverCapacity: float = Field(default=1.0, ge=0.0, le=1.0)


class UnreachableStrategy(SpecModel):
    """Marathon's unreachableStrategy: how long an UNREACHABLE instance still counts (issue 6)."""
    inactiveAfterSeconds: float = Field(default=0.0, ge=0.0)
    expungeAfterSeconds: float = Field(default=0.0, ge=0.0)


class Volume(SpecModel):
    containerPath: str
    hostPath: str | None = None
    mode: Literal["RO", "RW"] = "RW"


class DockerImage(SpecModel):
    image: str = Field(min_length=1)
    forcePullImage: bool = False
    privileged: bool = False
    parameters: list[dict[str, str]] = Field(default_factory=list)


class PortMapping(SpecModel):
    containerPort: int = Field(default=0, ge=0, le=65535)
    hostPort: int | None = Field(default=None, ge=0, le=65535)
    servicePort: int = Field(default=0, ge=0, le=65535)
    protocol: Literal["tcp", "udp", "udp,tcp"] = "tcp"
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Container(SpecModel):
    type: Literal["MESOS", "DOCKER"] = "MESOS"
    docker: DockerImage | None = None
    volumes: list[Volume] = Field(default_factory=list)
    portMappings: list[PortMapping] | None = None

    @model_validator(mode="before")
    @classmethod
    def _mesos_image(cls, data: Any) -> Any:
        # Accept Marathon's UCR spelling {"mesos": {"image": ...}} as well.
        if isinstance(data, dict) and "docker" not in data and isinstance(data.get("mesos"), dict):
            data = {**data, "docker": data["mesos"]}
        return data

    def out(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type,
                                "volumes": [v.model_dump(exclude_none=True) for v in self.volumes]}
        if self.docker is not None:
            data["docker"] = {"image": self.docker.image, "forcePullImage": self.docker.forcePullImage,
                              "privileged": self.docker.privileged, "parameters": self.docker.parameters}
        if self.portMappings is not None:
            data["portMappings"] = [m.model_dump(exclude_none=True) for m in self.portMappings]
        return data


class AppDefinition(SpecModel):
    id: str
    cmd: str | None = None
    args: list[str] | None = None
    user: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    instances: int = Field(default=1, ge=0)
    cpus: float = Field(default=1.0, ge=0.001)
    mem: float = Field(default=128.0, ge=0.0)
    disk: float = Field(default=0.0, ge=0.0)
    gpus: int = Field(default=0, ge=0)
    container: Container | None = None
    portDefinitions: list[PortDefinition] | None = None
    requirePorts: bool = False
    constraints: list[Any] = Field(default_factory=list)
    healthChecks: list[HealthCheck] = Field(default_factory=list)
    readinessChecks: list[ReadinessCheck] = Field(default_factory=list, max_length=1)
    upgradeStrategy: UpgradeStrategy = Field(default_factory=UpgradeStrategy)
    backoffSeconds: float = Field(default=1.0, ge=0.0)
    backoffFactor: float = Field(default=1.15, ge=1.0)
    maxLaunchDelaySeconds: float = Field(default=300.0, ge=0.0)
    killSelection: Literal["YOUNGEST_FIRST", "OLDEST_FIRST"] = "YOUNGEST_FIRST"
    unreachableStrategy: UnreachableStrategy = Field(default_factory=UnreachableStrategy)
    taskKillGracePeriodSeconds: float | None = Field(default=None, ge=0.0)
    acceptedResourceRoles: list[str] | None = None
    role: str | None = None
    dependencies: list[str] = Field(default_factory=list)
    fetch: list[dict[str, Any]] = Field(default_factory=list)
    version: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return normalise_id(value)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        # Marathon allows secret references ({"secret": "name"}); we keep plain strings.
        if isinstance(value, dict):
            return {k: (v if isinstance(v, str) else str(v)) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _command(self) -> "AppDefinition":
        if self.cmd is not None and self.args is not None:
            raise ValueError("AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.")
        if self.cmd is None and self.args is None and (self.container is None or self.container.docker is None):
            raise ValueError("AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.")
        return self

    # -- derived ----------------------------------------------------------------

    def constraint_list(self) -> list[Constraint]:
        return parse_constraints(self.constraints)

    def port_definitions(self) -> list[PortDefinition]:
        """Host ports wanted: portDefinitions, or a container's portMappings with hostPort."""
        if self.container is not None and self.container.portMappings is not None:
            return [PortDefinition(port=m.hostPort or 0, protocol=m.protocol, name=m.name)
                    for m in self.container.portMappings if m.hostPort is not None]
        if self.portDefinitions is None:
            return [PortDefinition()] if self.container is None or self.container.docker is None else []
        return self.portDefinitions

    def config_equal(self, other: "AppDefinition") -> bool:
        """Same configuration apart from scale: a change of `instances` alone is a scaling."""
        mine = self.model_dump(exclude={"instances", "version"})
        theirs = other.model_dump(exclude={"instances", "version"})
        return mine == theirs

    def out(self) -> dict[str, Any]:
        """The app as Marathon answers it, every default filled, no unknown keys."""
        ports = self.portDefinitions if self.portDefinitions is not None else (
            [PortDefinition()] if self.container is None else [])
        data: dict[str, Any] = {
            "id": self.id, "cmd": self.cmd, "args": self.args, "user": self.user, "env": dict(self.env),
            "instances": self.instances, "cpus": self.cpus, "mem": self.mem, "disk": self.disk,
            "gpus": self.gpus, "executor": "",
            "constraints": [c.to_marathon() for c in self.constraint_list()],
            "uris": [], "fetch": list(self.fetch), "storeUrls": [],
            "backoffSeconds": self.backoffSeconds, "backoffFactor": self.backoffFactor,
            "maxLaunchDelaySeconds": self.maxLaunchDelaySeconds,
            "container": self.container.out() if self.container is not None else None,
            "healthChecks": [h.out() for h in self.healthChecks],
            "readinessChecks": [r.model_dump() for r in self.readinessChecks],
            "dependencies": list(self.dependencies),
            "upgradeStrategy": self.upgradeStrategy.model_dump(),
            "labels": dict(self.labels),
            "acceptedResourceRoles": self.acceptedResourceRoles,
            "version": self.version,
            "killSelection": self.killSelection,
            "unreachableStrategy": self.unreachableStrategy.model_dump(),
            "requirePorts": self.requirePorts,
            "portDefinitions": [p.out() for p in ports],
            "networks": [{"mode": "host"}],
            "secrets": {},
        }
        if self.taskKillGracePeriodSeconds is not None:
            data["taskKillGracePeriodSeconds"] = self.taskKillGracePeriodSeconds
        if self.role is not None:
            data["role"] = self.role
        return data


def normalise_id(value: str) -> str:
    """`foo`, `/foo/` and `//foo` all become `/foo`; each segment is checked."""
    if not isinstance(value, str) or not value.strip("/"):
        raise ValueError("must be a non-empty path such as /group/app")
    segments = [s for s in value.strip().split("/") if s]
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise ValueError(f"path contains an invalid segment {segment!r}: use lowercase letters, "
                             "digits, hyphens and dots")
    return "/" + "/".join(segments)


def _path(location: tuple[Any, ...]) -> str:
    parts = []
    for item in location:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}({item})"] if parts else [f"({item})"]
        else:
            parts.append(str(item))
    return "/" + "/".join(parts)


def _details(error: ValidationError) -> list[dict[str, Any]]:
    details: dict[str, list[str]] = {}
    for item in error.errors():
        location = tuple(x for x in item["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        # Marathon names the object for model-level checks: keep "/" then.
        path = _path(location) if location else "/"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        details.setdefault(path, []).append(message)
    return [{"path": path, "errors": errors} for path, errors in details.items()]


class AppSpecError(SpecError):
    """A 422 carrying one detail per bad field (Marathon's shape)."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        first = details[0] if details else {"path": "/", "errors": ["invalid"]}
        super().__init__(first["path"], "; ".join(first["errors"]))
        self.details = details


def parse_app(document: Any, base: AppDefinition | None = None, app_id: str | None = None) -> AppDefinition:
    """Validate an AppDefinition (merged over `base` for a partial update)."""
    if not isinstance(document, dict):
        raise SpecError("/", "Invalid JSON: expected an object")
    data = dict(document)
    for key in ("tasks", "deployments", "tasksRunning", "tasksStaged", "tasksHealthy", "tasksUnhealthy",
                "lastTaskFailure", "versionInfo", "taskStats", "readinessCheckResults"):
        data.pop(key, None)  # read-only fields a client may send back
    if base is not None:
        data = {**base.model_dump(exclude_none=True), **data}
    if app_id is not None:
        data.setdefault("id", app_id)
    try:
        app = AppDefinition.model_validate(data)
    except ValidationError as error:
        raise AppSpecError(_details(error)) from None
    try:
        app.constraint_list()
    except ConstraintError as error:
        raise AppSpecError([{"path": f"/{error.path}", "errors": [str(error)]}]) from None
    return app
