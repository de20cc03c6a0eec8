"""Marathon AppDefinitions: validation (422 naming each field), defaults, normalised output.

Input is Marathon's JSON (YAML works too). Output is what Marathon itself would
answer, with every default filled (marathon-lb indexes health-check fields
directly) and only keys the PyPI `marathon` client knows (it raises on any other).
dockyard's own extensions ride in `labels`.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from framework.errors import SpecError
from scheduler import limits, spec_fields
from scheduler.limits import INT32_MAX
from scheduler.placement.constraints import Constraint, ConstraintError
from scheduler.privileged import privileged_fields
from scheduler.services import validation
from scheduler.services.checks import AppCheck
from scheduler.placement.constraints import parse as parse_constraints

_SEGMENT = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
RESERVED_LAST_SEGMENTS = ("restart", "tasks", "versions")  # Marathon's: they would shadow API routes
HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
MAX_ITEMS = 256  # any list in a spec (health checks, ports, volumes, constraints, args...)
MAX_CPUS = 1_000_000.0
MAX_MB = 1e12  # mem and disk, in MB


class SpecModel(BaseModel):
    # Unknown input keys are ignored (Marathon's own behaviour for most of them); they
    # never reach the output, where the client would choke on them. NaN and the
    # infinities are refused: no JSON client could read such a spec back.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)


class CommandCheck(SpecModel):
    value: str


class HealthCheck(SpecModel):
    protocol: Literal["HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"] = "HTTP"
    path: str | None = None
    portIndex: int | None = Field(default=None, ge=0, le=MAX_ITEMS)
    port: int | None = Field(default=None, ge=0, le=65535)
    command: CommandCheck | None = None
    gracePeriodSeconds: int = Field(default=300, ge=0, le=INT32_MAX)
    intervalSeconds: int = Field(default=60, ge=0, le=INT32_MAX)
    timeoutSeconds: int = Field(default=20, ge=0, le=INT32_MAX)
    maxConsecutiveFailures: int = Field(default=3, ge=0, le=INT32_MAX)
    delaySeconds: int = Field(default=15, ge=0, le=INT32_MAX)
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
    intervalSeconds: int = Field(default=30, ge=1, le=INT32_MAX)
    timeoutSeconds: int = Field(default=10, ge=1, le=INT32_MAX)
    httpStatusCodesForReady: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [200], max_length=MAX_ITEMS)
    preserveLastResponse: bool = False


class PortDefinition(SpecModel):
    port: int = Field(default=0, ge=0, le=65535)
    protocol: str = "tcp"
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_ITEMS)

    def out(self) -> dict[str, Any]:
        data: dict[str, Any] = {"port": self.port, "protocol": self.protocol, "labels": self.labels}
        if self.name:
            data["name"] = self.name
        return data


class UpgradeStrategy(SpecModel):
    minimumHealthCapacity: float = Field(default=1.0, ge=0.0, le=1.0)
    maximumOverCapacity: float = Field(default=1.0, ge=0.0, le=1.0)


class UnreachableStrategy(SpecModel):
    """Marathon's unreachableStrategy, with its defaults (UnreachableEnabled in Marathon's
    state/UnreachableStrategy.scala); scheduler/services/reconcile.py applies it."""
    inactiveAfterSeconds: float = Field(default=300.0, ge=0.0, le=INT32_MAX)
    expungeAfterSeconds: float = Field(default=600.0, ge=0.0, le=INT32_MAX)


class Volume(SpecModel):
    containerPath: str
    hostPath: str | None = None
    mode: Literal["RO", "RW"] = "RW"
    secret: str | None = None  # a file holding this secret of the app (docs/secrets.md)

    @model_validator(mode="after")
    def _one_source(self) -> "Volume":
        if self.secret is not None and self.hostPath is not None:
            raise ValueError("a volume takes either hostPath or secret, not both")
        return self


class EnvSecret(SpecModel):
    """An environment variable whose value is one of the app's secrets: `{"secret": "pw"}`."""
    secret: str = Field(min_length=1)


class SecretDef(SpecModel):
    """Marathon's `secrets` entry: where in the secret store the value lives."""
    source: str = Field(min_length=1)


class DockerImage(SpecModel):
    image: str = Field(min_length=1)
    forcePullImage: bool = False
    privileged: bool = False
    parameters: list[dict[str, str]] = Field(default_factory=list, max_length=MAX_ITEMS)


class PortMapping(SpecModel):
    containerPort: int = Field(default=0, ge=0, le=65535)
    hostPort: int | None = Field(default=None, ge=0, le=65535)
    servicePort: int = Field(default=0, ge=0, le=65535)
    protocol: Literal["tcp", "udp", "udp,tcp"] = "tcp"
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_ITEMS)


