"""Following a deployment until the app is deployed (or, for a delete, gone), saying at once
what goes wrong.

An app is reported deployed only when, at that moment, its deployment is over and
`instances` of its tasks are running (and healthy, where it has health checks), each
seen running for SETTLE seconds at least: a deployment that finished while its
instances crash-loop is not a success, nor is a task caught running on its way to
exiting. Each new task failure (`lastTaskFailure`) and failed health check is shown
as soon as a poll sees it. The command gives up, exit status 1, leaving the
deployment to the scheduler, when the same failure comes `max_failures` times in a
row, when instances have waited `grace` seconds for resources no agent will ever
have (after printing the dry run's numbers), or after `timeout` seconds; it says how
to stop what it leaves running.

What it reads: `GET /v2/apps/{id}` (tasks, health results and lastTaskFailure
embedded), `GET /v2/queue` while instances wait (count, backoff, refused offers),
the dry run `POST /dockyard/v1/plan` when offers are refused, and for a delete
`/v2/deployments` and `/v2/tasks` (the app itself is gone from `/v2/apps` at once).

On a terminal the progress is one line redrawn in place, with the last failure under
it; in a pipe or a log, a line per change of what it says (not one per poll).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import click
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from scheduler.cli import placement
from scheduler.cli.client import Api, ServerError, err_console

POLL_SECONDS = 0.5
MAX_FAILURES = 3   # the same launch failure this many times in a row: the command gives up
GRACE = 15.0       # seconds instances may wait for resources no agent will ever have
TIMEOUT = 300.0
SETTLE = 1.0       # seconds every instance must be seen running before the app is called deployed
IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_waiting(task: dict[str, Any]) -> bool:
    """Not placed yet: Marathon's API shows a queued instance as TASK_STAGING with no host."""
    return task.get("state") == "TASK_STAGING" and not task.get("host")


def is_healthy(task: dict[str, Any]) -> bool:
    results = task.get("healthCheckResults") or []
    return bool(results) and all(r.get("alive") for r in results)


@dataclass(frozen=True)
class Counts:
    """What the app's tasks and its queue entry say, as people count them."""
    instances: int
    running: int
    healthy: int
    starting: int   # placed on an agent, not running yet
    waiting: int    # not placed: queued for an offer, or in backoff
    checked: bool   # the app has health checks

    @classmethod
    def of(cls, app: dict[str, Any], queued: dict[str, Any] | None) -> "Counts":
        tasks = app.get("tasks") or []
        running = [t for t in tasks if t.get("state") == "TASK_RUNNING"]
        starting = [t for t in tasks if t.get("state") in ("TASK_STAGING", "TASK_STARTING") and not is_waiting(t)]
        missing = max(int(app.get("instances", 0)) - len(tasks), 0)  # in backoff: not even queued yet
        waiting = int(queued["count"]) if queued else sum(1 for t in tasks if is_waiting(t)) + missing
        return cls(int(app.get("instances", 0)), len(running), sum(1 for t in running if is_healthy(t)),
                   len(starting), waiting, bool(app.get("healthChecks")))

    @property
    def up(self) -> bool:
        """Every instance running, and healthy where the app has health checks."""
        return self.running >= self.instances and (not self.checked or self.healthy >= self.instances)

    def text(self) -> str:
        parts = [f"{self.running}/{self.instances} running"]
        if self.checked:
            parts.append(f"{self.healthy} healthy")
        if self.starting:
            parts.append(f"{self.starting} starting")
        if self.waiting:
            parts.append(f"{self.waiting} waiting")
        return ", ".join(parts)


def queue_entry(api: Api, app_id: str) -> dict[str, Any] | None:
    return next((item for item in api.call("GET", "/v2/queue")["queue"] if item["app"]["id"] == app_id), None)


def why_waiting(queued: dict[str, Any] | None, countdown: bool) -> str:
    """`backoff 3.2s` (`in backoff` without the countdown), and which checks refused the last offers."""
    if not queued:
        return ""
    parts = []
    left = float(queued["delay"]["timeLeftSeconds"])
    if left > 0:
        parts.append(f"backoff {left:.1f}s" if countdown else "in backoff")
    refused = refusals(queued)
    if refused:
        parts.append("offers refused: " + ", ".join(f"{reason} {declined}/{processed}"
                                                    for reason, declined, processed in refused))
    return "; ".join(parts)


def refusals(queued: dict[str, Any]) -> tuple[tuple[str, int, int], ...]:
    summary = queued.get("processedOffersSummary") or {}
    return tuple((r["reason"], r["declined"], r["processed"])
                 for r in summary.get("rejectSummaryLastOffers", []) if r["declined"])


