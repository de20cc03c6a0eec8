"""Metronome job and schedule specs: pydantic models whose errors name the field.

Field names and limits follow Metronome's JSON schemas (jobspec, schedulespec)
so existing job files keep working; dockyard's own additions are few and
named plainly: `run.instances` (an array job: N tasks, each told its index)
and `run.restart.backoffSeconds` (the first retry delay, doubling after).
JSON and YAML are both accepted; every error becomes a `/path` and a message.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from framework import bodies
from framework.errors import SpecError
from scheduler import limits, spec_fields
from scheduler.limits import INT32_MAX
from scheduler.placement.constraints import ConstraintError, parse_one
from scheduler.privileged import privileged_fields

JOB_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
SCHEDULE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_ITEMS = 256  # any list in a spec (artifacts, volumes, constraints, args, dependencies...)
MAX_SCHEDULES = 16
MAX_CPUS = 1_000_000.0
MAX_MB = 1e12


class SpecInvalid(SpecError):
    """A spec failed validation; `details` is Marathon's `[{"path", "errors"}]` list."""

    def __init__(self, details: list[dict]) -> None:
        first = details[0] if details else {"path": "/", "errors": ["invalid"]}
        super().__init__(first["path"], "; ".join(first["errors"]))
        self.details = details


class Model(BaseModel):
    # NaN and the infinities are refused: no JSON client could read such a spec back.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", allow_inf_nan=False)

    def dump(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class RestartPolicy(str, Enum):
    NEVER = "NEVER"
    ON_FAILURE = "ON_FAILURE"


class Restart(Model):
    policy: RestartPolicy = RestartPolicy.NEVER
    active_deadline_seconds: int | None = Field(None, alias="activeDeadlineSeconds", ge=1, le=INT32_MAX)
    backoff_seconds: float = Field(1.0, alias="backoffSeconds", ge=0, le=3600)


class ConstraintSpec(Model):
    attribute: str = Field(min_length=1)
    operator: str
    value: str | None = None

    @model_validator(mode="after")
    def _known_operator(self) -> "ConstraintSpec":
        try:
            parse_one({"attribute": self.attribute, "operator": self.operator, "value": self.value})
        except ConstraintError as error:
            raise ValueError(str(error)) from None
        return self


class Placement(Model):
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=MAX_ITEMS)


class Docker(Model):
    image: str = Field(min_length=1)
    force_pull_image: bool = Field(False, alias="forcePullImage")
    privileged: bool = False
    parameters: list[dict] = Field(default_factory=list, max_length=MAX_ITEMS)


class UcrImage(Model):
    id: str = Field(min_length=1)
    kind: str = "docker"
    force_pull: bool = Field(False, alias="forcePull")


class Ucr(Model):
    image: UcrImage


class Artifact(Model):
    uri: str = Field(min_length=1)
    executable: bool = False
    extract: bool = True
    cache: bool = False


class Volume(Model):
    container_path: str = Field(alias="containerPath", min_length=1)
    host_path: str | None = Field(None, alias="hostPath")
    mode: str = "RW"
    secret: str | None = None  # a file holding this secret of the run (docs/secrets.md)

    @model_validator(mode="after")
    def _one_source(self) -> "Volume":
        if self.secret is not None and self.host_path is not None:
            raise ValueError("a volume takes either hostPath or secret, not both")
        return self

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("RO", "RW"):
            raise ValueError("must be RO or RW")
        return value


class EnvSecret(Model):
    """An environment variable whose value is one of the run's secrets: `{"secret": "pw"}`."""
    secret: str = Field(min_length=1)


class SecretDef(Model):
    """Metronome's `run.secrets` entry: where in the secret store the value lives."""
    source: str = Field(min_length=1)


