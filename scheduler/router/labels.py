"""What an app asks of the router, in marathon-lb's labels, read and checked (docs/router.md).

The labels dockyard's router honours: `HAPROXY_GROUP`, and per app port `n` (its index in
`portDefinitions` or `container.portMappings`) `HAPROXY_{n}_GROUP`, `HAPROXY_{n}_VHOST`,
`HAPROXY_{n}_MODE`, `HAPROXY_{n}_PORT`, `HAPROXY_{n}_PATH`, `HAPROXY_{n}_ENABLED`.
marathon-lb's template overrides (`HAPROXY_0_BACKEND_HEAD`, ...) are ignored: free text
is never written into HAProxy's configuration, so they cannot change it either.

`validate_router_labels` is what the scheduler calls at deploy time (each problem a
422 detail naming the label), with `route_clashes` for a virtual host and path another
app of the same router group already has (HAProxy would send all of it to whichever
route comes first: the other app would silently get nothing); `read_ports` is what the router's model uses, with the
same checks, so a label that slipped past (an app stored before the checks existed)
is left out of the configuration rather than written into it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from scheduler.services.ports import requested_ports

PORT_LABEL = re.compile(r"^HAPROXY_(\d{1,4})_(GROUP|VHOST|MODE|PORT|PATH|ENABLED)$")
# Bytes that would end a token, a line or start a comment in haproxy.cfg.
UNSAFE = re.compile(r"[\x00-\x1f\x7f#'\"\\`]")
HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
PATH_PREFIX = re.compile(r"^/[A-Za-z0-9._~!$&()*+,;=:@%/-]{0,1023}$")
GROUP_NAME = re.compile(r"^(?:\*|[A-Za-z0-9_.-]{1,64})$")
MODES = ("http", "tcp")
TRUE = {"true", "t", "yes", "y", "1"}  # marathon-lb's string_to_bool, plus "1"
FALSE = {"false", "f", "no", "n", "0"}
HTTP_CHECKS = {"HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"}

Problem = tuple[str, str]  # (field path, message), a 422 detail


@dataclass(frozen=True)
class PortLabels:
    """One app port as the router sees it."""

    index: int
    service_port: int  # 0: none assigned
    groups: frozenset[str]
    enabled: bool
    vhosts: tuple[str, ...]
    paths: tuple[str, ...]
    mode: str  # "http" or "tcp"
    bind_port: int  # HAPROXY_{n}_PORT, else the service port; 0: no frontend of its own


def _path(key: str) -> str:
    return f"/labels/{key}"


def _shown(value: str) -> str:
    """A value as an error message quotes it: whole when short."""
    return value if len(value) <= 80 else value[:77] + "..."


def _as_json(app: Any) -> Mapping[str, Any]:
    """An app's Marathon JSON, from the JSON itself or the scheduler's AppDefinition."""
    return app.out() if hasattr(app, "out") else app


def _groups(value: str, key: str, problems: list[Problem]) -> frozenset[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    bad = [name for name in names if not GROUP_NAME.match(name)]
    if bad or not names:
        problems.append((_path(key), f"'{_shown(bad[0] if bad else value)}' is not a group name "
                                     "(letters, digits, '_', '.', '-', or '*'; several separated by commas)"))
        return frozenset()
    return frozenset(names)


def _http_checked(app: Mapping[str, Any], index: int) -> bool:
    """marathon-lb serves a port in HTTP mode when its health check speaks HTTP."""
    for check in app.get("healthChecks") or []:
        if check.get("protocol", "HTTP") in HTTP_CHECKS and (check.get("portIndex") or 0) == index \
                and not check.get("port"):
            return True
    return False


def read_ports(app: Any, taken_ports: Mapping[int, str] | None = None) -> tuple[list[PortLabels], list[Problem]]:
    """Each app port's router settings, and every problem of the app's router labels.

    A port whose labels have a problem is left out of the answer. `taken_ports` (port ->
    the app holding it) refuses an `HAPROXY_{n}_PORT` another app holds.
    """
    app = _as_json(app)
    labels: Mapping[str, str] = app.get("labels") or {}
    problems: list[Problem] = []
    asked = requested_ports(app)
    per_port: dict[int, dict[str, tuple[str, str]]] = {}
    refused: set[int] = set()  # port indexes with an unsafe label (-1: HAPROXY_GROUP, so every port)
    for key, value in labels.items():
        match = PORT_LABEL.fullmatch(key) if isinstance(key, str) else None
        if key != "HAPROXY_GROUP" and match is None:
            continue  # not ours, or marathon-lb's template labels: never written, so harmless
        index = int(match.group(1)) if match else -1
        if not isinstance(value, str) or UNSAFE.search(value):
            problems.append((_path(key), "must not contain newlines, control characters, '#', quotes or "
                                         "backslashes: they would change HAProxy's configuration"))
            refused.add(index)
        elif index >= len(asked):
            problems.append((_path(key), f"names port index {index}, but the app has {len(asked)} port(s)"))
        elif match is not None:
            per_port.setdefault(index, {})[match.group(2)] = (key, value)
    app_groups: frozenset[str] = frozenset()
    if "HAPROXY_GROUP" in labels and -1 not in refused:
        app_groups = _groups(labels["HAPROXY_GROUP"], "HAPROXY_GROUP", problems)
        if not app_groups:
            refused.add(-1)
    app_id = str(app.get("id", ""))
    out: list[PortLabels] = []
    binds: dict[int, str] = {}
    for index, (_, service_port) in enumerate(asked):
        mine = per_port.get(index, {})
        before = len(problems)
        groups = _groups(mine["GROUP"][1], mine["GROUP"][0], problems) if "GROUP" in mine else app_groups
        enabled = True
        if "ENABLED" in mine:
            key, value = mine["ENABLED"]
            if value.strip().lower() in TRUE:
                enabled = True
            elif value.strip().lower() in FALSE:
                enabled = False
            else:
                problems.append((_path(key), f"'{_shown(value)}' is not true or false"))
        vhosts: tuple[str, ...] = ()
        if "VHOST" in mine:
            key, value = mine["VHOST"]
            vhosts = tuple(name.strip().lower() for name in value.split(","))
            bad = [name for name in vhosts if not HOST_NAME.match(name)]
            if bad or not value.strip():
                problems.append((_path(key), f"'{_shown(bad[0] if bad else value)}' is not a host name (letters, digits, "
                                             "hyphens and dots, no spaces; several separated by commas)"))
        paths: tuple[str, ...] = ()
        if "PATH" in mine:
            key, value = mine["PATH"]
            paths = tuple(value.split())
            bad = [path for path in paths if not PATH_PREFIX.match(path)]
            if bad or not paths:
                problems.append((_path(key), f"'{_shown(bad[0] if bad else value)}' is not a path prefix: it starts "
                                             "with '/' and holds URL path characters only (several separated "
                                             "by spaces)"))
        mode = "http" if vhosts or paths or _http_checked(app, index) else "tcp"
        if "MODE" in mine:
            key, value = mine["MODE"]
            if value.strip().lower() not in MODES:
                problems.append((_path(key), f"'{_shown(value)}' is not a mode: http or tcp"))
            else:
                mode = value.strip().lower()
                if mode == "tcp" and (vhosts or paths):
                    problems.append((_path(key), "is tcp, but a virtual host or path needs http "
                                                 f"(HAPROXY_{index}_VHOST, HAPROXY_{index}_PATH)"))
        bind_port = service_port
        if "PORT" in mine:
            key, value = mine["PORT"]
            try:
                bind_port = int(value.strip())
            except ValueError:
                bind_port = -1
            if not 1 <= bind_port <= 65535:
                problems.append((_path(key), f"'{_shown(value)}' is not a port: a number from 1 to 65535"))
            elif taken_ports and taken_ports.get(bind_port, app_id) != app_id:
                problems.append((_path(key), f"port {bind_port} is taken by app {taken_ports[bind_port]}"))
            elif bind_port in binds:
                problems.append((_path(key), f"port {bind_port} is also the router port of {binds[bind_port]}"))
        if bind_port > 0:
            binds.setdefault(bind_port, f"HAPROXY_{index}_PORT" if "PORT" in mine else f"port index {index}")
        if len(problems) == before and not refused & {index, -1}:
            out.append(PortLabels(index=index, service_port=service_port, groups=groups, enabled=enabled,
                                  vhosts=vhosts, paths=paths, mode=mode, bind_port=max(bind_port, 0)))
    return out, problems


def validate_router_labels(app: Any, taken_ports: Mapping[int, str] | None = None) -> list[Problem]:
    """Every problem of an app's router labels as (field path, message), e.g.
    ("/labels/HAPROXY_0_VHOST", "'my host' is not a host name ..."); empty when they are fine.

    `app` is the app's Marathon JSON (or an AppDefinition); `taken_ports` maps the ports
    other apps' routers bind (their service ports and HAPROXY_{n}_PORT) to those apps.
    """
    return read_ports(app, taken_ports)[1]


def router_ports(app: Any) -> list[int]:
    """The ports a router binds for this app's ports (service port, or HAPROXY_{n}_PORT),
    whatever the groups: what the scheduler adds to `taken_ports` for the other apps."""
    return [port.bind_port for port in read_ports(app)[0] if port.bind_port]


@dataclass(frozen=True)
class RouteClaim:
    """A request an app port asks the router for: Host `host` ("": any) under path prefix
    `path` ("": any), on the routers of `groups`, by the label `label`."""

    host: str
    path: str
    groups: frozenset[str]
    label: str


def route_claims(app: Any) -> list[RouteClaim]:
    """The virtual host and path routes of an app's enabled ports."""
    claims = []
    for port in read_ports(app)[0]:
        if not port.enabled or not (port.vhosts or port.paths):
            continue
        label = f"HAPROXY_{port.index}_{'VHOST' if port.vhosts else 'PATH'}"
        claims += [RouteClaim(host, path, port.groups, label)
                   for host in port.vhosts or ("",) for path in port.paths or ("",)]
    return claims


def route_clashes(app: Any, others: Mapping[str, list[RouteClaim]]) -> list[Problem]:
    """A problem per label of `app` whose route another app (`others`: app id -> its claims)
    or another port of the same app already has on a router group they share (apps with no
    group share the routers that serve every app)."""
    app_id = str(_as_json(app).get("id", ""))
    problems: dict[str, str] = {}
    mine: list[RouteClaim] = []
    for claim in route_claims(app):
        owners = [(owner, theirs) for owner, claims in others.items() if owner != app_id for theirs in claims]
        owners += [(f"{app_id} (another of its ports)", theirs) for theirs in mine if theirs.label != claim.label]
        for owner, theirs in owners:
            shared = claim.groups & theirs.groups or not (claim.groups or theirs.groups)
            if (theirs.host, theirs.path) == (claim.host, claim.path) and shared:
                where = f"host {claim.host or '(any)'} and path {claim.path or '/'}"
                problems.setdefault(_path(claim.label), f"{where} already go to app {owner} ({theirs.label})")
        mine.append(claim)
    return list(problems.items())