class Failures:
    """The app's new task failures and failed health checks, and how often the same failure
    came in a row. What happened before the command started is not news."""

    def __init__(self, app: dict[str, Any]) -> None:
        self.last = self._key(app.get("lastTaskFailure"))
        self.reason = ""
        self.streak = 0
        self.latest = ""
        self.health = {t["id"]: self._health_key(t) for t in app.get("tasks") or []}

    @staticmethod
    def _key(failure: dict[str, Any] | None) -> tuple[str, str] | None:
        return (failure.get("taskId", ""), failure.get("timestamp", "")) if failure else None

    @staticmethod
    def _health_key(task: dict[str, Any]) -> str:
        return next((str(r.get("lastFailure")) for r in task.get("healthCheckResults") or []
                     if r.get("lastFailure")), "")

    def see(self, app: dict[str, Any]) -> list[str]:
        """What failed since the last look, one line each."""
        news = []
        failure = app.get("lastTaskFailure")
        if failure and self._key(failure) != self.last:
            self.last = self._key(failure)
            reason = IDS.sub("…", f"{failure.get('state')}: {failure.get('message')}")
            self.streak = self.streak + 1 if reason == self.reason else 1
            self.reason = reason
            where = f" on {failure['host']}" if failure.get("host") else ""
            self.latest = f"{failure.get('state')}{where}: {failure.get('message') or '(no message)'}"
            news.append(self.latest)
        for task in app.get("tasks") or []:
            stamp = self._health_key(task)
            if stamp and stamp != self.health.get(task["id"]):
                cause = next((r.get("lastFailureCause") for r in task["healthCheckResults"] if r.get("lastFailure")),
                             None)
                news.append(f"health check failed on {task.get('host') or '?'}: {cause or 'no cause given'}")
            self.health[task["id"]] = stamp
        return news


class Display:
    """Progress on stderr. On a terminal, one line redrawn in place with the last failure under
    it (rich Live); in a pipe, a line whenever what it says changes. `quiet` prints nothing."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False)
        self.live: Live | None = None
        self.line = ""
        self.said = ""
        self.failure = ""
        self.drawn = ("", "")
        if not quiet and self.console.is_terminal and not self.console.is_dumb_terminal:
            self.live = Live(console=self.console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
            self.live.start()

    def update(self, line: str, stable: str) -> None:
        """Show `line`; `stable` is the same without what changes every poll (a countdown)."""
        if self.quiet:
            return
        self.line = line
        if self.live is not None:
            self._draw()
        elif stable != self.said:
            err_console.print(stable, style="dim", markup=False)
        self.said = stable

    def fail(self, text: str) -> None:
        if self.quiet:
            return
        self.failure = text
        if self.live is not None:
            self._draw()
        else:
            err_console.print(f"  {text}", style="red", markup=False)

    def note(self, text: str, style: str = "yellow") -> None:
        """A line that stays (above the live line on a terminal)."""
        if self.quiet:
            return
        if self.live is not None:
            self.live.console.print(Text(text, style=style))
        else:
            err_console.print(text, style=style, markup=False)

    def _draw(self) -> None:
        assert self.live is not None
        if (self.line, self.failure) == self.drawn:
            return
        self.drawn = (self.line, self.failure)
        parts = [Text(self.line, no_wrap=True, overflow="ellipsis")]
        if self.failure:
            parts.append(Text("  last failure: " + self.failure, style="red", no_wrap=True, overflow="ellipsis"))
        self.live.update(Group(*parts), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


class GiveUp(click.ClickException):
    """The command stops following; what it followed goes on in the scheduler."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def interrupted(app_id: str, deployment_id: str) -> GiveUp:
    """Ctrl-C stops the command, never the deployment: say so (status 130, as a shell does)."""
    return GiveUp(f"stopped following; deployment {deployment_id} goes on in the scheduler "
                  f"(`dockyard app show {app_id}` shows where it stands)", exit_code=130)


