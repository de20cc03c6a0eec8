"""The follower loop: the scheduler's apps in, HAProxy kept in step, status written out.

One thread follows `/v2/events` and only wakes the loop (events invalidate, as in
marathon-lb: what they say is not trusted, the apps are read again). The loop reads
`/v2/apps?embed=apps.tasks`, builds the model, and applies the difference: through
the runtime API when only servers changed, else by a checked reload. It also reads
the apps at start, after every (re)attached stream (so a dropped stream loses
nothing), every `resync_interval` seconds, and every second while an instance waits
for its readiness check (no event says when that passes).

After each pass it reports to the scheduler which instances it still serves (report.py),
and again every `DRAIN_POLL` seconds while a draining instance still holds requests, so
the scheduler kills an instance only once it is out of rotation here (drain before kill).
An instance a reload took out (its app deleted, say) counts as served while HAProxy's old
workers live: they finish the requests they hold, which a kill would cut.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

import httpx

from scheduler.router import status as status_file
from scheduler.router.client import Refused, SchedulerClient
from scheduler.router.haproxy import HAProxy
from scheduler.router.model import Layout, Model, Seen, build, lay_out, runtime_commands, servers_only
from scheduler.router.render import UnsafeValue, render
from scheduler.router.report import REPORT_EVERY, has_draining, serving
from scheduler.router.runtime import HAProxyError
from scheduler.router.settings import Counters, RouterSettings

log = logging.getLogger(__name__)
READINESS_POLL = 1.0
DRAIN_POLL = 0.1
RESOLVE_TTL = 30.0


class Resolver:
    """Host name -> IP for tasks that carry no IP, cached for `RESOLVE_TTL` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.cache: dict[str, tuple[float, str | None]] = {}

    def __call__(self, host: str) -> str | None:
        now = self.clock()
        cached = self.cache.get(host)
        if cached is not None and now - cached[0] < RESOLVE_TTL:
            return cached[1]
        try:
            address: str | None = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
        except OSError:
            address = None
        self.cache[host] = (now, address)
        return address


