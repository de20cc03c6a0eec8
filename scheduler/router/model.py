"""From the scheduler's apps to what HAProxy should serve: pure, no I/O.

`build(apps, settings)` reads `/v2/apps?embed=apps.tasks&embed=apps.readiness` as
marathon-lb reads `/v2/apps?embed=apps.tasks` (`marathon_lb.py`, `get_apps`):

* an app port is served when its groups (`HAPROXY_{n}_GROUP`, else `HAPROXY_GROUP`)
  hold the router's group (a router of group `*` serves every app) and
  `HAPROXY_{n}_ENABLED` is not false;
* it gets a frontend on its bind port (`HAPROXY_{n}_PORT`, else its service port; none
  when both are 0) and, with `HAPROXY_{n}_VHOST` / `HAPROXY_{n}_PATH`, routes on the
  router's shared HTTP port;
* an instance receives traffic when it is TASK_RUNNING (marathon-lb also keeps
  TASK_UNREACHABLE and TASK_LOST ones: the task may well be serving), healthy when the
  app has health checks (one result alive; no result at all: as on the last pass, see
  `Seen`), not listed not-ready in the app's readinessCheckResults unless it was ready
  before, and not `draining` (marathon-lb's task flag: it then stays a server, in
  HAProxy's DRAIN state, so its in-flight requests finish).

`lay_out` then places each backend's servers in pre-allocated slots (the shape of
HAProxy's own `server-template`: declared servers, the unused ones disabled): a change
that only fills, empties or drains slots goes through HAProxy's runtime API; anything
else (a frontend, a route, a mode, more servers than slots) needs a reload.
`runtime_commands` says what to send.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from scheduler.router.labels import PortLabels, read_ports

SERVING_STATES = frozenset({"TASK_RUNNING", "TASK_UNREACHABLE", "TASK_LOST"})
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
DEFAULT_SLOTS = 8
READY, DRAIN = "ready", "drain"


@dataclass(frozen=True)
class Server:
    task_id: str
    address: str  # an IP address: HAProxy never resolves names for us
    port: int
    state: str = READY  # READY or DRAIN

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass(frozen=True)
class Backend:
    name: str
    app_id: str
    port_index: int
    mode: str
    servers: tuple[Server, ...] = ()

    def shape(self) -> tuple[str, str, int, str]:
        return (self.name, self.app_id, self.port_index, self.mode)


@dataclass(frozen=True)
class Frontend:
    name: str
    port: int
    mode: str
    backend: str


@dataclass(frozen=True)
class Route:
    """Requests on the shared HTTP port whose Host is one of `vhosts` (any, when empty)
    and whose path starts with one of `paths` (any, when empty) go to `backend`."""

    backend: str
    vhosts: tuple[str, ...]
    paths: tuple[str, ...]

    def order(self) -> tuple[int, int, str]:
        """More specific routes first: host and path, then host alone, then path alone; longer paths first."""
        longest = max((len(p) for p in self.paths), default=0)
        return (0 if self.vhosts and self.paths else 1 if self.vhosts else 2, -longest, self.backend)


@dataclass(frozen=True)
class ModelSettings:
    group: str = "external"
    http_port: int = 80  # 0: no shared HTTP port (vhost and path routes are then not served)
    reserved_ports: Mapping[int, str] = field(default_factory=dict)  # the router's own ports -> what for


@dataclass(frozen=True)
class Seen:
    """What the router judged of instances on its last pass. A scheduler that has just
    restarted or failed over knows no health results yet (an empty `healthCheckResults`)
    and runs readiness checks again; an instance that served before keeps serving meanwhile,
    as marathon-lb keeps a task's last health result when Marathon gives none."""

    alive: frozenset[str] = frozenset()  # instances with a passing health check
    ready: frozenset[str] = frozenset()  # instances past their readiness check (a start-up gate only)


@dataclass(frozen=True)
class Model:
    frontends: tuple[Frontend, ...] = ()
    backends: tuple[Backend, ...] = ()
    routes: tuple[Route, ...] = ()
    problems: tuple[str, ...] = ()  # what was left out, and why (router status shows them)
    unready: int = 0  # running instances held back only by their readiness (no event tells when that ends)
    seen: Seen = Seen()  # to hand to the next `build`

    def shape(self) -> tuple:
        """Everything but the servers: when it changes, HAProxy must reload."""
        return (self.frontends, tuple(b.shape() for b in self.backends), self.routes)

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)


def clean_name(text: str) -> str:
    """An HAProxy proxy name from an app id: `/shop/web` -> `shop_web`."""
    return NAME_UNSAFE.sub("_", text.strip("/").replace("/", "_")) or "root"


