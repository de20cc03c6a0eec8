"""One task's life: STARTING -> RUNNING -> KILLING -> terminal, as a table of moves.

Shaped after Thermos's runner: each stage is a tiny class whose `run()` returns the
seconds to wait before it runs again, or None once it has moved the task on. A
runner owns one thread; `kill()` is called from the driver's thread and only
signals (SIGTERM now; the runner thread escalates to SIGKILL of the whole task
when the grace period ends). How the process is isolated is the launcher's
business (executor/launcher.py). Standard library only.

Health checks plug in as a chain of status checkers (Aurora's StatusChecker):
each is polled while the task runs; the first that returns a `Verdict` kills
the task and decides its terminal state.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from executor.launcher import ExitInfo, Launcher, LaunchSpec, Running
from framework.errors import DockyardError

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 3.0  # the Mesos command executor's default kill grace period
POLL_SECONDS = 0.5  # longest a runner sleeps between looks at kill deadlines and checkers

NEW = "NEW"  # before TASK_STARTING: internal only, never reported
STARTING, RUNNING, KILLING = "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"
FINISHED, FAILED, KILLED = "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED"
TERMINAL = frozenset({FINISHED, FAILED, KILLED})

# The legal moves of a task's state; anything else is a bug and raises IllegalMove.
MOVES: dict[str, frozenset[str]] = {
    NEW: frozenset({STARTING, FAILED, KILLED}),
    STARTING: frozenset({RUNNING, KILLING, FAILED, KILLED}),
    RUNNING: frozenset({KILLING, FINISHED, FAILED, KILLED}),
    KILLING: frozenset({KILLED, FAILED}),
    FINISHED: frozenset(),
    FAILED: frozenset(),
    KILLED: frozenset(),
}


class IllegalMove(DockyardError, RuntimeError):
    """A transition the table does not allow."""

    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"illegal task transition {source} -> {target}")


@dataclass(frozen=True)
class Verdict:
    """A status checker's decision: kill the task and end it in `state`."""

    state: str  # TASK_FAILED or TASK_KILLED
    message: str
    reason: str | None = None
    healthy: bool | None = None


class StatusChecker(Protocol):
    """A link in the checker chain (health checks, deadlines...)."""

    def status(self) -> Verdict | None: ...

    def stop(self) -> None: ...


# notify(runner, state, message, reason, healthy): the executor turns this into a TaskStatus.
Notify = Callable[["TaskRunner", str, "str | None", "str | None", "bool | None"], None]


def grace_seconds(kill_policy: dict | None, default: float = DEFAULT_GRACE_SECONDS) -> float:
    """A KillPolicy's grace period in seconds (Mesos DurationInfo in nanoseconds)."""
    nanos = ((kill_policy or {}).get("grace_period") or {}).get("nanoseconds")
    return max(float(nanos) / 1e9, 0.0) if nanos is not None else default


class Stage:
    name = "stage"

    def run(self, runner: "TaskRunner") -> float | None:
        raise NotImplementedError


class Starting(Stage):
    """Report TASK_STARTING, start the process, report TASK_RUNNING."""

    name = "starting"

    def run(self, runner: "TaskRunner") -> float | None:
        runner.move(STARTING)
        # Artifacts (CommandInfo.uris) land in the sandbox before the process starts;
        # fetched here, on the runner's thread, so a slow download blocks only this task.
        uris = runner.spec.command.get("uris")
        if uris and not runner.kill_requested:
            from executor.fetcher import FetchError, fetch_all

            try:
                fetch_all(list(uris), runner.spec.sandbox, runner.spec.work_dir / "fetcher-cache",
                          user=runner.spec.user or runner.spec.command.get("user"))
            except FetchError as error:
                runner.finish(FAILED, f"Failed to fetch all URIs for container: {error}",
                              "REASON_CONTAINER_LAUNCH_FAILED")
                return None
        if runner.kill_requested:
            runner.finish(KILLED, "Task killed before it was launched", "REASON_TASK_KILLED_DURING_LAUNCH")
            return None
        try:
            process = runner.launcher.launch(runner.spec)
        except Exception as error:  # any launch failure ends the task, with its reason
            log.exception("task %s failed to launch", runner.task_id)
            runner.finish(FAILED, f"Failed to launch task: {error}", "REASON_CONTAINER_LAUNCH_FAILED")
            return None
        with runner.lock:
            runner.process = process
            killed_meanwhile = runner.kill_requested
        runner.started.set()
        if killed_meanwhile:
            runner.stage = Killing(runner.kill_grace)
            return 0.0
        runner.move(RUNNING)
        runner.stage = Active()
        return 0.0


class Active(Stage):
    """Wait for the process; poll the checker chain between waits."""

    name = "active"

    def run(self, runner: "TaskRunner") -> float | None:
        assert runner.process is not None
        exited = runner.process.wait(POLL_SECONDS)
        if exited is not None:
            runner.exited(exited)
            return None
        for checker in runner.checkers:
            verdict = checker.status()
            if verdict is not None:
                runner.verdict = verdict
                runner.kill(runner.kill_grace)
                return 0.0
        return 0.0


