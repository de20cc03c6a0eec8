"""Checks the embedded master makes on scheduler calls, FrameworkInfo and tasks.

Pure functions returning an error message (or None), worded like the real
master's so that frameworks (and their logs) see what Mesos would tell them.
The caller decides how the error travels: 400, an ERROR event, or TASK_ERROR.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from framework.errors import DockyardError
from framework.mesos.messages import invalid_id, valid_uuid
from framework.mesos.resources import Resources

CALL_TYPES = frozenset({
    "UNKNOWN", "SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS", "REVIVE", "KILL", "SHUTDOWN", "ACKNOWLEDGE",
    "ACKNOWLEDGE_OPERATION_STATUS", "RECONCILE", "RECONCILE_OPERATIONS", "MESSAGE",
    "REQUEST", "SUPPRESS", "UPDATE_FRAMEWORK",
})
# Calls whose payload must be present, with the payload's field name.
PAYLOADS = {
    "ACCEPT": "accept", "DECLINE": "decline", "ACCEPT_INVERSE_OFFERS": "accept_inverse_offers",
    "DECLINE_INVERSE_OFFERS": "decline_inverse_offers", "KILL": "kill", "SHUTDOWN": "shutdown",
    "ACKNOWLEDGE": "acknowledge", "RECONCILE": "reconcile", "MESSAGE": "message",
    "REQUEST": "request", "ACKNOWLEDGE_OPERATION_STATUS": "acknowledge_operation_status",
    "RECONCILE_OPERATIONS": "reconcile_operations", "UPDATE_FRAMEWORK": "update_framework",
}
# Required protobuf fields per payload (proto2 `required`), checked at parse time.
REQUIRED = {
    "subscribe": ("framework_info",),
    "kill": ("task_id",),
    "shutdown": ("executor_id", "agent_id"),
    "acknowledge": ("agent_id", "task_id", "uuid"),
    "message": ("agent_id", "executor_id", "data"),
    "update_framework": ("framework_info",),
}
FRAMEWORK_INFO_REQUIRED = ("user", "name")
CAPABILITIES = frozenset({
    "REVOCABLE_RESOURCES", "TASK_KILLING_STATE", "GPU_RESOURCES", "SHARED_RESOURCES",
    "PARTITION_AWARE", "MULTI_ROLE", "RESERVATION_REFINEMENT", "REGION_AWARE",
})
MIN_EXECUTOR_CPUS = 0.01
MIN_EXECUTOR_MEM = 32.0


class CallError(DockyardError, ValueError):
    """A call the master refuses with 400; the message is the response body."""


def _id_value(obj: Any) -> str | None:
    if isinstance(obj, Mapping) and isinstance(obj.get("value"), str):
        return obj["value"]
    return None


def parse_call(body: Any) -> dict[str, Any]:
    """Protobuf-like parse of a scheduler Call: unknown `type` dropped, required fields checked."""
    if not isinstance(body, dict):
        raise CallError("Failed to convert JSON into Call protobuf: expected an object")
    shape = shape_error({k: v for k, v in body.items() if k != "type"}, SCHEDULER_CALL)
    if shape is not None:
        raise CallError(f"Failed to convert JSON into Call protobuf: {shape}")
    call = dict(body)
    kind = call.get("type")
    if not isinstance(kind, str) or kind not in CALL_TYPES:
        call.pop("type", None)  # unknown enum on an optional field: unset
    missing: list[str] = []
    if "framework_id" in call and _id_value(call["framework_id"]) is None:
        missing.append("framework_id.value")
    for payload, fields in REQUIRED.items():
        if payload in call:
            value = call[payload]
            if not isinstance(value, dict):
                raise CallError(f"Failed to convert JSON into Call protobuf: "
                                f"'{payload}' is not an object")
            missing.extend(f"{payload}.{f}" for f in fields if f not in value)
    for key in ("subscribe", "update_framework"):
        info = call.get(key, {}).get("framework_info") if isinstance(call.get(key), dict) else None
        if isinstance(info, dict):
            missing.extend(f"{key}.framework_info.{f}" for f in FRAMEWORK_INFO_REQUIRED
                           if f not in info)
        elif info is not None:
            raise CallError(f"Failed to convert JSON into Call protobuf: '{key}.framework_info' is not an object")
    reconcile = call.get("reconcile")
    if isinstance(reconcile, dict):
        tasks = reconcile.get("tasks") or []
        if not isinstance(tasks, list):
            raise CallError("Failed to convert JSON into Call protobuf: 'reconcile.tasks' is not an array")
        for i, task in enumerate(tasks):
            if not isinstance(task, dict) or _id_value(task.get("task_id")) is None:
                missing.append(f"reconcile.tasks[{i}].task_id")
    if missing:
        raise CallError("Failed to convert JSON into Call protobuf: Missing required fields: "
                        + ", ".join(missing))
    return call


def validate_call(call: Mapping[str, Any], principal: str | None = None) -> str | None:
    """The master's scheduler::Call validation (step 5 of the request checks).

    `principal` is the authenticated caller (None when frameworks are not
    authenticated): a SUBSCRIBE naming another principal is refused here, as
    src/master/validation.cpp `scheduler::call::validate` does.
    """
    kind = call.get("type")
    if kind is None:
        return "Expecting 'type' to be present"
    if kind == "SUBSCRIBE":
        subscribe = call.get("subscribe")
        if not isinstance(subscribe, dict):
            return "Expecting 'subscribe' to be present"
        info = subscribe["framework_info"]
        info_id = _id_value(info.get("id"))
        if info_id != _id_value(call.get("framework_id")):
            return "'framework_id' differs from 'subscribe.framework_info.id'"
        claimed = info.get("principal")
        if principal is not None and claimed is not None and claimed != principal:
            return (f"Authenticated principal '{principal}' does not match principal '{claimed}' "
                    f"set in `FrameworkInfo`")
        return None
    if _id_value(call.get("framework_id")) is None:
        return "Expecting 'framework_id' to be present"
    payload = PAYLOADS.get(kind)
    if payload and not isinstance(call.get(payload), dict):
        return f"Expecting '{payload}' to be present"
    if kind == "ACKNOWLEDGE" and not valid_uuid(str(call["acknowledge"]["uuid"])):
        return "Not a valid UUID"
    if kind == "UPDATE_FRAMEWORK":
        info_id = _id_value(call["update_framework"]["framework_info"].get("id"))
        if info_id != _id_value(call.get("framework_id")):
            return "'framework_id' differs from 'update_framework.framework_info.id'"
    return None


def framework_update_error(old: Mapping[str, Any], new: Mapping[str, Any], *,
                           preserve_immutable: bool = False) -> str | None:
    """What a re-SUBSCRIBE or UPDATE_FRAMEWORK may not change (validation.cpp `validateUpdate`).

    The principal never changes. `user` and `checkpoint` do not either: an
    UPDATE_FRAMEWORK that changes them is refused, while a SUBSCRIBE keeps the old
    values (`preserve_immutable`, as `preserveImmutableFields`).
    """
    if old.get("principal") != new.get("principal"):
        return "Changing framework's principal is not allowed."
    if preserve_immutable:
        return None
    if str(new.get("user", "")) != str(old.get("user", "")):
        return (f"Updating 'FrameworkInfo.user' is unsupported; attempted to update from "
                f"'{old.get('user', '')}' to '{new.get('user', '')}'")
    before, after = bool(old.get("checkpoint", False)), bool(new.get("checkpoint", False))
    if before != after:
        return (f"Updating 'FrameworkInfo.checkpoint' is unsupported; attempted to update from "
                f"'{str(before).lower()}' to '{str(after).lower()}'")
    return None


ROLE_INVALID_CHARACTERS = "\x09\x0a\x0b\x0c\x0d\x20\x7f"


def invalid_role(role: str) -> str | None:
    """A role name (src/common/roles.cpp `validate`): hierarchical, '/'-separated components."""
    if role == "*":
        return None
    if role.startswith("/"):
        return f"Role '{role}' cannot start with a slash"
    if role.endswith("/"):
        return f"Role '{role}' cannot end with a slash"
    if "//" in role:
        return f"Role '{role}' cannot contain two adjacent slashes"
    components = [c for c in role.split("/") if c]
    if not components:
        return "Role names cannot be the empty string"
    for component in components:
        if component in (".", "..", "*"):
            return f"Role '{role}' cannot include '{component}' as a component"
        if component.startswith("-"):
            return f"Role component '{component}' is invalid because it starts with a dash"
        if any(c in ROLE_INVALID_CHARACTERS for c in component):
            return f"Role component '{component}' is invalid because it contains backspace or whitespace"
    return None


def stringify_set(items: Iterable[str]) -> str:
    """stout's `stringify` of a set: `{ a, b }`."""
    return "{ " + ", ".join(sorted(items)) + " }"