class Container(SpecModel):
    type: Literal["MESOS", "DOCKER"] = "MESOS"
    docker: DockerImage | None = None
    volumes: list[Volume] = Field(default_factory=list, max_length=MAX_ITEMS)
    portMappings: list[PortMapping] | None = Field(default=None, max_length=MAX_ITEMS)

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
    args: list[str] | None = Field(default=None, max_length=MAX_ITEMS)
    user: str | None = None
    env: dict[str, str | EnvSecret] = Field(default_factory=dict)
    secrets: dict[str, SecretDef] = Field(default_factory=dict, max_length=MAX_ITEMS)
    labels: dict[str, str] = Field(default_factory=dict)
    instances: int = Field(default=1, ge=0, json_schema_extra=lambda schema: schema.update(
        maximum=limits.current().max_instances))
    cpus: float = Field(default=1.0, ge=0.001, le=MAX_CPUS)
    mem: float = Field(default=128.0, ge=0.0, le=MAX_MB)
    disk: float = Field(default=0.0, ge=0.0, le=MAX_MB)
    gpus: int = Field(default=0, ge=0, le=INT32_MAX)
    container: Container | None = None
    portDefinitions: list[PortDefinition] | None = Field(default=None, max_length=MAX_ITEMS)
    requirePorts: bool = False
    constraints: list[Any] = Field(default_factory=list, max_length=MAX_ITEMS)
    healthChecks: list[HealthCheck] = Field(default_factory=list, max_length=MAX_ITEMS)
    check: AppCheck | None = None  # Marathon 1.6+ app-level Mesos check (scheduler/services/checks.py)
    readinessChecks: list[ReadinessCheck] = Field(default_factory=list, max_length=1)
    upgradeStrategy: UpgradeStrategy = Field(default_factory=UpgradeStrategy)
    backoffSeconds: float = Field(default=1.0, ge=0.0, le=INT32_MAX)
    backoffFactor: float = Field(default=1.15, ge=1.0, le=INT32_MAX)
    maxLaunchDelaySeconds: float = Field(default=300.0, ge=0.0, le=INT32_MAX)
    killSelection: Literal["YOUNGEST_FIRST", "OLDEST_FIRST"] = "YOUNGEST_FIRST"
    unreachableStrategy: UnreachableStrategy = Field(default_factory=UnreachableStrategy)
    taskKillGracePeriodSeconds: float | None = Field(default=None, ge=0.0, le=INT32_MAX)
    acceptedResourceRoles: list[str] | None = Field(default=None, max_length=MAX_ITEMS)
    role: str | None = None
    dependencies: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    fetch: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_ITEMS)
    version: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return normalise_id(value)

    @field_validator("instances")
    @classmethod
    def _instances(cls, value: int) -> int:
        ceiling = limits.current().max_instances
        if value > ceiling:
            raise ValueError(f"must be at most {ceiling} (the scheduler's --max-instances)")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        # A secret reference ({"secret": "name"}) stays one; any other value becomes its text.
        if isinstance(value, dict):
            for name, item in value.items():
                if isinstance(item, dict) and set(item) != {"secret"}:
                    raise ValueError(f"{name}: a value is a string or {{\"secret\": \"<name>\"}}")
            return {k: (v if isinstance(v, (str, dict, EnvSecret)) else str(v)) for k, v in value.items()}
        return value

    @field_validator("env")
    @classmethod
    def _env_size(cls, value: dict[str, str | EnvSecret]) -> dict[str, str | EnvSecret]:
        limits.check_env({k: v if isinstance(v, str) else v.secret for k, v in value.items()})
        return value

    @field_validator("labels")
    @classmethod
    def _labels_size(cls, value: dict[str, str]) -> dict[str, str]:
        return limits.check_labels(value)

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
            "id": self.id, "cmd": self.cmd, "args": self.args, "user": self.user,
            "env": {k: v if isinstance(v, str) else {"secret": v.secret} for k, v in self.env.items()},
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
            "secrets": {name: {"source": spec.source} for name, spec in self.secrets.items()},
        }
        if self.taskKillGracePeriodSeconds is not None:
            data["taskKillGracePeriodSeconds"] = self.taskKillGracePeriodSeconds
        if self.role is not None:
            data["role"] = self.role
        if self.check is not None:
            data["check"] = self.check.out()
        return data


