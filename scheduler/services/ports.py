"""Service ports, assigned as Marathon assigns them: one stable port per app port, cluster-wide.

A service port is the address a router (marathon-lb, `dockyard router`) gives an app
port; it is not a host port and no task binds it. The rules follow Marathon's
`GroupManagerImpl.assignDynamicServicePorts` and `V2Group.validPorts`:

* the range is `--local-port-min` to `--local-port-max` (10000 and 20000), the maximum
  excluded, as Marathon's `Range(localPortMin, localPortMax)`;
* an app port asking for 0 gets, in order: a port the app held before and no longer
  names (so an update that posts 0s again keeps its ports), else the lowest port of
  the range that no app holds (not a random one);
* a fixed port is the app's as asked, inside the range or not, unless another app holds
  it: "Requested service port P conflicts with a service port in app /other" (Marathon
  checks this for `portMappings` only; dockyard for `portDefinitions` too, since a router
  can bind a port for one app alone);
* one app naming the same fixed port twice is refused ("Ports must be unique");
* a port another app's router binds instead of a service port (`HAPROXY_{n}_PORT`, passed
  as `reserved`) is neither given to a 0 nor granted when asked for.

Pure: no I/O and no clock. `ServicePorts` keeps who holds what as a plain
`{app id: [ports]}` (`to_json` / `from_json`), so the scheduler stores it with the
apps and rebuilds it after a restart or a failover; every other function takes that
mapping and returns a new answer without changing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from framework.errors import Conflict, SpecError

DEFAULT_MIN = 10000
DEFAULT_MAX = 20000


class PortRangeExhausted(Conflict):
    """No port of the range is free for an app port asking for 0 (Marathon's PortRangeExhaustedException)."""


@dataclass(frozen=True)
class PortRange:
    """`low` included, `high` excluded (Marathon's `Range(localPortMin, localPortMax)`)."""

    low: int = DEFAULT_MIN
    high: int = DEFAULT_MAX

    def __post_init__(self) -> None:
        if not 1 <= self.low < self.high <= 65536:
            raise ValueError(f"service port range [{self.low}, {self.high}) must lie within 1-65535 "
                             "and hold at least one port (--local-port-min < --local-port-max)")

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port < self.high

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.low, self.high))

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def requested_ports(app: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(field path, port asked for) of each app port of an app's JSON, as Marathon reads them:
    the container's `portMappings[].servicePort` when it has port mappings, else
    `portDefinitions[].port` (an app without either and without an image has one port, 0)."""
    container = app.get("container") or {}
    mappings = container.get("portMappings") if isinstance(container, Mapping) else None
    if mappings:
        return [(f"/container/portMappings({i})/servicePort", int(m.get("servicePort") or 0))
                for i, m in enumerate(mappings)]
    definitions = app.get("portDefinitions")
    if definitions is None:
        has_image = isinstance(container, Mapping) and bool(container.get("docker") or container.get("mesos"))
        return [] if has_image else [("/portDefinitions(0)/port", 0)]
    return [(f"/portDefinitions({i})/port", int(d.get("port") or 0)) for i, d in enumerate(definitions)]


def with_ports(app: Mapping[str, Any], ports: Sequence[int]) -> dict[str, Any]:
    """A copy of an app's JSON carrying `ports` where `requested_ports` read them."""
    out = dict(app)
    container = out.get("container")
    if isinstance(container, Mapping) and container.get("portMappings"):
        out["container"] = {**container, "portMappings": [
            {**m, "servicePort": port} for m, port in zip(container["portMappings"], ports)]}
        return out
    definitions = out.get("portDefinitions")
    if definitions is None:
        definitions = [{"port": 0}] * len(ports)
    out["portDefinitions"] = [{**d, "port": port} for d, port in zip(definitions, ports)]
    return out


def owners(assigned: Mapping[str, Sequence[int]]) -> dict[int, str]:
    """port -> the app holding it."""
    return {port: app_id for app_id, ports in assigned.items() for port in ports if port}


def assign(app_id: str, requested: Sequence[int], assigned: Mapping[str, Sequence[int]],
           port_range: PortRange = PortRange(), paths: Sequence[str] | None = None,
           reserved: Mapping[int, str] | None = None) -> list[int]:
    """The service ports of `app_id` asking for `requested` (0: any), given what every app
    holds now (`assigned`, this app's previous ports included) and the ports other apps'
    routers bind (`reserved`: port -> the app whose router binds it). Raises SpecError naming the field
    (`paths[i]`, default `/portDefinitions(i)/port`) of a fixed port another app holds or this
    one names twice, and PortRangeExhausted when no port is left for a 0."""
    paths = list(paths) if paths is not None else [f"/portDefinitions({i})/port" for i in range(len(requested))]
    held_by = owners({other: ports for other, ports in assigned.items() if other != app_id})
    reserved = {port: what for port, what in (reserved or {}).items() if port not in held_by}
    fixed = [port for port in requested if port]
    for path, port in zip(paths, requested):
        if port and port in held_by:
            raise SpecError(path, f"Requested service port {port} conflicts with a service port "
                                  f"in app {held_by[port]}")
        if port and port in reserved:
            raise SpecError(path, f"Requested service port {port} conflicts with the router port of "
                                  f"app {reserved[port]}")
    if len(fixed) != len(set(fixed)):
        twice = next(port for port in fixed if fixed.count(port) > 1)
        raise SpecError(paths[[i for i, p in enumerate(requested) if p == twice][1]],
                        f"Ports must be unique: service port {twice} is named twice")
    previous = [port for port in assigned.get(app_id, ()) if port in port_range and port not in fixed]
    taken = set(held_by) | set(reserved) | set(fixed) | set(previous)
    free = (port for port in port_range if port not in taken)
    out = []
    for port in requested:
        if port:
            out.append(port)
        elif previous:
            out.append(previous.pop(0))
        else:
            chosen = next(free, None)
            if chosen is None:
                raise PortRangeExhausted(f"All ports in the range {port_range} are already in use "
                                         f"(--local-port-min, --local-port-max)")
            out.append(chosen)
    return out


class ServicePorts:
    """Who holds which service port; `assign` records an app's ports, `release` frees them.

    Holds only a dict: the scheduler persists `to_json()` (or the ports inside each
    stored app) and builds this again with `from_json` / `from_apps` after a restart.
    """

    def __init__(self, port_range: PortRange = PortRange(),
                 assigned: Mapping[str, Sequence[int]] | None = None) -> None:
        self.port_range = port_range
        self.assigned: dict[str, list[int]] = {app: list(ports) for app, ports in (assigned or {}).items()}

    @classmethod
    def from_apps(cls, apps: Iterable[Mapping[str, Any]], port_range: PortRange = PortRange()) -> "ServicePorts":
        """From stored apps' JSON (each already carrying its assigned ports)."""
        return cls(port_range, {app["id"]: [port for _, port in requested_ports(app)] for app in apps})

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "ServicePorts":
        return cls(PortRange(int(document["min"]), int(document["max"])), document.get("apps") or {})

    def to_json(self) -> dict[str, Any]:
        return {"min": self.port_range.low, "max": self.port_range.high,
                "apps": {app: list(ports) for app, ports in self.assigned.items()}}

    def plan(self, app_id: str, requested: Sequence[int], paths: Sequence[str] | None = None,
             reserved: Mapping[int, str] | None = None) -> list[int]:
        """What `assign` would give, without recording it (validate before a deploy is accepted)."""
        return assign(app_id, requested, self.assigned, self.port_range, paths, reserved)

    def assign(self, app_id: str, requested: Sequence[int], paths: Sequence[str] | None = None,
               reserved: Mapping[int, str] | None = None) -> list[int]:
        ports = self.plan(app_id, requested, paths, reserved)
        self.assigned[app_id] = list(ports)
        return ports

    def assign_app(self, app: Mapping[str, Any], reserved: Mapping[int, str] | None = None) -> dict[str, Any]:
        """An app's JSON with its service ports assigned (and recorded), ready to store."""
        asked = requested_ports(app)
        ports = self.assign(app["id"], [port for _, port in asked], [path for path, _ in asked], reserved)
        return with_ports(app, ports)

    def release(self, app_id: str) -> None:
        """The app is gone: its ports may go to others (Marathon frees them with the app)."""
        self.assigned.pop(app_id, None)

    def owner(self, port: int) -> str | None:
        return owners(self.assigned).get(port)

    def owners(self) -> dict[int, str]:
        return owners(self.assigned)
