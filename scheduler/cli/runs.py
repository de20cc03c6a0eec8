"""Following a job run: its task states, why it waits, and its tasks' output.

`job run --wait` follows the scheduler's jobs event stream (`GET /v1/events`) and
falls back to polling the run when the stream cannot be opened or breaks. Output is
read from the agents (scheduler/cli/logs.py). A run that no agent can ever take says
so with the dry run's numbers, and after a grace the command gives up while the run
stays queued, as Metronome keeps it, until its maxLaunchDelay.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import click
import httpx

from framework.errors import DockyardError
from framework.security.client import ClientConfig
from scheduler.cli import placement
from scheduler.cli.client import Api, err_console
from scheduler.cli.logs import pump, tails

FINISHED = {"SUCCESS", "FAILED"}
LOG_INTERVAL = 0.25      # seconds between reads of a running task's output from its agent
SANDBOX_LOOKUP = 0.5     # at most this often, ask for the run when a started task's sandbox is unknown
STREAM_READ_TIMEOUT = 45.0  # the jobs stream sends a keep-alive every 15 s
MAX_STREAM_REDIRECTS = 3


def run_exit_code(run: dict) -> int:
    """The exit code `job run --wait` ends with: the tasks' last attempts' codes."""
    latest: dict[int, dict] = {}
    for task in run.get("tasks", []):
        latest[task.get("index", 0)] = task
    codes = [t.get("exitCode") for t in latest.values()]
    nonzero = [c for c in codes if c not in (None, 0)]
    if nonzero:
        return int(nonzero[0])
    if run.get("status") == "SUCCESS":
        return 0
    return 1 if not any(c is not None for c in codes) or run.get("status") == "FAILED" else 0


class RunEvents:
    """The scheduler's jobs event stream (`GET /v1/events`) for one run, read on its own thread.

    `next(timeout)` answers an event dict, None when nothing came within `timeout`, or
    raises `StreamBroken` once the stream has ended (or could not be opened)."""

    def __init__(self, api: Api | str, job_id: str, run_id: str) -> None:
        import queue
        import threading

        settings = api.settings if isinstance(api, Api) else ClientConfig().with_url(api)
        self.url = settings.url.rstrip("/")
        self.params = {"jobId": job_id, "runId": run_id}
        self.queue: "queue.Queue[dict | None]" = queue.Queue()
        self.attached = threading.Event()
        self.reason = ""
        # Redirects are followed by hand: httpx drops credentials on a redirect to another
        # origin, and a follower sends event streams to the leader (docs/ha.md).
        self.client = httpx.Client(timeout=httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT),
                                   **settings.httpx_options())
        self.thread = threading.Thread(target=self._read, name="job-events", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            self._follow(self.url + "/v1/events", redirects=MAX_STREAM_REDIRECTS)
            self.reason = "the scheduler closed it"
        except Exception as error:  # any failure ends the stream; the caller falls back to polling
            self.reason = str(error) or type(error).__name__
        finally:
            self.attached.set()
            self.queue.put(None)

    def _follow(self, url: str, redirects: int) -> None:
        """Read the stream at `url`, following a scheduler's 307 to its leader (never to plain
        HTTP from HTTPS: the credentials go along)."""
        with self.client.stream("GET", url, params=self.params,
                                headers={"Accept": "text/event-stream"}) as response:
            if response.status_code in (301, 302, 307, 308) and redirects > 0:
                target = response.headers.get("location", "").split("?", 1)[0]
                if url.startswith("https://") and not target.startswith("https://"):
                    raise RuntimeError(f"refusing a redirect from HTTPS to {target}")
                if not target:
                    raise RuntimeError(f"HTTP {response.status_code} without a Location")
                response.close()
                self._follow(target, redirects - 1)
                return
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    event = json.loads("\n".join(data))
                    data = []
                    if event.get("eventType") == "event_stream_attached":
                        self.attached.set()
                    else:
                        self.queue.put(event)

    def next(self, timeout: float) -> dict | None:
        import queue

        try:
            event = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            raise StreamBroken(self.reason)
        return event

    def close(self) -> None:
        self.client.close()


class StreamBroken(DockyardError):
    """The jobs event stream ended."""


def apply_event(run: dict, event: dict) -> dict:
    """The run after one `job_run_*` event: `jobRun` replaces its fields (and its tasks when
    the event carries them), `task` replaces or adds one task. Sandboxes already known stay."""
    known = {t["id"]: t for t in run.get("tasks", [])}

    def merged(task: dict) -> dict:
        before = known.get(task["id"], {})
        extra = {k: before[k] for k in ("sandbox", "agentUrl") if before.get(k) and not task.get(k)}
        return {**task, **extra}

    view = event.get("jobRun") or {}
    out = {k: v for k, v in run.items() if k not in ("waiting", "retryAt", "reason")}  # absent = cleared
    out.update({k: v for k, v in view.items() if k != "tasks"})
    tasks = [merged(t) for t in view["tasks"]] if "tasks" in view else list(run.get("tasks", []))
    if event.get("task"):
        task = merged(event["task"])
        ids = [t["id"] for t in tasks]
        if task["id"] in ids:
            tasks[ids.index(task["id"])] = task
        else:
            tasks.append(task)
    out["tasks"] = tasks
    return out


class RunPrinter:
    """Prints a run's task state changes (stderr), and its tasks' output."""

    def __init__(self, files: httpx.Client, show_states: bool, stream_logs: bool,
                 settings: ClientConfig | None = None) -> None:
        self.files = files
        self.settings = settings
        self.show_states = show_states
        self.stream_logs = stream_logs
        self.seen: dict[str, str] = {}
        self.tails: dict[str, list] = {}

    def show(self, run: dict) -> None:
        for task in run.get("tasks", []):
            if self.show_states and self.seen.get(task["id"]) != task["status"]:
                self.seen[task["id"]] = task["status"]
                line = f"[{time.strftime('%H:%M:%S')}] {task['id']} {task['status']}"
                if task.get("host"):
                    line += f" on {task['host']}"
                if task.get("exitCode") is not None:
                    line += f" (exit {task['exitCode']})"
                elif task.get("message") and task["status"] not in ("TASK_RUNNING", "TASK_STARTING"):
                    line += f": {task['message']}"
                err_console.print(line, style="dim", markup=False)
            if self.stream_logs:
                pump(tails(self.files, task, self.tails, self.settings))


class Unplaceable(DockyardError):
    """The run waited past the grace for resources that no agent will ever have."""

    def __init__(self, run: dict, reason: str) -> None:
        super().__init__(reason)
        self.run = run
        self.reason = reason


class WaitWatch:
    """Says why a run waits, with the dry run's numbers per agent, as soon as the scheduler
    says so; tells when a run no agent can ever take has waited past `grace` seconds."""

    def __init__(self, api: Api, job_id: str, show: bool, grace: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.job_id = job_id
        self.show = show
        self.grace = grace
        self.clock = clock
        self.text = ""
        self.hopeless_since: float | None = None
        self.job: dict | None = None

    def see(self, run: dict) -> None:
        text = "" if run.get("status") in FINISHED else str(run.get("waiting") or "")
        if text != self.text:
            self.text = text
            self._changed(run)
        if self.grace is not None and self.hopeless_since is not None \
                and self.clock() - self.hopeless_since >= self.grace:
            owner, said = self.text.split(": ", 1) if ": " in self.text else ("", self.text)
            raise Unplaceable(run, said if owner.startswith("job:") else self.text)

    def _changed(self, run: dict) -> None:
        if not self.text:
            self.hopeless_since = None
            return
        lines, resolvable = self._dry_run(run)
        if self.show:
            err_console.print(f"waiting for resources: {self.text}", style="yellow", markup=False)
            for line in lines:
                err_console.print(f"  {line}", style="yellow", markup=False)
        if resolvable:
            self.hopeless_since = None
        elif self.hopeless_since is None:
            self.hopeless_since = self.clock()

    def _dry_run(self, run: dict) -> tuple[list[str], bool]:
        """The refused agents with their numbers, and whether waiting can help. The scheduler's
        line is the fallback when the dry run cannot be had (an older scheduler, a refusal)."""
        resolvable = "no agent will change by itself" not in self.text
        try:
            if self.job is None:
                self.job = self.api.call("GET", f"/v1/jobs/{self.job_id}")
        except click.ClickException:
            return [], resolvable
        waiting = sum(1 for t in run.get("tasks", []) if t.get("status") == "PENDING")
        report = placement.why_unplaced(self.api, placement.job_as_app(self.job, waiting))
        if report is None:
            return [], resolvable
        return placement.agent_lines(report), bool(report.get("resolvable", resolvable))


def _lacks_sandbox(run: dict) -> bool:
    return any(t.get("agentId") and not t.get("sandbox") and t.get("status") not in ("PENDING", "TASK_STAGING")
               for t in run.get("tasks", []))


def follow_run(api: Api, job_id: str, run_id: str, as_json: bool, show_states: bool = True,
               stream_logs: bool = True, poll: float = 0.2, grace: float | None = None) -> dict:
    """Show state changes and stream output until the run finishes; returns the final run.

    Follows the jobs event stream; polls the run every `poll` seconds only if the
    stream cannot be opened or breaks. Output is read from the agents every
    LOG_INTERVAL seconds while tasks run (the agent's files API does not push).
    With a `grace`, raises Unplaceable once the run has waited that long for resources
    no agent will ever have."""
    events: RunEvents | None = RunEvents(api, job_id, run_id)
    events.attached.wait(10)
    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")  # after attaching: nothing is missed
    looked_up = time.monotonic()
    watch = WaitWatch(api, job_id, show_states, grace)
    with api.files_client() as files:
        printer = RunPrinter(files, show_states, stream_logs, api.settings)
        try:
            while True:
                printer.show(run)
                watch.see(run)
                if run.get("status") in FINISHED:
                    if stream_logs:  # the last bytes written before the task exited
                        run = _with_sandboxes(api, job_id, run_id, run, poll)
                        printer.show(run)
                    return run
                if events is None:
                    time.sleep(poll)
                    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
                    continue
                try:
                    event = events.next(LOG_INTERVAL if stream_logs or grace is not None else 5.0)
                except StreamBroken as broken:
                    if show_states:
                        err_console.print(f"event stream lost ({broken}); polling the run instead", style="dim",
                                          markup=False)
                    events.close()
                    events = None
                    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
                    continue
                if event is not None and event.get("runId") == run_id and "jobRun" in event:
                    run = apply_event(run, event)
                if stream_logs and _lacks_sandbox(run) and time.monotonic() - looked_up >= SANDBOX_LOOKUP:
                    looked_up = time.monotonic()  # where its output is: the scheduler asks the agent
                    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
        finally:
            if events is not None:
                events.close()


def _with_sandboxes(api: Api, job_id: str, run_id: str, run: dict, poll: float,
                    patience: float = 3.0) -> dict:
    """The finished run once every task's sandbox is known (bounded wait).

    A sub-second task can finish before the scheduler has looked up where its
    sandbox is on the agent; its output is still there, so wait briefly for the
    location instead of printing nothing.
    """
    deadline = time.monotonic() + patience
    while any(not task.get("sandbox") for task in run.get("tasks", [])) and time.monotonic() < deadline:
        time.sleep(poll)
        run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
    return run