def capabilities(info: Mapping[str, Any]) -> set[str]:
    return {c.get("type") for c in info.get("capabilities") or [] if isinstance(c, dict)} - {None}


def framework_roles(info: Mapping[str, Any]) -> tuple[str, ...]:
    if "MULTI_ROLE" in capabilities(info):
        return tuple(info.get("roles") or ())
    return (info.get("role") or "*",)


def validate_framework_info(info: Mapping[str, Any]) -> str | None:
    """FrameworkInfo problems the master reports as an ERROR event, in the order of
    src/master/validation.cpp `framework::validate`: roles, id, failover timeout."""
    multi = "MULTI_ROLE" in capabilities(info)
    if multi and "role" in info:
        return "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
    if not multi and info.get("roles"):
        return "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"
    if multi:
        roles = list(info.get("roles") or [])
        duplicates = {role for role in roles if roles.count(role) > 1}
        if duplicates:
            return f"'FrameworkInfo.roles' contains duplicate items: {stringify_set(duplicates)}"
        for role in roles:
            error = invalid_role(role)
            if error:
                return f"'FrameworkInfo.roles' contains invalid role: {error}"
    else:
        error = invalid_role(info.get("role", "*"))
        if error:
            return f"'FrameworkInfo.role' is not a valid role: {error}"
    framework_id = _id_value(info.get("id"))
    if framework_id:
        error = invalid_id(framework_id)
        if error:
            return error
    timeout = info.get("failover_timeout", 0.0)
    try:
        timeout_value = float(timeout)
    except (TypeError, ValueError):
        timeout_value = math.nan
    if not math.isfinite(timeout_value) or abs(timeout_value) * 1e9 >= 2**63:  # `Duration::create`
        return f"The framework failover_timeout ({timeout_value:g}) is invalid"
    return None