class Killing(Stage):
    """SIGTERM now, SIGKILL of the whole task at the deadline; wait for the exit."""

    name = "killing"

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.deadline: float | None = None
        self.escalated = False

    def begin(self, runner: "TaskRunner") -> None:
        """Report KILLING and send the first signal; cheap, so kill() may call it."""
        assert runner.process is not None
        self.deadline = runner.clock() + self.grace
        runner.move(KILLING)
        runner.process.signal(signal.SIGTERM if self.grace > 0 else signal.SIGKILL)
        self.escalated = self.grace <= 0

    def run(self, runner: "TaskRunner") -> float | None:
        assert runner.process is not None
        if self.deadline is None:
            self.begin(runner)
        assert self.deadline is not None
        now = runner.clock()
        if not self.escalated and now >= self.deadline:
            log.info("task %s outlived its %.1fs grace period: SIGKILL", runner.task_id, self.grace)
            runner.process.signal(signal.SIGKILL)
            self.escalated = True
        timeout = POLL_SECONDS if self.escalated else max(min(self.deadline - now, POLL_SECONDS), 0.0)
        exited = runner.process.wait(timeout)
        if exited is not None:
            runner.exited(exited)
            return None
        return 0.0


class TaskRunner:
    """Drive one task from launch to a terminal state on its own thread."""

    def __init__(self, task_id: str, spec: LaunchSpec, launcher: Launcher, notify: Notify, *,
                 kill_grace: float = DEFAULT_GRACE_SECONDS, send_killing: bool = False,
                 send_starting: bool = True, checkers: Sequence[StatusChecker] = (), clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.task_id = task_id
        self.spec = spec
        self.launcher = launcher
        self.notify = notify
        self.kill_grace = kill_grace
        self.send_killing = send_killing  # only frameworks with TASK_KILLING_STATE see it
        # TASK_STARTING is optional in Mesos: worth its round trip through agent, master and
        # scheduler when the launch takes a while (an image, artifacts), not for a bare command.
        self.send_starting = send_starting
        self.checkers = list(checkers)
        self.clock = clock
        self.lock = threading.RLock()
        self.state = NEW
        self.stage: Stage | None = Starting()
        self.process: Running | None = None
        self.kill_requested = False
        self.verdict: Verdict | None = None
        self.exit: ExitInfo | None = None
        self.started = threading.Event()  # the process exists (or never will)
        self.terminated = threading.Event()  # a terminal update has been sent
        self._thread = threading.Thread(target=self._loop, name=f"task-{task_id}", daemon=True)

    # -- driven from outside ------------------------------------------------------
    def start(self) -> "TaskRunner":
        self._thread.start()
        return self

    def kill(self, grace: float | None = None) -> None:
        """Begin killing: SIGTERM at once, SIGKILL after `grace` seconds. Idempotent."""
        with self.lock:
            if self.state in TERMINAL or isinstance(self.stage, Killing):
                return
            self.kill_requested = True
            if grace is not None:
                self.kill_grace = grace
            if self.process is None:
                return  # Starting sees kill_requested
            stage = Killing(self.kill_grace)
            self.stage = stage
            stage.begin(self)  # signals now; the runner thread escalates and waits

    def report_health(self, healthy: bool, message: str | None = None) -> None:
        """For health checkers: a TASK_RUNNING update carrying `healthy`, as Mesos sends it."""
        with self.lock:
            if self.state != RUNNING:
                return
        self.notify(self, RUNNING, message, "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED", healthy)

    def stats(self) -> dict:
        with self.lock:
            process = self.process
        return process.stats() if process is not None and self.state not in TERMINAL else {}

    def join(self, timeout: float | None = None) -> bool:
        return self.terminated.wait(timeout)

    # -- used by the stages ------------------------------------------------------------
    def move(self, target: str, message: str | None = None, reason: str | None = None,
             healthy: bool | None = None) -> None:
        with self.lock:
            if target == self.state:
                return
            if target not in MOVES[self.state]:
                raise IllegalMove(self.state, target)
            self.state = target
        if (target == KILLING and not self.send_killing) or (target == STARTING and not self.send_starting):
            return
        self.notify(self, target, message, reason, healthy)

    def exited(self, info: ExitInfo) -> None:
        """The process is gone: pick the terminal state as the Mesos command executor does."""
        self.exit = info
        verdict = self.verdict
        if verdict is not None:
            self.finish(verdict.state, verdict.message, verdict.reason, verdict.healthy)
        elif self.kill_requested:
            self.finish(KILLED, info.message, info.reason)
        elif info.exit_code == 0 and info.reason is None:
            self.finish(FINISHED, info.message)
        else:
            self.finish(FAILED, info.message, info.reason)

    def finish(self, state: str, message: str | None, reason: str | None = None,
               healthy: bool | None = None) -> None:
        with self.lock:
            process = self.process
            self.stage = None
        for checker in self.checkers:
            try:
                checker.stop()
            except Exception:
                log.exception("stopping a status checker of %s failed", self.task_id)
        if process is not None:
            try:
                process.destroy()
            except Exception:
                log.exception("destroying task %s failed", self.task_id)
        self.started.set()
        self.move(state, message, reason, healthy)
        self.terminated.set()

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                with self.lock:
                    stage = self.stage
                if stage is None:
                    return
                delay = stage.run(self)
                if delay:
                    time.sleep(delay)
        except Exception as error:  # a bug must still end the task visibly
            log.exception("task %s runner crashed", self.task_id)
            if self.state not in TERMINAL:
                self.finish(FAILED, f"Executor error: {error}")
