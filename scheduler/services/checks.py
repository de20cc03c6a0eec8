"""Marathon's app-level `check` (Marathon 1.6+): one Mesos check, run next to the task.

A check reports, it never kills: the executor runs it as Mesos runs a CheckInfo and
sends each change of its result as a TASK_RUNNING status with `check_status`
(REASON_TASK_CHECK_STATUS_UPDATED); `/v2` shows the last one as the task's
`checkResult`. The JSON follows Marathon's AppCheck (raml `AppCheck`,
`raml/CheckConversion.scala`): exactly one of `http`, `tcp`, `exec`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scheduler.limits import INT32_MAX

MAX_ARGV = 256


class CheckModel(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class HttpCheck(CheckModel):
    portIndex: int | None = Field(default=None, ge=0, le=MAX_ARGV)
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = "/"
    scheme: Literal["HTTP"] = "HTTP"


class TcpCheck(CheckModel):
    portIndex: int | None = Field(default=None, ge=0, le=MAX_ARGV)
    port: int | None = Field(default=None, ge=1, le=65535)


class CheckCommand(CheckModel):
    """Marathon's ShellCommand (`shell`) or ArgvCommand (`argv`)."""
    shell: str | None = None
    argv: list[str] | None = Field(default=None, min_length=1, max_length=MAX_ARGV)

    @model_validator(mode="after")
    def _one(self) -> "CheckCommand":
        if (self.shell is None) == (self.argv is None):
            raise ValueError("a command is either `shell` or `argv`")
        return self


class ExecCheck(CheckModel):
    command: CheckCommand


class AppCheck(CheckModel):
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    exec: ExecCheck | None = None
    intervalSeconds: int = Field(default=60, ge=1, le=INT32_MAX)
    timeoutSeconds: int = Field(default=20, ge=1, le=INT32_MAX)
    delaySeconds: int = Field(default=15, ge=0, le=INT32_MAX)

    @model_validator(mode="after")
    def _exactly_one(self) -> "AppCheck":
        if sum(kind is not None for kind in (self.http, self.tcp, self.exec)) != 1:
            raise ValueError("illegal check: expected one of http, tcp or exec checks")
        return self

    @property
    def target(self) -> HttpCheck | TcpCheck | None:
        """The port-addressed part (HTTP or TCP), None for an exec check."""
        return self.http or self.tcp

    def out(self) -> dict[str, Any]:
        """As Marathon answers it (its CheckConversion writer)."""
        data: dict[str, Any] = {"intervalSeconds": self.intervalSeconds, "timeoutSeconds": self.timeoutSeconds,
                                "delaySeconds": self.delaySeconds}
        if self.http is not None:
            data["http"] = self.http.model_dump(exclude_none=True)
        elif self.tcp is not None:
            data["tcp"] = self.tcp.model_dump(exclude_none=True)
        elif self.exec is not None:
            data["exec"] = {"command": self.exec.command.model_dump(exclude_none=True)}
        return data

    def check_info(self) -> dict[str, Any]:
        """Mesos CheckInfo JSON. An HTTP or TCP check without a `port` carries `port_index`
        (which of the task's host ports), turned into the port itself at launch
        (scheduler/mesos_json/launch.py `resolve_check_port`)."""
        info: dict[str, Any] = {"delay_seconds": float(self.delaySeconds),
                                "interval_seconds": float(self.intervalSeconds),
                                "timeout_seconds": float(self.timeoutSeconds)}
        target = self.target
        if target is not None:
            where: dict[str, Any] = ({"port": target.port} if target.port is not None
                                     else {"port_index": target.portIndex or 0})
            if self.http is not None:
                info.update(type="HTTP", http={**where, "path": self.http.path})
            else:
                info.update(type="TCP", tcp=where)
            return info
        assert self.exec is not None
        command = self.exec.command
        if command.shell is not None:
            info.update(type="COMMAND", command={"command": {"shell": True, "value": command.shell}})
        else:
            argv = command.argv or []
            info.update(type="COMMAND", command={"command": {"shell": False, "value": argv[0],
                                                             "arguments": list(argv)}})
        return info


def check_result(status: dict[str, Any]) -> dict[str, Any]:
    """A Mesos CheckStatusInfo as Marathon's `checkResult` (its checkStatusRamlWriter): only the
    parts that hold a result."""
    out: dict[str, Any] = {}
    if "exit_code" in (status.get("command") or {}):
        out["command"] = {"exitCode": status["command"]["exit_code"]}
    if "status_code" in (status.get("http") or {}):
        out["http"] = {"statusCode": status["http"]["status_code"]}
    if "succeeded" in (status.get("tcp") or {}):
        out["tcp"] = {"succeeded": status["tcp"]["succeeded"]}
    return out