def suppressed_roles_error(roles: Iterable[str], suppressed: Iterable[str]) -> str | None:
    """src/master/validation.cpp `validateSuppressedRoles`, checked after the master's own checks."""
    extra = set(suppressed) - set(roles)
    if extra:
        return f"Suppressed roles {stringify_set(extra)} are not contained in the set of roles"
    return None


def _placement_error(task: dict, agent_id: str) -> str | None:
    """The checks a task and each task of a group share, in Mesos's order (master/validation.cpp):
    its agent, its kill policy, then that it uses resources at all."""
    task_agent = _id_value(task.get("agent_id")) or ""
    if task_agent != agent_id:
        return f"Task uses invalid agent {task_agent} while agent {agent_id} is expected"
    if _grace_negative(task.get("kill_policy")):
        return "Task's 'kill_policy.grace_period' must be non-negative"
    if not task.get("resources"):
        return "Task uses no resources"
    return None


def _grace_negative(policy: Any) -> bool:
    try:
        return int(policy["grace_period"]["nanoseconds"]) < 0
    except (KeyError, TypeError, ValueError):
        return False


def _checked_resources(info: Mapping[str, Any], whose: str) -> tuple[Resources, str | None]:
    """A TaskInfo's or ExecutorInfo's resources, or why they are invalid (`whose`: "Task", "Executor")."""
    try:
        resources = Resources(info.get("resources") or [])
    except (ValueError, KeyError, TypeError) as error:
        return Resources(), f"{whose} uses invalid resources: {error}"
    if fractional_gpus(resources):
        return Resources(), f"{whose} uses invalid resources: {GPUS_NOT_WHOLE}"
    return resources, None