class Router:
    def __init__(self, settings: RouterSettings, client: SchedulerClient, haproxy: HAProxy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.client = client
        self.haproxy = haproxy
        self.clock = clock
        self.resolve = Resolver(clock)
        self.layout: Layout | None = None  # what HAProxy runs now
        self.refused: tuple[tuple, float] | None = None  # the shape HAProxy last would not load, and when
        self.counters = Counters()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.router_id = f"{socket.gethostname()}:{haproxy.work_dir}"
        self.reports = True  # False once the scheduler said it takes none (404)
        self.behind: frozenset[str] = frozenset()  # instances a reload dropped: old workers may hold requests

    # -- one pass ---------------------------------------------------------------------------

    def sync(self) -> str:
        """Read the apps and bring HAProxy in step; what was done: "unchanged", "runtime",
        "started", "reloaded" or "refused" (the new configuration was not loaded)."""
        apps = self.client.apps()
        seen = self.layout.model.seen if self.layout is not None else Seen()
        model = build(apps, self.settings.model_settings(), self.resolve, seen)
        self.counters.syncs += 1
        done = self.apply(model)
        self.counters.problems = list(model.problems)
        self.write_status()
        return done

    def apply(self, model: Model) -> str:
        layout, reload = lay_out(model, self.layout, self.settings.server_slots)
        if not reload and self.layout is not None and not self.haproxy.running():
            reload = True  # HAProxy went away (killed): start it again on the whole layout
        if not reload:
            assert self.layout is not None
            self.refused = None  # what runs is what is wanted again
            commands = runtime_commands(self.layout, layout)
            if not commands:
                self.layout = layout
                return "unchanged"
            try:
                self.haproxy.runtime.apply(commands)
            except HAProxyError as error:
                log.warning("runtime update failed, reloading instead: %s", error)
                return self._reload(layout)
            self.layout = layout
            self.counters.runtime_updates += 1
            self.counters.last_change = f"runtime: {len(commands)} command(s)"
            log.info("runtime update: %s", "; ".join(commands))
            return "runtime"
        return self._reload(layout)

    def _reload(self, layout: Layout) -> str:
        shape = _shape(layout)
        if self.refused is not None and self.refused[0] == shape \
                and self.clock() - self.refused[1] < self.settings.resync_interval:
            return self._refused(layout, None)  # HAProxy said no to this very shape a moment ago
        try:
            text = render(layout, self.settings.render_settings(self.haproxy.admin_socket))
            done = self.haproxy.apply(text)
        except (UnsafeValue, HAProxyError) as error:
            self.refused = (shape, self.clock())
            reason = f"configuration not written: {error}" if isinstance(error, UnsafeValue) else str(error)
            return self._refused(layout, reason)
        if self.layout is not None:
            self.behind |= _task_ids(self.layout) - _task_ids(layout)
        self.layout = layout
        self.refused = None
        self.counters.reloads += 1
        self.counters.last_change = done
        log.info("HAProxy %s: %d frontend(s), %d backend(s), %d route(s)", done, len(layout.model.frontends),
                 len(layout.model.backends), len(layout.model.routes))
        return done

    def _refused(self, wanted: Layout, error: str | None) -> str:
        """HAProxy keeps what it runs; its servers still follow the scheduler where they can."""
        if error is not None:
            self.counters.failed_applies += 1
            self.counters.last_error = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}: {error}"
            log.error("%s", error)
        if self.layout is not None and self.haproxy.running():
            fallback, reload = lay_out(servers_only(wanted.model, self.layout), self.layout,
                                       self.settings.server_slots)
            commands = [] if reload else runtime_commands(self.layout, fallback)
            try:
                self.haproxy.runtime.apply(commands)
                self.layout = fallback
            except HAProxyError as runtime_error:
                log.warning("runtime update of the running configuration failed: %s", runtime_error)
        return "refused"

    # -- the loop -----------------------------------------------------------------------

    def follow_events(self) -> None:
        """Wake the loop on every event; after a dropped stream, reconnect (the attach wakes it)."""
        backoff = 0.2
        while not self.stopping.is_set():
            try:
                for event_type in self.client.events():
                    if event_type == "event_stream_attached":
                        self.counters.stream = "attached"
                        backoff = 0.2
                    self.wake.set()
                    if self.stopping.is_set():
                        return
                log.warning("the scheduler's event stream ended; reconnecting")
            except Refused as error:
                log.error("%s", error)
                backoff = 5.0
            except (httpx.HTTPError, OSError) as error:
                log.warning("the scheduler's event stream broke (%s); reconnecting", error)
            self.counters.stream = "disconnected"
            self.wake.set()  # read the apps again now: what the stream would have said is lost
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def report(self, every: float) -> bool:
        """Tell the scheduler what this router still serves; True when an instance it drains
        still holds requests here (look again in DRAIN_POLL)."""
        if not self.reports:
            return False
        stats = []
        if has_draining(self.layout) and self.haproxy.running():
            try:
                stats = self.haproxy.runtime.stats()
            except HAProxyError as error:
                log.debug("no sessions count for the draining servers: %s", error)
        served, holding = serving(self.layout, stats)
        behind = self._held_by_old_workers()
        served, holding = served | behind, holding | behind
        try:
            draining = self.client.report(self.router_id, self.settings.group, served, every)
        except httpx.HTTPStatusError as error:
            if error.response.status_code == 404:
                self.reports = False
                log.warning("the scheduler at %s takes no router reports: instances are killed without "
                            "waiting for this router", self.client.url)
            return False
        except (httpx.HTTPError, OSError, ValueError, Refused) as error:
            log.debug("report not sent: %s", error)
            return False
        return bool(holding & set(draining))

    def _held_by_old_workers(self) -> frozenset[str]:
        """The instances reloads dropped, while HAProxy's old workers still run (they may hold
        requests for them until those finish, or `hard-stop-after`)."""
        if self.behind:
            found = self.haproxy.processes()
            if found is None or not found.old_workers:
                self.behind = frozenset()
        return self.behind

    def run(self) -> None:
        """Follow the scheduler until `stop()`."""
        threading.Thread(target=self.follow_events, name="router-events", daemon=True).start()
        every = min(self.settings.resync_interval, REPORT_EVERY)
        wait = 0.0
        failures = 0
        next_sync = 0.0
        while not self.stopping.is_set():
            self.wake.wait(wait)
            if self.stopping.is_set():
                break
            due = self.wake.is_set() or self.clock() >= next_sync
            self.wake.clear()
            if due:
                self.stopping.wait(self.settings.debounce)
                try:
                    self.sync()
                    failures = 0
                    waiting = self.layout is not None and self.layout.model.unready
                    sync_in = READINESS_POLL if waiting else self.settings.resync_interval
                except (httpx.HTTPError, OSError, ValueError, Refused) as error:
                    failures += 1
                    sync_in = min(0.5 * 2 ** min(failures, 4), 5.0)
                    reason = f"cannot read the apps from {self.client.url}: {error}"
                    self.counters.last_error = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}: {reason}"
                    log.warning("%s; again in %g s", reason, sync_in)
                    self.write_status()
                next_sync = self.clock() + sync_in
            held = not failures and self.report(every)
            wait = max(0.0, min(next_sync - self.clock(), DRAIN_POLL if held else every))
        if not failures:
            self.report(0)  # leaving: the scheduler waits for this router no more

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def write_status(self) -> None:
        rejected = str(self.haproxy.rejected) if self.refused is not None and self.haproxy.rejected.exists() else None
        status_file.write(self.haproxy.work_dir, self.layout, self.counters, self.settings, self.client.url, rejected)


def _task_ids(layout: Layout) -> frozenset[str]:
    return frozenset(slot.server.task_id for slots in layout.slots.values() for slot in slots if slot.server)


def _shape(layout: Layout) -> tuple:
    """What a reload would change: everything but the servers' addresses and states."""
    return (layout.model.shape(), tuple(sorted((name, len(slots)) for name, slots in layout.slots.items())))
