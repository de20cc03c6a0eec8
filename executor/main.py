"""`dockyard executor`: the process a Mesos agent starts for dockyard's tasks.

Reads its orders from the `MESOS_*` environment the agent sets (read in
framework/mesos/executor.py, as Mesos's src/executor/executor.cpp reads them) and
talks to the agent through the v1 executor API. Standard library and addict only on
this path: it is on every cold task start.

`dockyard executor --cleanup WORK_DIR` is the agent's start-up janitor: it
removes mounts, cgroups and runtime state a killed agent or executor left
behind (executor/cleanup.py).
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time

log = logging.getLogger("dockyard.executor")

DEFAULT_IDLE_TIMEOUT = 300.0  # a warm executor with no task for this long ends itself


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dockyard executor",
                                     description="dockyard's Mesos executor (started by an agent)")
    parser.add_argument("--cleanup", metavar="WORK_DIR",
                        help="remove what killed executors left under WORK_DIR, then exit")
    parser.add_argument("--sandbox", action="append", default=None, metavar="DIR",
                        help="with --cleanup: only the containers of tasks in this executor sandbox")
    parser.add_argument("--keep", action="append", default=[], metavar="DIR",
                        help="with --cleanup: leave the containers of this (live) executor sandbox")
    return parser.parse_args(argv)


def cleanup(work_dir: str, only: list[str] | None = None, keep: list[str] | None = None) -> int:
    if importlib.util.find_spec("executor.cleanup") is None:
        return 0
    from executor import cleanup as janitor  # type: ignore[attr-defined]

    report = janitor.run(work_dir, only=only, keep=keep)
    for error in report["errors"]:
        log.warning("clean-up: %s", error)
    return 0


def run_executor() -> int:
    from executor.callbacks import ACK_WAIT_SECONDS, DockyardExecutor
    from framework.mesos.executor import DRIVER_RUNNING, MesosExecutorDriver

    single = os.environ.get("DOCKYARD_COMMAND_EXECUTOR") == "1"
    idle = float(os.environ.get("DOCKYARD_EXECUTOR_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT))
    executor = DockyardExecutor(single_task=single, idle_timeout=idle)
    driver = MesosExecutorDriver(executor, use_addict=False)  # DockyardExecutor reads plain dicts
    driver.start()
    while driver.status == DRIVER_RUNNING and not executor.done.wait(1.0):
        if executor.idle():
            log.info("idle for %.0fs: exiting", idle)
            break
    # Keep the connection until the agent has stored our last updates (ACKNOWLEDGED).
    deadline = time.monotonic() + ACK_WAIT_SECONDS
    while driver.status == DRIVER_RUNNING and driver.unacknowledged_updates() and time.monotonic() < deadline:
        time.sleep(0.01)
    driver.stop()
    driver.join(5.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s executor %(name)s: %(message)s")
    if args.cleanup:
        return cleanup(args.cleanup, args.sandbox, args.keep)
    return run_executor()


if __name__ == "__main__":
    sys.exit(main())