def validate_task(task: Mapping[str, Any], *, agent_id: str, known_task: bool,
                  has_executor: bool, offered: Resources,
                  framework_id: str, unreachable_task: bool = False) -> tuple[str | None, Resources]:
    """A LAUNCH task, in the master's order (src/master/validation.cpp `task::internal::validateTask`,
    then `validateExecutor`). Returns (error, resources it consumes)."""
    task_id = _id_value(task.get("task_id")) or ""
    error = invalid_id(task_id)
    if error:
        return error, Resources()
    if known_task:
        return f"Task has duplicate ID: {task_id}", Resources()
    if unreachable_task:
        return f"Task reuses the ID of an unreachable task: {task_id}", Resources()
    problem = _placement_error(task, agent_id)
    if problem is not None:
        return problem, Resources()
    total, problem = _checked_resources(task, "Task")
    if problem is not None:
        return problem, Resources()
    executor = task.get("executor")
    if (executor is not None) == ("command" in task):
        return ("Task should have at least one (but not both) of CommandInfo or "
                "ExecutorInfo present"), Resources()
    if isinstance(executor, dict):
        error = _validate_executor(executor, framework_id)
        if error:
            return error, Resources()
        if executor.get("type") not in (None, "CUSTOM"):
            return "'ExecutorInfo.type' must be 'CUSTOM'", Resources()
        if "command" not in executor:
            return "'ExecutorInfo.command' must be set", Resources()
        if not has_executor:
            executor_resources, problem = _checked_resources(executor, "Executor")
            if problem is not None:
                return problem, Resources()
            total = total + executor_resources
    if not offered.contains(total):
        return (f"Total resources {total} required by task and its executor is more than "
                f"available {offered}"), Resources()
    return None, total


GPUS_NOT_WHOLE = "Invalid 'gpus' resource: The 'gpus' resource must be an unsigned integer"


def fractional_gpus(resources: Resources) -> bool:
    """src/common/validation.cpp `validateGpus`: GPUs come whole."""
    gpus = resources.scalar("gpus")
    return gpus != int(gpus)


def _validate_executor(executor: Mapping[str, Any], framework_id: str) -> str | None:
    kind = executor.get("type")
    if kind == "DEFAULT" and "command" in executor:
        return "'ExecutorInfo.command' must not be set for 'DEFAULT' executor"
    if kind == "CUSTOM" and "command" not in executor:
        return "'ExecutorInfo.command' must be set for 'CUSTOM' executor"
    executor_id = _id_value(executor.get("executor_id"))
    if executor_id is None:
        return "'ExecutorInfo.executor_id' must be set"
    error = invalid_id(executor_id)
    if error:
        return error
    fid = _id_value(executor.get("framework_id"))
    if fid is None:
        return "'ExecutorInfo.framework_id' must be set"
    if fid != framework_id:
        return (f"ExecutorInfo has an invalid FrameworkID (Actual: {fid} vs Expected: "
                f"{framework_id})")
    if _grace_negative({"grace_period": executor.get("shutdown_grace_period")}):
        return "ExecutorInfo's 'shutdown_grace_period' must be non-negative"
    return None


def validate_task_group(executor: Mapping[str, Any], tasks: list[Mapping[str, Any]], *,
                        agent_id: str, known_tasks: set[str], existing_executor: Any,
                        offered: Resources, framework_id: str,
                        unreachable_tasks: Iterable[str] = ()) -> tuple[str | None, Resources]:
    """A LAUNCH_GROUP, in the master's order. Returns (error, resources it consumes)."""
    if not tasks:
        return "Task group is empty", Resources()
    seen: set[str] = set()
    total = Resources()
    for task in tasks:
        task_id = _id_value(task.get("task_id")) or ""
        error = invalid_id(task_id)
        if error:
            return error, Resources()
        if task_id in known_tasks or task_id in seen:
            return f"Task has duplicate ID: {task_id}", Resources()
        if task_id in unreachable_tasks:
            return f"Task reuses the ID of an unreachable task: {task_id}", Resources()
        seen.add(task_id)
        problem = _placement_error(task, agent_id)
        if problem is not None:
            return problem, Resources()
        if "executor" in task and task["executor"] != executor:
            return (f"The `ExecutorInfo` of task '{task_id}' is different from executor "
                    f"'{_id_value(executor.get('executor_id'))}'"), Resources()
        resources, problem = _checked_resources(task, "Task")
        if problem is not None:
            return problem, Resources()
        total = total + resources
    error = _validate_executor(executor, framework_id)
    if error:
        return error, Resources()
    if "type" not in executor:
        return "'ExecutorInfo.type' must be set", Resources()
    if executor["type"] not in ("DEFAULT", "CUSTOM"):
        return "Unknown executor type", Resources()
    if existing_executor is not None and existing_executor != executor:
        return "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID",\
            Resources()
    executor_resources, problem = _checked_resources(executor, "Executor")
    if problem is not None:
        return problem, Resources()
    executor_id = _id_value(executor.get("executor_id"))
    cpus = executor_resources.scalar("cpus")
    if cpus < MIN_EXECUTOR_CPUS:
        return (f"Executor '{executor_id}' uses less CPUs ({cpus if cpus else 'None'}) than "
                f"the minimum required ({MIN_EXECUTOR_CPUS})"), Resources()
    mem = executor_resources.scalar("mem")
    if mem < MIN_EXECUTOR_MEM:
        return (f"Executor '{executor_id}' uses less memory ({mem if mem else 'None'}) than "
                f"the minimum required (32MB)"), Resources()
    if "disk" not in executor_resources.names():
        return f"Executor '{executor_id}' uses no disk", Resources()
    if existing_executor is None:
        total = total + executor_resources
    if not offered.contains(total):
        return (f"Total resources {total} required by task group and its executor are more "
                f"than available {offered}"), Resources()
    return None, total


