"""`dockyard down [--work-dir D]`: stop a cluster `dockyard up` started, from any terminal.

It asks `up` to stop (SIGTERM: the orderly stop Ctrl-C gives) and waits for it.
When `up` is gone (killed) or does not finish in time, `down` stops what is left
of the recorded components itself: SIGTERM to each one's process group, SIGKILL
after the timeout, then the agents' clean-up `up` would have run. Only processes
whose pid and start time match `WORK_DIR/cluster.json` are signalled.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import click

from framework.local.cluster.supervisor import STOP_TIMEOUT, clean_agent, say
from framework.local.cluster.up_record import RECORD, ClusterRecord, Recorded

UP_TIMEOUT = 3 * STOP_TIMEOUT  # `up` stops its components in STOP_TIMEOUT, then cleans after agents


def _signal(process: Recorded, signum: int, group: bool = True) -> None:
    """`signum` to the process, or to its group when it leads one (each component runs in a
    session of its own); `up` alone, never its shell job (`up | tee log` shares one group)."""
    if not process.alive():
        return
    try:
        if group and os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
    except ProcessLookupError:
        pass


def _wait_gone(processes: list[Recorded], timeout: float) -> list[Recorded]:
    """Those of `processes` still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in processes if p.alive()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stop(record: ClusterRecord) -> list[str]:
    """Stop the recorded cluster; the names of what was still running."""
    running = [p.name for p in record.running()]
    up_stopped_it = False
    if record.up.alive():
        _signal(record.up, signal.SIGTERM, group=False)
        up_stopped_it = not _wait_gone([record.up], UP_TIMEOUT)
    left = [c for c in reversed(record.components) if c.alive()]
    for component in left:
        _signal(component, signal.SIGTERM)
    for component in _wait_gone(left, STOP_TIMEOUT):
        say(f"[yellow]{component.name} did not stop within {STOP_TIMEOUT:.0f}s: killing it[/]")
        _signal(component, signal.SIGKILL)
    _wait_gone(left, 5)
    if record.up.alive():  # it did not finish its own stop in time
        _signal(record.up, signal.SIGKILL, group=False)
    if not up_stopped_it and running:
        for index, agent_dir in enumerate(record.agents, 1):
            clean_agent(f"agent{index}", agent_dir)
    return running


@click.command("down")
@click.option("--work-dir", default=".dockyard", show_default=True, type=click.Path(path_type=Path),
              help="the --work-dir the cluster was started with")
def down_command(work_dir: Path) -> None:
    """Stop the cluster `dockyard up` started with this work dir, from any terminal."""
    work_dir = work_dir.resolve()
    record = ClusterRecord.load(work_dir)
    if record is None:
        raise click.ClickException(f"no cluster started by `dockyard up` is recorded in {work_dir} (no {RECORD}); "
                                   "give the --work-dir it was started with")
    stopped = stop(record)
    if stopped:
        say(f"stopped the cluster in {work_dir}: {', '.join(stopped)}")
    else:
        say(f"the cluster in {work_dir} was not running; nothing to stop")
