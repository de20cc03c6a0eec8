"""The rules of Marathon's AppDefinition validation that a field-by-field model cannot say.

Each rule follows Marathon's own (api/v2/validation/AppValidation.scala,
SchedulingValidation.scala) with its path and message, so that the 422 a client gets
is the one Marathon gives: `{"message": "Object is not valid", "details": [{"path",
"errors"}]}`. Rules on the app as a whole are reported on `/`, as Marathon does.
`problems(app, document)` answers them all; `scheduler/services/specs.py` raises them.
"""
from __future__ import annotations

import re
from typing import Any

AppDefinition = Any  # scheduler/services/specs.py's, which calls in here (so not imported)

PORT_INDEX = "Health check port indices must address an element of the ports array or container port mappings."
CHECK_PORT_INDEX = "Check port indices must address an element of the ports array or container port mappings."
ONE_MESOS_HEALTH_CHECK = "AppDefinition can contain at most one Mesos health check"
SINGLE_INSTANCE = "Single instance app may only have one instance"
MIGRATION = ("DCOS_PACKAGE_FRAMEWORK_NAME and DCOS_MIGRATION_API_PATH must be defined when using "
             "DCOS_MIGRATION_API_VERSION")
GPU_DOCKER = "GPU resources only work with the Mesos containerizer"
EMPTY_CMD = "must not be an empty string"
HOST_PORT_MAPPINGS = "portMappings are not allowed with host-networking"
PORT_DEFINITIONS_NON_HOST = "portDefinitions are only allowed with host-networking"
VERSION_ALONE = "The 'version' field may only be combined with the 'id' field."
PATH_SEGMENT = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$"
MARATHON_PROTOCOLS = ("HTTP", "HTTPS", "TCP")  # run by Marathon itself: their port must be the task's
MESOS_PROTOCOLS = ("MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
SINGLE_INSTANCE_LABEL = "MARATHON_SINGLE_INSTANCE_APP"


def problems(app: AppDefinition, document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rule `app` breaks, as Marathon's `details`. `document` is the definition as sent
    (merged over the app for a partial update): fields the model does not keep (`networks`)
    are read there."""
    found: dict[str, list[str]] = {}

    def fail(path: str, message: str) -> None:
        found.setdefault(path, []).append(message)

    ports = port_count(app)
    for index, check in enumerate(app.healthChecks):
        if check.protocol in MARATHON_PROTOCOLS and check.port is None and (check.portIndex or 0) >= ports:
            fail(f"/healthChecks({index})", PORT_INDEX)
    if sum(1 for check in app.healthChecks if check.protocol in MESOS_PROTOCOLS) > 1:
        fail("/", ONE_MESOS_HEALTH_CHECK)
    target = app.check.target if app.check is not None else None
    if target is not None and target.port is None and (target.portIndex or 0) >= ports:
        fail("/check", CHECK_PORT_INDEX)
    _readiness(app, fail)
    _ports(app, fail)
    if app.cmd is not None and len(app.cmd) <= 1:  # AppValidation's rule as written: `s.length() > 1`
        fail("/", EMPTY_CMD)
    labels = app.labels
    if labels.get(SINGLE_INSTANCE_LABEL) == "true":
        if app.instances > 1:
            fail("/", SINGLE_INSTANCE)
        for name in ("minimumHealthCapacity", "maximumOverCapacity"):
            value = getattr(app.upgradeStrategy, name)
            if value != 0.0:
                fail(f"/upgradeStrategy/{name}", f"got {value}, expected 0.0")
    if "DCOS_MIGRATION_API_VERSION" in labels and labels["DCOS_MIGRATION_API_VERSION"] and not (
            labels["DCOS_MIGRATION_API_VERSION"] == "v1" and labels.get("DCOS_PACKAGE_FRAMEWORK_NAME")
            and labels.get("DCOS_MIGRATION_API_PATH")):
        fail("/", MIGRATION)
    if app.gpus > 0 and app.container is not None and app.container.type == "DOCKER":
        fail("/", GPU_DOCKER)
    if app.acceptedResourceRoles is not None and not app.acceptedResourceRoles:
        fail("/acceptedResourceRoles", "must not be empty")
    for index, dependency in enumerate(app.dependencies):
        if not all(re.fullmatch(PATH_SEGMENT, s) for s in dependency.split("/") if s):
            fail(f"/dependencies({index})", f"must fully match regular expression '{PATH_SEGMENT}'")
    _networks(app, document, fail)
    return [{"path": path, "errors": errors} for path, errors in found.items()]


def port_count(app: AppDefinition) -> int:
    """How many ports a check may address: the container's portMappings when it has some, else
    the port definitions, one when none are given (Marathon's `AppValidation.portIndices` over
    the app as AppNormalization leaves it)."""
    container = app.container
    if container is not None and container.portMappings:
        return len(container.portMappings)
    return len(app.portDefinitions) if app.portDefinitions is not None else 1


def port_names(app: AppDefinition) -> set[str]:
    container = app.container
    if container is not None and container.portMappings is not None:
        return {m.name for m in container.portMappings if m.name}
    return {p.name for p in (app.portDefinitions or []) if p.name}


def _readiness(app: AppDefinition, fail: Any) -> None:
    """Marathon's `readinessCheckValidator`: the port name exists; the timeout is shorter than
    the interval."""
    names = port_names(app)
    for index, check in enumerate(app.readinessChecks):
        if check.portName not in names:
            fail(f"/readinessChecks({index})/portName", f"No port definition reference for portName {check.portName}")
        if check.timeoutSeconds >= check.intervalSeconds:
            fail(f"/readinessChecks({index})/timeoutSeconds",
                 f"got {check.timeoutSeconds}, expected less than {check.intervalSeconds}")


def _ports(app: AppDefinition, fail: Any) -> None:
    """Marathon's `portDefinitionsValidator` and `portMappingsValidator`: unique names, and unique
    fixed ports (0 asks for any port: never a duplicate)."""
    definitions = app.portDefinitions or []
    named = [p.name for p in definitions if p.name]
    if len(named) != len(set(named)):
        fail("/portDefinitions", "Port names must be unique.")
    fixed = [p.port for p in definitions if p.port]
    if len(fixed) != len(set(fixed)):
        fail("/portDefinitions", "Ports must be unique.")
    mappings = (app.container.portMappings if app.container is not None else None) or []
    mapped = [m.name for m in mappings if m.name]
    if len(mapped) != len(set(mapped)):
        fail("/container/portMappings", "Port names must be unique.")


def _networks(app: AppDefinition, document: dict[str, Any], fail: Any) -> None:
    """`networks` as given: host networking takes no portMappings, container networking no
    portDefinitions."""
    networks = document.get("networks")
    if not isinstance(networks, list):
        return
    modes = {str(n.get("mode", "container")) for n in networks if isinstance(n, dict)}
    mappings = app.container.portMappings if app.container is not None else None
    if "host" in modes and mappings:
        fail("/", HOST_PORT_MAPPINGS)
    if modes - {"host"} and isinstance(document.get("portDefinitions"), list) and document["portDefinitions"]:
        fail("/", PORT_DEFINITIONS_NON_HOST)


def update_problems(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Marathon's AppUpdate rule: `version` (a rollback) goes with nothing but `id`."""
    if "version" in document and set(document) - {"version", "id"}:
        return [{"path": "/", "errors": [VERSION_ALONE]}]
    return []