# -- protobuf shapes ---------------------------------------------------------------------
# Mesos converts a JSON call into its protobuf message before anything looks at it, and a
# value of the wrong type (a list where a string goes, a string where an object goes, an
# enum name it does not know) fails that conversion: 400 "Failed to convert JSON into Call
# protobuf". `shape_error` does the same over the fields below (unknown fields are ignored,
# as the conversion ignores them), so the master's code only ever sees the types it expects.

class _Number:
    """A protobuf double/float: a JSON number (or a string holding one, as Mesos accepts)."""


class _Integer:
    """A protobuf int32/int64/uint*: an integral JSON number (or a string holding one)."""


NUMBER, INTEGER, ANY_OBJECT = _Number(), _Integer(), dict
Spec = Any

ID: dict = {"value": str}
LABELS: dict = {"labels": [{"key": str, "value": str}]}
DURATION: dict = {"nanoseconds": INTEGER}
RESOURCE: dict = {
    "name": str, "type": frozenset({"SCALAR", "RANGES", "SET", "TEXT"}), "scalar": {"value": NUMBER},
    "ranges": {"range": [{"begin": INTEGER, "end": INTEGER}]}, "set": {"item": [str]}, "role": str,
    "allocation_info": {"role": str}, "reservation": ANY_OBJECT, "reservations": [ANY_OBJECT],
    "disk": ANY_OBJECT, "revocable": ANY_OBJECT, "shared": ANY_OBJECT, "provider_id": ID,
}
ATTRIBUTE: dict = {"name": str, "type": frozenset({"SCALAR", "RANGES", "SET", "TEXT"}),
                   "scalar": {"value": NUMBER}, "ranges": {"range": [{"begin": INTEGER, "end": INTEGER}]},
                   "set": {"item": [str]}, "text": {"value": str}}
FILTERS: dict = {"refuse_seconds": NUMBER}
COMMAND: dict = {
    "value": str, "shell": bool, "arguments": [str], "user": str,
    "environment": {"variables": [{"name": str, "value": str, "type": str, "secret": ANY_OBJECT}]},
    "uris": [{"value": str, "executable": bool, "extract": bool, "cache": bool, "output_file": str}],
}
CONTAINER: dict = {"type": frozenset({"DOCKER", "MESOS"}), "volumes": [ANY_OBJECT], "hostname": str,
                   "docker": ANY_OBJECT, "mesos": ANY_OBJECT, "network_infos": [ANY_OBJECT],
                   "linux_info": ANY_OBJECT, "rlimit_info": ANY_OBJECT, "tty_info": ANY_OBJECT}
