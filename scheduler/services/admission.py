"""What a new app definition must pass before it is stored, given the apps stored now.

* Service ports (scheduler/services/ports.py, Marathon's `AssignDynamicServiceLogic`):
  every app port asking for 0 gets one, an app keeps those it had, a fixed one another
  app holds (or another app's router binds) is refused naming the port and its owner.
* Router labels (scheduler/router/labels.py, marathon-lb's `HAPROXY_*`): checked with the
  app's service ports in place, against the ports other apps' routers bind and the
  virtual host and path routes other apps of the same router group have.
* The drain label (scheduler/services/drain.py).

Apps being removed hold nothing: Marathon frees an app's service ports with the app.
Each refusal is a 422 in Marathon's shape, a `details` entry per field; in a group change
each path starts with the app it is about (`/apps(/shop/web)/labels/HAPROXY_0_PORT`).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from framework.errors import Conflict, SpecError
from scheduler.router import labels as router_labels  # a module: labels.py reads ports.py in turn
from scheduler.services import drain
from scheduler.services.ports import PortRange, ServicePorts, requested_ports
from scheduler.services.specs import AppDefinition, AppSpecError

log = logging.getLogger(__name__)


def admit(held: Mapping[str, AppDefinition], changed: Sequence[AppDefinition], port_range: PortRange,
          in_group: bool = False) -> list[AppDefinition]:
    """`changed` (new definitions, in order) with their service ports assigned, each checked
    against `held` (app id -> the definition stored now) and the ones before it."""
    documents = {app_id: app.model_dump() for app_id, app in held.items()}
    ports = ServicePorts.from_apps(documents.values(), port_range)
    binds = {app_id: router_labels.router_ports(document) for app_id, document in documents.items()}
    routes = {app_id: router_labels.route_claims(document) for app_id, document in documents.items()}
    out = []
    for app in changed:
        prefix = f"/apps({app.id})" if in_group else ""
        others = _bound_by_others(binds, app.id)
        try:
            document = ports.assign_app(app.model_dump(), reserved=others)
        except SpecError as error:
            raise AppSpecError([{"path": prefix + error.field, "errors": [error.message]}]) from None
        taken = {port: owner for port, owner in ports.owners().items() if owner != app.id} | others
        problems = [{"path": path, "errors": [message]}
                    for path, message in router_labels.validate_router_labels(document, taken)]
        problems += [{"path": path, "errors": [message]}
                     for path, message in router_labels.route_clashes(document, routes)]
        problems += drain.label_problems(app.labels)
        if problems:
            raise AppSpecError([{**problem, "path": prefix + problem["path"]} for problem in problems])
        binds[app.id] = router_labels.router_ports(document)
        routes[app.id] = router_labels.route_claims(document)
        out.append(AppDefinition.model_validate(document))
    return out


def unassigned(apps: Mapping[str, AppDefinition], port_range: PortRange) -> dict[str, AppDefinition]:
    """Stored apps with an app port still at 0 (stored before ports were assigned), each with
    ports assigned now: what the scheduler stores at start-up, versions unchanged."""
    documents = {app_id: app.model_dump() for app_id, app in apps.items()}
    ports = ServicePorts.from_apps(documents.values(), port_range)
    binds = {app_id: router_labels.router_ports(document) for app_id, document in documents.items()}
    out: dict[str, AppDefinition] = {}
    for app_id, document in documents.items():
        if all(port for _, port in requested_ports(document)):
            continue
        try:
            out[app_id] = AppDefinition.model_validate(ports.assign_app(document,
                                                                        reserved=_bound_by_others(binds, app_id)))
        except (SpecError, Conflict) as error:  # one app must not keep the others from loading
            log.warning("no service ports assigned to %s at start-up: %s", app_id, error)
    return out


def _bound_by_others(binds: Mapping[str, list[int]], app_id: str) -> dict[int, str]:
    """The ports the routers of apps other than `app_id` bind -> those apps."""
    return {port: owner for owner, bound in binds.items() if owner != app_id for port in bound}


def service_ports(app: AppDefinition | Mapping[str, Any]) -> list[int]:
    """The app's service ports, in app port order (0 where none is assigned)."""
    document = app.model_dump() if isinstance(app, AppDefinition) else app
    return [port for _, port in requested_ports(document)]