def _address(task: Mapping[str, Any], resolve: Callable[[str], str | None]) -> str | None:
    """The task's IP: `ipAddresses[0]` (what dockyard and Marathon fill), else its host resolved."""
    for entry in task.get("ipAddresses") or []:
        candidate = str((entry or {}).get("ipAddress") or "")
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    host = str(task.get("host") or "")
    if not host:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        resolved = resolve(host)
    try:
        return str(ipaddress.ip_address(resolved)) if resolved else None
    except ValueError:
        return None


def _not_ready(app: Mapping[str, Any]) -> set[str]:
    return {str(r.get("taskId")) for r in app.get("readinessCheckResults") or [] if r.get("ready") is False}


def _serving(app: Mapping[str, Any], task: Mapping[str, Any], not_ready: set[str], seen: Seen,
             alive: set[str], ready: set[str]) -> str | None:
    """Why this instance gets no traffic, or None when it may; records in `alive` and `ready`
    what the next pass should remember of it."""
    task_id = str(task.get("id"))
    if task.get("state", "TASK_RUNNING") not in SERVING_STATES:
        return "not running"
    if app.get("healthChecks"):
        results = task.get("healthCheckResults") or []
        if not (any(r.get("alive") for r in results) if results else task_id in seen.alive):
            return "not healthy"
        alive.add(task_id)
    if app.get("readinessChecks"):
        if task_id in not_ready and task_id not in seen.ready:
            return "not ready"
        ready.add(task_id)
    return None


def _serves(port: PortLabels, group: str) -> bool:
    return port.enabled and (group == "*" or group in port.groups)


def build(apps: Iterable[Mapping[str, Any]], settings: ModelSettings = ModelSettings(),
          resolve: Callable[[str], str | None] = lambda host: None, seen: Seen = Seen()) -> Model:
    """The model of `apps` for a router of `settings.group`; `resolve` turns a task's host
    name into an IP when the task carries none (the router passes a cached DNS lookup);
    `seen` is the previous model's `seen`."""
    frontends: list[Frontend] = []
    backends: list[Backend] = []
    routes: list[Route] = []
    problems: list[str] = []
    binds: dict[int, str] = {port: f"the router's {what}" for port, what in settings.reserved_ports.items()}
    claimed: dict[tuple[str, str], str] = {}
    names: set[str] = set()
    unready = 0
    alive: set[str] = set()
    ready: set[str] = set()
    for app in sorted(apps, key=lambda a: str(a.get("id", ""))):
        app_id = str(app.get("id", ""))
        ports, label_problems = read_ports(app)
        problems += [f"{app_id}: {path[len('/labels/'):]} {message}" for path, message in label_problems]
        served = [port for port in ports if _serves(port, settings.group)]
        if not served:
            continue
        not_ready = _not_ready(app)
        tasks = []
        for task in app.get("tasks") or []:
            why = _serving(app, task, not_ready, seen, alive, ready)
            unready += why == "not ready"
            if why is None:
                tasks.append(task)
        for port in served:
            name = clean_name(f"{app_id}_{port.index}")
            if name in names:
                problems.append(f"{app_id}: port index {port.index} left out: its name {name} is another's")
                continue
            servers = []
            for task in tasks:
                task_ports = task.get("ports") or []
                address = _address(task, resolve)
                if port.index >= len(task_ports) or address is None:
                    problems.append(f"{app_id}: instance {task.get('id')} left out: "
                                    + ("no address" if address is None else f"no host port {port.index}"))
                    continue
                state = DRAIN if task.get("draining") else READY
                servers.append(Server(str(task.get("id")), address, int(task_ports[port.index]), state))
            servers.sort(key=lambda s: (s.task_id, s.endpoint))
            frontend = None
            if port.bind_port:
                if port.bind_port in binds:
                    problems.append(f"{app_id}: port index {port.index} has no frontend: port {port.bind_port} "
                                    f"is {binds[port.bind_port]}'s")
                else:
                    binds[port.bind_port] = app_id
                    frontend = Frontend(name, port.bind_port, port.mode, name)
            route = None
            if (port.vhosts or port.paths) and settings.http_port:
                keys = [(h, p) for h in port.vhosts or ("",) for p in port.paths or ("",)]
                taken = [claimed[k] for k in keys if k in claimed]
                if taken:
                    problems.append(f"{app_id}: port index {port.index} has no HTTP route: its host and path "
                                    f"are {taken[0]}'s")
                else:
                    claimed.update((k, app_id) for k in keys)
                    route = Route(name, port.vhosts, port.paths)
            if frontend is None and route is None:
                continue
            names.add(name)
            backends.append(Backend(name, app_id, port.index, port.mode, tuple(servers)))
            frontends += [frontend] if frontend else []
            routes += [route] if route else []
    routes.sort(key=Route.order)
    return Model(tuple(frontends), tuple(backends), tuple(routes), tuple(problems), unready,
                 Seen(frozenset(alive), frozenset(ready)))