EXECUTOR: dict = {
    "executor_id": ID, "framework_id": ID, "command": COMMAND, "container": CONTAINER, "resources": [RESOURCE],
    "name": str, "source": str, "data": str, "type": frozenset({"UNKNOWN", "DEFAULT", "CUSTOM"}),
    "labels": LABELS, "shutdown_grace_period": DURATION, "discovery": ANY_OBJECT,
}
TASK: dict = {
    "name": str, "task_id": ID, "agent_id": ID, "resources": [RESOURCE], "executor": EXECUTOR,
    "command": COMMAND, "container": CONTAINER, "health_check": ANY_OBJECT, "check": ANY_OBJECT,
    "kill_policy": {"grace_period": DURATION}, "data": str, "labels": LABELS, "discovery": ANY_OBJECT,
    "max_completion_time": DURATION, "limits": ANY_OBJECT,
}
OPERATION: dict = {
    "type": frozenset({"UNKNOWN", "LAUNCH", "LAUNCH_GROUP", "RESERVE", "UNRESERVE", "CREATE", "DESTROY",
                       "GROW_VOLUME", "SHRINK_VOLUME", "CREATE_DISK", "DESTROY_DISK"}),
    "id": ID, "launch": {"task_infos": [TASK]},
    "launch_group": {"executor": EXECUTOR, "task_group": {"tasks": [TASK]}},
    "reserve": {"resources": [RESOURCE], "source": [RESOURCE]}, "unreserve": {"resources": [RESOURCE]},
    "create": {"volumes": [RESOURCE]}, "destroy": {"volumes": [RESOURCE]},
    "grow_volume": ANY_OBJECT, "shrink_volume": ANY_OBJECT, "create_disk": ANY_OBJECT, "destroy_disk": ANY_OBJECT,
}
FRAMEWORK_INFO: dict = {
    "user": str, "name": str, "id": ID, "failover_timeout": NUMBER, "checkpoint": bool, "role": str,
    "roles": [str], "hostname": str, "principal": str, "webui_url": str,
    "capabilities": [{"type": str}], "labels": LABELS, "offer_filters": ANY_OBJECT,
}
TASK_STATUS: dict = {
    "task_id": ID, "state": str, "message": str, "source": str, "reason": str, "data": str, "agent_id": ID,
    "executor_id": ID, "timestamp": NUMBER, "uuid": str, "healthy": bool, "labels": LABELS,
    "container_status": ANY_OBJECT, "unreachable_time": ANY_OBJECT, "check_status": ANY_OBJECT,
    "limitation": ANY_OBJECT,
}
SCHEDULER_CALL: dict = {
    "type": str, "framework_id": ID,
    "subscribe": {"framework_info": FRAMEWORK_INFO, "suppressed_roles": [str], "offer_constraints": ANY_OBJECT},
    "update_framework": {"framework_info": FRAMEWORK_INFO, "suppressed_roles": [str],
                         "offer_constraints": ANY_OBJECT},
    "accept": {"offer_ids": [ID], "operations": [OPERATION], "filters": FILTERS},
    "decline": {"offer_ids": [ID], "filters": FILTERS},
    "accept_inverse_offers": {"inverse_offer_ids": [ID], "filters": FILTERS},
    "decline_inverse_offers": {"inverse_offer_ids": [ID], "filters": FILTERS},
    "revive": {"role": str, "roles": [str]}, "suppress": {"roles": [str]},
    "kill": {"task_id": ID, "agent_id": ID, "kill_policy": {"grace_period": DURATION}},
    "shutdown": {"executor_id": ID, "agent_id": ID},
    "acknowledge": {"agent_id": ID, "task_id": ID, "uuid": str},
    "acknowledge_operation_status": {"agent_id": ID, "resource_provider_id": ID, "uuid": str, "operation_id": ID},
    "reconcile": {"tasks": [{"task_id": ID, "agent_id": ID}]},
    "reconcile_operations": {"operations": [ANY_OBJECT]},
    "message": {"agent_id": ID, "executor_id": ID, "data": str},
    "request": {"requests": [ANY_OBJECT]},
}
AGENT_TASK: dict = {
    "task_id": ID, "framework_id": ID, "executor_id": ID, "agent_id": ID, "name": str, "state": str,
    "resources": [RESOURCE], "labels": LABELS, "statuses": [TASK_STATUS], "status_update_state": str,
    "status_update_uuid": str, "discovery": ANY_OBJECT, "container": CONTAINER, "health_check": ANY_OBJECT,
    "kill_policy": {"grace_period": DURATION}, "user": str, "limits": ANY_OBJECT,
}
AGENT_UPDATE: dict = {"type": str, "agent_id": ID, "framework_id": ID, "status": TASK_STATUS, "latest_state": str}
# docs/internal-protocol.md: what an agent sends the master.
AGENT_CALL: dict = {
    "type": str, "agent_id": ID, "framework_id": ID, "executor_id": ID, "ip": str, "version": str,
    "agent_info": {"hostname": str, "port": INTEGER, "resources": [RESOURCE], "attributes": [ATTRIBUTE],
                   "id": ID, "domain": ANY_OBJECT},
    "frameworks": [FRAMEWORK_INFO], "executors": [{"framework_id": ID, "executor_info": EXECUTOR}],
    "tasks": [AGENT_TASK], "updates": [AGENT_UPDATE], "latest_state": str, "data": str, "calls": [ANY_OBJECT],
}
# `status` is a TaskStatus in an UPDATE, the executor's raw wait status in an EXECUTOR_EXITED.
AGENT_CALL_STATUS = {"UPDATE": TASK_STATUS, "EXECUTOR_EXITED": INTEGER}
# The executor API's Call (executor.proto), as an agent reads it.
EXECUTOR_CALL: dict = {
    "type": str, "executor_id": ID, "framework_id": ID,
    "subscribe": {"unacknowledged_tasks": [TASK], "unacknowledged_updates": [
        {"framework_id": ID, "status": TASK_STATUS}]},
    "update": {"status": TASK_STATUS}, "message": {"data": str},
}


