"""The operator API's quota calls: UPDATE_QUOTA and GET_QUOTA (quota v2, master.proto QuotaConfig).

The master keeps each role's QuotaConfig as given and hands the allocator its
numbers (framework/local/master/allocator.py `Quota`), which enforces them. Validation,
its order and its words are Mesos's (src/master/quota_handler.cpp
`QuotaHandler::update`, src/master/quota.cpp `quota::validate`); who may set or
see a role's quota is the `update_quotas` / `get_quotas` ACLs. The configs are kept
in the registry (framework/local/master/registry.py; Mesos's `Registry.quota_configs`), so a
restarted or newly elected master enforces them from the start. Mixed into `Master`,
which owns `quotas`.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Mapping

from framework.local.master.allocator import Quota
from framework.local.master.model import HttpError
from framework.local.master.validation import invalid_role

if TYPE_CHECKING:
    from framework.local.master.core import Master

log = logging.getLogger("dockyard.master")

EXABYTE_IN_MB = 1024 ** 4
OTHER_LIMIT = 1000 ** 4
FORBIDDEN = "403 Forbidden."  # libprocess's `Forbidden()` body


def scalars(config: Mapping[str, Any], field: str) -> dict[str, float]:
    """A QuotaConfig map (`guarantees` or `limits`) as {name: amount}."""
    return {str(name): float((value or {}).get("value", 0.0)) for name, value in (config.get(field) or {}).items()}


def _number(value: float) -> str:
    """A scalar as Mesos prints one: no trailing `.0`."""
    return f"{value:g}"


def quantities(amounts: Mapping[str, float]) -> str:
    """Mesos's ResourceQuantities as text: `cpus:1; mem:256`."""
    return "; ".join(f"{name}:{_number(amount)}" for name, amount in sorted(amounts.items()))


def config_error(config: Mapping[str, Any]) -> str | None:
    """src/master/quota.cpp `quota::validate(QuotaConfig)`: what is wrong with one config."""
    role = str(config.get("role", ""))
    error = invalid_role(role)
    if error:
        return f"Invalid 'QuotaConfig.role': {error}"
    if role == "*":
        return "Invalid 'QuotaConfig.role': setting quota for the default '*' role is not supported"
    guarantees, limits = scalars(config, "guarantees"), scalars(config, "limits")
    for field, amounts in (("guarantees", guarantees), ("limits", limits)):
        for name, amount in amounts.items():
            ceiling, words = (EXABYTE_IN_MB, "1 exabyte") if name in ("mem", "disk") else (OTHER_LIMIT, "1 trillion")
            if amount > ceiling:
                return (f"Invalid 'QuotaConfig.{field}': {{'{name}': {_number(amount)}}} is invalid: values "
                        f"greater than {words} ({ceiling}) are not supported")
    for kind, amounts in (("guarantee", guarantees), ("limit", limits)):
        for name, amount in amounts.items():
            if not math.isfinite(amount) or amount < 0:
                return (f"Invalid {kind} configuration {{'{name}': {_number(amount)}}}: "
                        + ("Negative values not supported" if amount < 0 else "Infinite values not supported"))
    if any(name in limits and limits[name] < amount for name, amount in guarantees.items()):
        return (f"'QuotaConfig.guarantees' {{{quantities(guarantees)}}} is not contained within the "
                f"'QuotaConfig.limits' {{{quantities(limits)}}}")
    return None


def quota_info(role: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy QuotaInfo GET_QUOTA still carries: the role and its guarantees as Resources."""
    return {"role": role, "guarantee": [{"name": name, "type": "SCALAR", "scalar": {"value": amount}}
                                        for name, amount in sorted(scalars(config, "guarantees").items())]}


class QuotaSide:
    """UPDATE_QUOTA and GET_QUOTA for `Master`."""

    def update_quota(self: "Master", update: Mapping[str, Any], principal: str | None) -> None:
        """Apply `update_quota` all or nothing; HttpError (400, 403) as Mesos answers a refusal."""
        configs = list(update.get("quota_configs") or [])
        for config in configs:
            role = str(config.get("role", ""))
            if "/" in role:
                raise HttpError(400, f"Updating quota on nested role '{role}' is not supported yet")
            error = config_error(config)
            if error is not None:
                raise HttpError(400, f"Invalid QuotaConfig: {error}")
        proposed = {**self.quotas, **{str(c["role"]): dict(c) for c in configs}}
        guaranteed: dict[str, float] = {}
        for config in proposed.values():
            for name, amount in scalars(config, "guarantees").items():
                guaranteed[name] = guaranteed.get(name, 0.0) + amount
        capacity: dict[str, float] = {}
        for agent in self.agents.values():  # registered agents, connected or not, as Mesos counts them
            for name, amount in agent.total.scalars().items():
                capacity[name] = capacity.get(name, 0.0) + amount
        if any(amount > capacity.get(name, 0.0) + 1e-9 for name, amount in guaranteed.items()):
            if update.get("force"):
                log.info("using the force flag to override the quota overcommit check")
            else:
                raise HttpError(400, f"Invalid QuotaConfig: total quota guarantees '{quantities(guaranteed)}' "
                                     f"exceed cluster capacity '{quantities(capacity)}' "
                                     f"(use 'force' flag to bypass this check)")
        if not all(self.acls.authorized("update_quotas", principal, str(c["role"])) for c in configs):
            raise HttpError(403, FORBIDDEN)
        for config in configs:
            role = str(config["role"])
            quota = Quota(scalars(config, "guarantees"), scalars(config, "limits"))
            if quota.guarantees or quota.limits:
                self.quotas[role] = dict(config)
            else:
                self.quotas.pop(role, None)  # empty guarantees and limits: back to the default
            self.allocator.update_quota(role, quota)
            log.info("quota of role '%s': guarantees %s, limits %s", role, quantities(quota.guarantees) or "none",
                     quantities(quota.limits) or "none")
        self._persist()
        self.request_allocation()

    def restore_quotas(self: "Master", configs: Mapping[str, Mapping[str, Any]]) -> None:
        """A new leader takes back the registry's quotas; a config it cannot read is left out."""
        for role, config in configs.items():
            try:
                problem = config_error({**config, "role": role})
                quota = Quota(scalars(config, "guarantees"), scalars(config, "limits"))
            except (ValueError, TypeError, AttributeError) as error:
                problem = str(error)
            if problem is not None:
                log.warning("registry: ignoring the quota of role '%s': %s", role, problem)
                continue
            if quota.guarantees or quota.limits:
                self.quotas[role] = {**config, "role": role}
                self.allocator.update_quota(role, quota)
        if self.quotas:
            log.info("registry: quotas of roles %s", ", ".join(sorted(self.quotas)))

    def quota_status(self: "Master", principal: str | None) -> dict[str, Any]:
        """GET_QUOTA's QuotaStatus: the quotas of the roles the caller may see (`get_quotas`)."""
        visible = [(role, config) for role, config in sorted(self.quotas.items())
                   if self.acls.authorized("get_quotas", principal, role)]
        return {"infos": [quota_info(role, config) for role, config in visible],
                "configs": [{"role": role, **{k: config[k] for k in ("guarantees", "limits") if config.get(k)}}
                            for role, config in visible]}