def follow(api: Api, app_id: str, deployment_id: str, *, quiet: bool = False, timeout: float = TIMEOUT,
           max_failures: int = MAX_FAILURES, grace: float = GRACE,
           clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Follow `deployment_id` of `app_id` until the app is deployed; answers the app as last seen.
    Raises GiveUp (exit 1) as the module docstring says."""
    display = Display(quiet)
    started = clock()
    app = _app(api, app_id)
    failures = Failures(app)
    stuck = Stuck(api, display)
    running_since: dict[str, float] = {}  # task id -> when this command first saw it running
    try:
        while True:
            deploying = any(d["id"] == deployment_id for d in app.get("deployments") or [])
            tasks = app.get("tasks") or []
            placed = [t for t in tasks if not is_waiting(t)]
            queued = queue_entry(api, app_id) if len(placed) < app["instances"] or len(placed) < len(tasks) else None
            counts = Counts.of(app, queued)
            for text in failures.see(app):
                display.fail(text)
            stuck.see(app, queued, clock())
            running_since = {t["id"]: running_since.get(t["id"], clock()) for t in tasks
                             if t.get("state") == "TASK_RUNNING"}
            settled = all(clock() - since >= SETTLE for since in running_since.values())
            if not deploying and counts.up and settled:
                display.close()
                err_console.print(f"{app_id}: {counts.text()} - deployed", style="green", markup=False)
                return app
            if failures.streak >= max_failures:
                raise GiveUp(f"{app_id}: the same failure {failures.streak} times in a row: {failures.latest}\n"
                             + _stop_hint(app_id, deployment_id, deploying))
            if stuck.hopeless_since is not None and clock() - stuck.hopeless_since >= grace:
                raise GiveUp(f"{app_id} cannot be placed: {stuck.explanation}\n"
                             f"it stays queued, as Marathon keeps it: `dockyard app delete {app_id} --force` "
                             f"removes it; or deploy it again asking for less")
            if clock() - started > timeout:
                last = f"; last failure: {failures.latest}" if failures.latest else ""
                raise GiveUp(f"{app_id} not deployed after {timeout:g}s: {counts.text()}{last}\n"
                             + _stop_hint(app_id, deployment_id, deploying))
            phase = ("deploying" if deploying else "deployment finished; seeing that they stay up" if counts.up
                     else "deployment finished; waiting for its instances")
            now, stable = why_waiting(queued, countdown=True), why_waiting(queued, countdown=False)
            display.update(f"{app_id}: {counts.text()}" + (f" ({now})" if now else "") + f" - {phase}",
                           f"{app_id}: {counts.text()}" + (f" ({stable})" if stable else "") + f" - {phase}")
            time.sleep(POLL_SECONDS)
            app = _app(api, app_id)
    except KeyboardInterrupt:
        raise interrupted(app_id, deployment_id) from None
    finally:
        display.close()


def follow_removal(api: Api, app_id: str, deployment_id: str, *, quiet: bool = False, timeout: float = TIMEOUT,
                   clock: Callable[[], float] = time.monotonic) -> None:
    """Follow the deletion of `app_id` until its deployment is over and none of its tasks is left:
    the app itself is gone from `/v2/apps` at once (as in Marathon), its tasks stop meanwhile."""
    display = Display(quiet)
    started = clock()
    try:
        while True:
            deploying = any(d["id"] == deployment_id for d in api.call("GET", "/v2/deployments"))
            left = [t for t in api.call("GET", "/v2/tasks")["tasks"] if t.get("appId") == app_id]
            if not deploying and not left:
                display.close()
                err_console.print(f"{app_id}: deleted", style="green", markup=False)
                return
            if clock() - started > timeout:
                raise GiveUp(f"{app_id} not deleted after {timeout:g}s: {len(left)} task(s) still stopping\n"
                             f"`dockyard task list` shows them; `dockyard task kill ID` kills one again")
            line = f"{app_id}: {len(left)} task(s) stopping - deleting"
            display.update(line, line)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        raise interrupted(app_id, deployment_id) from None
    finally:
        display.close()


def _app(api: Api, app_id: str) -> dict[str, Any]:
    try:
        return api.call("GET", f"/v2/apps{app_id}", params={"embed": "apps.lastTaskFailure"})["app"]
    except ServerError as error:
        if error.status == 404:
            raise GiveUp(f"{app_id} is gone: it was deleted while the command followed it") from None
        raise


class Stuck:
    """Instances that wait while every offer is refused: the dry run's numbers, said once per
    change, and since when no agent can ever take them (`hopeless_since`)."""

    def __init__(self, api: Api, display: Display) -> None:
        self.api = api
        self.display = display
        self.refused: tuple = ()
        self.explanation = ""
        self.hopeless_since: float | None = None

    def see(self, app: dict[str, Any], queued: dict[str, Any] | None, now: float) -> None:
        refused = refusals(queued) if queued and queued["delay"]["timeLeftSeconds"] <= 0 else ()
        if refused == self.refused:
            return
        self.refused = refused
        if not refused:
            self.hopeless_since = None
            return
        report = placement.why_unplaced(self.api, app)
        if report is None:
            self.hopeless_since = None
            return
        self.explanation = placement.explanation(report)
        self.display.note(f"waiting for resources (dry run): {self.explanation}")
        for line in placement.agent_lines(report):
            self.display.note(f"  {line}")
        if report.get("resolvable", True):
            self.hopeless_since = None
        elif self.hopeless_since is None:
            self.hopeless_since = now


def _stop_hint(app_id: str, deployment_id: str, deploying: bool) -> str:
    if deploying:
        return (f"deployment {deployment_id} goes on and the scheduler keeps trying; stop it with "
                f"`dockyard app deployment cancel {deployment_id} --force`, or remove the app with "
                f"`dockyard app delete {app_id} --force`")
    return (f"the scheduler keeps relaunching it; remove it with `dockyard app delete {app_id}`, "
            f"or fix it and deploy again")