def _numeric(value: Any, integral: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value) and (not integral or value.is_integer())
    if isinstance(value, str):
        try:
            number = int(value) if integral else float(value)
        except ValueError:
            return False
        return integral or math.isfinite(number)
    return False


def shape_error(value: Any, spec: Spec, path: str = "") -> str | None:
    """Where `value` does not have the protobuf shape `spec` (`path: why`), or None.

    A spec is a Python type (`str`, `bool`, `dict` for any object), `NUMBER`, `INTEGER`,
    a frozenset of enum names, a one-item list (a repeated field of that spec) or a dict of
    known fields (an object; other fields are ignored). A known field may not be null
    (Mesos: "Not expecting a JSON null"). Iterative: depth is no risk."""
    pending: list[tuple[Any, Spec, str]] = [(value, spec, path)]
    while pending:
        item, want, where = pending.pop()
        name = where.lstrip(".") or "the call"
        if isinstance(want, dict):
            if not isinstance(item, dict):
                return f"'{name}' is not an object"
            pending.extend((item[key], sub, f"{where}.{key}") for key, sub in want.items() if key in item)
        elif isinstance(want, list):
            if not isinstance(item, list):
                return f"'{name}' is not an array"
            pending.extend((element, want[0], f"{where}[{i}]") for i, element in enumerate(item))
        elif isinstance(want, frozenset):
            if not isinstance(item, str) or item not in want:
                return f"'{name}' is not one of {', '.join(sorted(want))}"
        elif want is NUMBER or want is INTEGER:
            if not _numeric(item, want is INTEGER):
                return f"'{name}' is not {'an integer' if want is INTEGER else 'a number'}"
        elif want is bool:
            if not isinstance(item, bool):
                return f"'{name}' is not a boolean"
        elif not isinstance(item, want) or (want is int and isinstance(item, bool)):
            return f"'{name}' is not {'a string' if want is str else 'an object' if want is dict else want.__name__}"
    return None


def agent_call_error(call: Any, path: str = "") -> str | None:
    """`shape_error` of one call of the agents' protocol (docs/internal-protocol.md)."""
    if not isinstance(call, dict):
        return f"'{path.lstrip('.') or 'the call'}' is not an object"
    status = AGENT_CALL_STATUS.get(call.get("type")) if isinstance(call.get("type"), str) else None
    return shape_error(call, {**AGENT_CALL, "status": status} if status is not None else AGENT_CALL, path)