class Run(Model):
    cmd: str | None = None
    args: list[str] | None = Field(None, max_length=MAX_ITEMS)
    cpus: float = Field(1.0, ge=0.01, le=MAX_CPUS)
    mem: float = Field(128.0, ge=32, le=MAX_MB)
    disk: float = Field(0.0, ge=0, le=MAX_MB)
    gpus: float = Field(0.0, ge=0, le=INT32_MAX)
    env: dict[str, str | EnvSecret] = Field(default_factory=dict)
    secrets: dict[str, SecretDef] = Field(default_factory=dict, max_length=MAX_ITEMS)
    docker: Docker | None = None
    ucr: Ucr | None = None
    volumes: list[Volume] = Field(default_factory=list, max_length=MAX_ITEMS)
    artifacts: list[Artifact] = Field(default_factory=list, max_length=MAX_ITEMS)
    placement: Placement = Field(default_factory=Placement)
    restart: Restart = Field(default_factory=Restart)
    max_launch_delay: int = Field(3600, alias="maxLaunchDelay", ge=1, le=INT32_MAX)
    task_kill_grace_period_seconds: float = Field(3.0, alias="taskKillGracePeriodSeconds", ge=0, le=INT32_MAX)
    user: str | None = None
    instances: int = Field(1, ge=1, le=10000)

    @field_validator("env", mode="before")
    @classmethod
    def _plain_env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name, item in value.items():
                if isinstance(item, dict) and set(item) != {"secret"}:
                    raise ValueError(f'{name}: a value is a string or {{"secret": "<name>"}}')
            return {str(k): v if isinstance(v, (str, dict, EnvSecret)) else json.dumps(v) for k, v in value.items()}
        return value

    @field_validator("env")
    @classmethod
    def _env_size(cls, value: dict[str, str | EnvSecret]) -> dict[str, str | EnvSecret]:
        limits.check_env({k: v if isinstance(v, str) else v.secret for k, v in value.items()})
        return value

    @model_validator(mode="after")
    def _something_to_run(self) -> "Run":
        if not self.cmd and not self.args and not self.docker and not self.ucr:
            raise ValueError("one of cmd, args, docker or ucr is required")
        if self.docker and self.ucr:
            raise ValueError("docker and ucr are mutually exclusive")
        return self


class ConcurrencyPolicy(str, Enum):
    ALLOW = "ALLOW"
    FORBID = "FORBID"
    REPLACE = "REPLACE"


class Schedule(Model):
    id: str = "default"
    cron: str
    timezone: str = "UTC"
    starting_deadline_seconds: int = Field(900, alias="startingDeadlineSeconds", ge=1, le=INT32_MAX)
    concurrency_policy: ConcurrencyPolicy = Field(ConcurrencyPolicy.ALLOW, alias="concurrencyPolicy")
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        limits.check_id_length(value)
        if not SCHEDULE_ID.match(value):
            raise ValueError("must be lowercase letters, digits and dashes")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"not a valid 5-field cron expression: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class Dependency(Model):
    id: str = Field(max_length=1024)


class JobSpec(Model):
    id: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    run: Run
    schedules: list[Schedule] = Field(default_factory=list, max_length=MAX_SCHEDULES)
    dependencies: list[Dependency] = Field(default_factory=list, max_length=MAX_ITEMS)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        limits.check_id_length(value)
        if not JOB_ID.match(value):
            raise ValueError("must be dot-separated lowercase letters, digits and dashes")
        return value

    @field_validator("labels")
    @classmethod
    def _labels_size(cls, value: dict[str, str]) -> dict[str, str]:
        return limits.check_labels(value)

    @model_validator(mode="after")
    def _unique_schedules(self) -> "JobSpec":
        ids = [s.id for s in self.schedules]
        if len(ids) != len(set(ids)):
            raise ValueError("schedule ids must be unique")
        if any(d.id == self.id for d in self.dependencies):
            raise ValueError("a job cannot depend on itself")
        return self


def secret_problems(run: Run) -> list[dict]:
    """Metronome's checks of `run.secrets`: each referenced one defined and each defined one
    referenced; a secret file only in a UCR (or image-less MESOS) container."""
    referenced = [v.secret for v in run.env.values() if isinstance(v, EnvSecret)]
    referenced += [v.secret for v in run.volumes if v.secret is not None]
    details = []
    undefined = sorted({name for name in referenced if name not in run.secrets})
    if undefined:
        details.append({"path": "/run/secrets", "errors": [
            f"The following secrets are referenced, but undefined: {', '.join(undefined)}. "
            f"Please add them to the secrets field."]})
    unused = sorted(set(run.secrets) - set(referenced))
    if unused:
        details.append({"path": "/run/secrets", "errors": [
            f"The following secrets are defined, but not referenced: {', '.join(unused)}. "
            f"Please remove them from the secrets field."]})
    for index, volume in enumerate(run.volumes):
        if volume.secret is not None and (run.docker is not None or run.ucr is None):
            details.append({"path": f"/run/volumes/{index}/secret",
                            "errors": ["File based secrets are only supported by UCR"]})
    return details