# -- slots ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    name: str  # s1, s2, ...
    server: Server | None = None


@dataclass(frozen=True)
class Layout:
    """A model with each backend's servers placed in named slots: what haproxy.cfg says."""

    model: Model
    slots: Mapping[str, tuple[Slot, ...]]  # backend name -> its slots


def slot_count(servers: int, minimum: int = DEFAULT_SLOTS) -> int:
    """Room for twice the servers there are, at least `minimum`, a power of two: a scale-up
    to double fills free slots without a reload."""
    count = max(minimum, 1)
    while count < 2 * servers:
        count *= 2
    return count


def _place(servers: Sequence[Server], previous: Sequence[Slot]) -> tuple[Slot, ...] | None:
    """`servers` in `previous`'s slots: each stays where it was (by task and address);
    newcomers fill slots empty before, then slots just freed. None when they do not fit."""
    if len(servers) > len(previous):
        return None
    placed: dict[str, Server] = {}
    by_key = {(s.task_id, s.endpoint): s for s in servers}
    for slot in previous:
        if slot.server is not None and (slot.server.task_id, slot.server.endpoint) in by_key:
            placed[slot.name] = by_key.pop((slot.server.task_id, slot.server.endpoint))
    newcomers = [s for s in servers if (s.task_id, s.endpoint) in by_key]
    free = [slot.name for slot in previous if slot.server is None] + \
           [slot.name for slot in previous if slot.server is not None and slot.name not in placed]
    for server, name in zip(newcomers, free):
        placed[name] = server
    return tuple(Slot(slot.name, placed.get(slot.name)) for slot in previous)


def fresh_slots(servers: Sequence[Server], minimum: int = DEFAULT_SLOTS) -> tuple[Slot, ...]:
    count = slot_count(len(servers), minimum)
    return tuple(Slot(f"s{i + 1}", servers[i] if i < len(servers) else None) for i in range(count))


def lay_out(model: Model, previous: Layout | None, minimum: int = DEFAULT_SLOTS) -> tuple[Layout, bool]:
    """The new layout and whether HAProxy must reload to serve it (else `runtime_commands`)."""
    reload = previous is None or model.shape() != previous.model.shape()
    slots: dict[str, tuple[Slot, ...]] = {}
    for backend in model.backends:
        before = previous.slots.get(backend.name) if previous is not None else None
        placed = _place(backend.servers, before) if before is not None else None
        if placed is None:
            reload = True
            placed = fresh_slots(backend.servers, minimum)
        slots[backend.name] = placed
    return Layout(model, slots), reload


def runtime_commands(previous: Layout, new: Layout) -> list[str]:
    """HAProxy runtime API commands that take the running `previous` to `new` (same shape).

    HAProxy applies them one at a time, so their order is what clients see in between:
    servers come into rotation before others leave it (a rolling restart that drains the
    old instances and brings the new ones in one pass never leaves a backend with no ready
    server, which HAProxy would answer with 503). A slot given another instance goes to MAINT
    before its new address, so no request reaches the newcomer under the old one's name; an
    emptied slot goes to MAINT last (its open connections finish).
    """
    readdress, fill, ready, drain, empty = [], [], [], [], []
    for backend, slots in new.slots.items():
        old = {slot.name: slot.server for slot in previous.slots.get(backend, ())}
        for slot in slots:
            before, after = old.get(slot.name), slot.server
            name = f"{backend}/{slot.name}"
            if before == after:
                continue
            if after is None:
                empty.append(f"set server {name} state maint")
                continue
            if before is None or before.endpoint != after.endpoint:
                if before is not None:
                    readdress.append(f"set server {name} state maint")
                fill.append(f"set server {name} addr {after.address} port {after.port}")
            (ready if after.state == READY else drain).append(f"set server {name} state {after.state}")
    return readdress + fill + ready + drain + empty


def servers_only(new: Model, running: Layout) -> Model:
    """`running`'s frontends, backends and routes with `new`'s servers (as many as fit each
    backend's slots): what still follows the scheduler when HAProxy cannot load `new`."""
    backends = []
    for backend in running.model.backends:
        wanted = new.backend(backend.name)
        servers = wanted.servers if wanted is not None and wanted.shape() == backend.shape() else ()
        backends.append(replace(backend, servers=servers[:len(running.slots.get(backend.name, ()))]))
    return replace(running.model, backends=tuple(backends), problems=new.problems, unready=new.unready,
                   seen=new.seen)