def secret_problems(app: AppDefinition) -> list[dict[str, Any]]:
    """Every secret reference names a secret the app defines; a secret file needs an image (UCR)."""
    details = []
    for variable, value in app.env.items():
        if isinstance(value, EnvSecret) and value.secret not in app.secrets:
            details.append({"path": f"/env/{variable}",
                            "errors": [f"references an undefined secret '{value.secret}'"]})
    for index, volume in enumerate(app.container.volumes if app.container is not None else []):
        if volume.secret is None:
            continue
        path = f"/container/volumes({index})/secret"
        if volume.secret not in app.secrets:
            details.append({"path": path, "errors": [f"references an undefined secret '{volume.secret}'"]})
        elif app.container is None or app.container.docker is None:
            details.append({"path": path, "errors": ["File based secrets are only supported by UCR: "
                                                     "give the app a container image"]})
    return details


def normalise_id(value: str) -> str:
    """`foo`, `/foo/` and `//foo` all become `/foo`; each segment is checked (Marathon's PathId:
    lowercase DNS-like segments, not ending in a reserved word), the whole within --max-id-length."""
    if not isinstance(value, str) or not value.strip("/"):
        raise ValueError("must be a non-empty path such as /group/app")
    longest = limits.current().max_id_length
    if len(value) > longest * 2:  # cheap refusal before splitting a huge string
        raise ValueError(f"must be at most {longest} characters")
    segments = [s for s in value.strip().split("/") if s]
    if not segments:
        raise ValueError("must be a non-empty path such as /group/app")
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise ValueError(f"path contains an invalid segment {segment[:64]!r}: use lowercase letters, "
                             "digits, hyphens and dots")
    normal = "/" + "/".join(segments)
    if len(normal) > longest:
        raise ValueError(f"must be at most {longest} characters")
    if segments[-1] in RESERVED_LAST_SEGMENTS:
        raise ValueError(f"must not end with any of the following reserved keywords: "
                         f"{', '.join(RESERVED_LAST_SEGMENTS)}")
    return normal


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


READ_ONLY_FIELDS = ("tasks", "deployments", "tasksRunning", "tasksStaged", "tasksHealthy", "tasksUnhealthy",
                    "lastTaskFailure", "versionInfo", "taskStats", "readinessCheckResults")
# Fields of Marathon's AppDefinition (docs/rest-api/public/api/v2/types/app.raml and
# appContainer.raml) that dockyard accepts and does not use: known, so never reported.
MARATHON_ALSO_KNOWN: dict[type, dict[str, Any]] = {
    AppDefinition: {**{name: None for name in READ_ONLY_FIELDS},
                    **{name: None for name in ("executor", "ipAddress", "networks", "ports", "residency", "uris",
                                               "storeUrls", "tty")}},
    Container: {"mesos": DockerImage, "appc": None, "linuxInfo": None},
    DockerImage: {"credential": None, "pullConfig": None, "network": None, "portMappings": list[PortMapping]},
    PortMapping: {"networkNames": None},
    Volume: {"persistent": None, "external": None},
    HealthCheck: {"ipProtocol": None},
}


def unknown_fields(document: Any) -> list[str]:
    """What an app definition names that no field of Marathon's AppDefinition is, each with the
    nearest known name: `unknown field 'instnaces' (did you mean 'instances'?)`. The app is
    still accepted (Marathon ignores unknown keys); the API answers these as warnings."""
    return spec_fields.unknown_fields(document, AppDefinition, MARATHON_ALSO_KNOWN)


def parse_app(document: Any, base: AppDefinition | None = None, app_id: str | None = None) -> AppDefinition:
    """Validate an AppDefinition (merged over `base` for a partial update)."""
    if not isinstance(document, dict):
        raise SpecError("/", "Invalid JSON: expected an object")
    data = dict(document)
    for key in READ_ONLY_FIELDS:
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
    problems = secret_problems(app) + validation.problems(app, data)
    if problems:
        raise AppSpecError(problems)
    return app


def privileged_paths(app: "AppDefinition | dict[str, Any]") -> list[str]:
    """Fields of an app (parsed, or a raw document) that reach past its container
    (scheduler/privileged.py decides who may have them)."""
    container = app.get("container") if isinstance(app, dict) else app.container
    if isinstance(container, dict):
        docker = container.get("docker") or container.get("mesos")
        volumes = container.get("volumes")
    elif isinstance(container, Container):
        docker, volumes = container.docker, container.volumes
    else:
        return []
    return privileged_fields(docker if isinstance(docker, (dict, DockerImage)) else None,
                             volumes if isinstance(volumes, list) else [], "/container/docker",
                             "/container/volumes")