# -- the operator API's Call (master.proto) --------------------------------------------------
# mesos::master::Call::Type: a name outside it is dropped by the JSON conversion (unset, as
# stout ignores an unknown enum value of an optional field), and the call then has no type.
OPERATOR_CALL_TYPES = frozenset({
    "UNKNOWN", "GET_HEALTH", "GET_FLAGS", "GET_VERSION", "GET_METRICS", "GET_LOGGING_LEVEL",
    "SET_LOGGING_LEVEL", "LIST_FILES", "READ_FILE", "GET_STATE", "GET_AGENTS", "GET_FRAMEWORKS",
    "GET_EXECUTORS", "GET_OPERATIONS", "GET_TASKS", "GET_ROLES", "GET_WEIGHTS", "UPDATE_WEIGHTS",
    "GET_MASTER", "SUBSCRIBE", "RESERVE_RESOURCES", "UNRESERVE_RESOURCES", "CREATE_VOLUMES",
    "DESTROY_VOLUMES", "GROW_VOLUME", "SHRINK_VOLUME", "GET_MAINTENANCE_STATUS",
    "GET_MAINTENANCE_SCHEDULE", "UPDATE_MAINTENANCE_SCHEDULE", "START_MAINTENANCE",
    "STOP_MAINTENANCE", "DRAIN_AGENT", "DEACTIVATE_AGENT", "REACTIVATE_AGENT", "GET_QUOTA",
    "UPDATE_QUOTA", "SET_QUOTA", "REMOVE_QUOTA", "TEARDOWN", "MARK_AGENT_GONE",
})
# Calls whose payload must be present (src/master/validation.cpp `master::call::validate`).
OPERATOR_PAYLOADS = frozenset({
    "GET_METRICS", "SET_LOGGING_LEVEL", "LIST_FILES", "READ_FILE", "UPDATE_WEIGHTS", "RESERVE_RESOURCES",
    "UNRESERVE_RESOURCES", "CREATE_VOLUMES", "DESTROY_VOLUMES", "GROW_VOLUME", "SHRINK_VOLUME",
    "UPDATE_MAINTENANCE_SCHEDULE", "START_MAINTENANCE", "STOP_MAINTENANCE", "DRAIN_AGENT",
    "DEACTIVATE_AGENT", "REACTIVATE_AGENT", "UPDATE_QUOTA", "SET_QUOTA", "REMOVE_QUOTA", "TEARDOWN",
    "MARK_AGENT_GONE",
})
PROTOBUF_DURATION: dict = {"seconds": INTEGER, "nanos": INTEGER}  # google.protobuf.Duration
AGENT_ONLY: dict = {"agent_id": ID}
# The payloads of the calls this master serves, with their proto2 `required` fields.
OPERATOR_CALL: dict = {
    "type": str,
    "teardown": {"framework_id": ID},
    "drain_agent": {"agent_id": ID, "max_grace_period": PROTOBUF_DURATION, "mark_gone": bool},
    "deactivate_agent": AGENT_ONLY, "reactivate_agent": AGENT_ONLY, "mark_agent_gone": AGENT_ONLY,
    "update_quota": {"force": bool, "quota_configs": [{"role": str, "guarantees": ANY_OBJECT,
                                                       "limits": ANY_OBJECT}]},
}
OPERATOR_REQUIRED = {"teardown": ("framework_id",), "drain_agent": ("agent_id",),
                     "deactivate_agent": ("agent_id",), "reactivate_agent": ("agent_id",),
                     "mark_agent_gone": ("agent_id",)}


def parse_operator_call(body: Any) -> dict[str, Any]:
    """A master::Call converted from JSON as Mesos converts it: CallError (400) when the JSON is
    not one; an unknown `type` is dropped."""
    if not isinstance(body, dict):
        raise CallError("Failed to convert JSON into Call protobuf: expected an object")
    shape = shape_error({k: v for k, v in body.items() if k != "type"}, OPERATOR_CALL)
    if shape is None:
        shape = _quota_maps_error(body.get("update_quota"))
    if shape is not None:
        raise CallError(f"Failed to convert JSON into Call protobuf: {shape}")
    call = dict(body)
    if not isinstance(call.get("type"), str) or call["type"] not in OPERATOR_CALL_TYPES:
        call.pop("type", None)
    missing = [f"{payload}.{name}" for payload, fields in OPERATOR_REQUIRED.items()
               if isinstance(call.get(payload), dict)
               for name in fields if _id_value(call[payload].get(name)) is None]
    quota = call.get("update_quota")
    if isinstance(quota, dict):
        missing += [f"update_quota.quota_configs[{i}].role"
                    for i, config in enumerate(quota.get("quota_configs") or []) if "role" not in config]
    if missing:
        raise CallError("Failed to convert JSON into Call protobuf: Missing required fields: "
                        + ", ".join(missing))
    return call


def _quota_maps_error(update: Any) -> str | None:
    """`guarantees` and `limits` are protobuf maps of resource name to Value.Scalar."""
    if not isinstance(update, dict):
        return None
    for i, config in enumerate(update.get("quota_configs") or []):
        for field in ("guarantees", "limits"):
            for name, scalar in (config.get(field) or {}).items():
                problem = shape_error(scalar, {"value": NUMBER}, f"update_quota.quota_configs[{i}].{field}.{name}")
                if problem is not None:
                    return problem
    return None


def validate_operator_call(call: Mapping[str, Any]) -> str | None:
    """src/master/validation.cpp `master::call::validate`: a type, and the payload it needs."""
    kind = call.get("type")
    if kind is None:
        return "Expecting 'type' to be present"
    if kind in OPERATOR_PAYLOADS and not isinstance(call.get(kind.lower()), dict):
        return f"Expecting '{kind.lower()}' to be present"
    return None