def _path(location: tuple) -> str:
    parts = []
    for item in location:
        if isinstance(item, str) and item in ("function-after", "function-before") or item == "":
            continue
        parts.append(str(item))
    return "/" + "/".join(parts)


def details_from(error: ValidationError, prefix: str = "") -> list[dict]:
    """Marathon's error details from pydantic's: one entry per path, messages kept."""
    grouped: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        location = tuple(x for x in item["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        message = item["msg"].removeprefix("Value error, ")
        grouped.setdefault(prefix + _path(location) if location else prefix or "/", []).append(message)
    return [{"path": path, "errors": messages} for path, messages in grouped.items()]


def load_document(raw: bytes | str | dict) -> Any:
    """JSON or YAML text (or an already parsed dict); raises SpecError('/', ...) when neither."""
    if not isinstance(raw, (bytes, str)):
        return raw  # already parsed (the API's body): the caller checks its shape
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as error:
        raise SpecError("/", f"Invalid JSON or YAML: {error}") from None
    depth = limits.current().max_json_depth
    try:
        return bodies.loads(text, depth)
    except bodies.BodyError as error:
        raise SpecError("/", error.message) from None
    except ValueError:
        pass
    try:
        return bodies.yaml_loads(text, depth)
    except bodies.BodyError as error:
        raise SpecError(error.path, error.message) from None
    except ValueError as error:
        raise SpecError("/", f"Invalid JSON or YAML: {error}") from None


def parse_job(raw: bytes | str | dict) -> JobSpec:
    document = load_document(raw)
    if not isinstance(document, dict):
        raise SpecInvalid([{"path": "/", "errors": ["a job must be an object"]}])
    try:
        spec = JobSpec.model_validate(document)
    except ValidationError as error:
        raise SpecInvalid(details_from(error)) from None
    problems = secret_problems(spec.run)
    if problems:
        raise SpecInvalid(problems)
    return spec


def parse_schedule(raw: bytes | str | dict) -> Schedule:
    document = load_document(raw)
    if not isinstance(document, dict):
        raise SpecInvalid([{"path": "/", "errors": ["a schedule must be an object"]}])
    try:
        return Schedule.model_validate(document)
    except ValidationError as error:
        raise SpecInvalid(details_from(error)) from None


def timestamp(seconds: float | None) -> str | None:
    """Marathon's time format: ISO-8601 UTC with milliseconds."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def metronome_time(seconds: float | None) -> str | None:
    """Metronome's time format (its DateTimeFormat, `yyyy-MM-dd'T'HH:mm:ss.SSSZ`): UTC with
    milliseconds and a `+0000` offset."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def privileged_paths(spec: JobSpec) -> list[str]:
    """Fields of a job that reach past its container (scheduler/privileged.py decides who may)."""
    return privileged_fields(spec.run.docker, spec.run.volumes, "/run/docker", "/run/volumes")


# Fields of Metronome's job and schedule JSON (jobspec.schema.json, schedulespec.schema.json)
# that dockyard accepts and does not use, and the read-only ones its answers embed (a
# client may send a job back as it read it): known, so never reported.
METRONOME_ALSO_KNOWN: dict[type, dict[str, Any]] = {
    JobSpec: {"activeRuns": None, "history": None, "historySummary": None},
    Run: {"networks": None},
    Ucr: {"privileged": None},
    Schedule: {"nextRunAt": None},
}


def unknown_fields(document: Any) -> list[str]:
    """What a job names that no field of Metronome's job is, each with the nearest known name:
    `unknown field 'run.memory' (did you mean 'run.mem'?)`. The job is still accepted
    (Metronome's API ignores them too); the API answers these as warnings."""
    return spec_fields.unknown_fields(document, JobSpec, METRONOME_ALSO_KNOWN)


def unknown_schedule_fields(document: Any) -> list[str]:
    """The same for a schedule posted on its own (`/v1/jobs/{id}/schedules`)."""
    return spec_fields.unknown_fields(document, Schedule, METRONOME_ALSO_KNOWN)
