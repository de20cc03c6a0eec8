"""The `dockyard` command: a thin dispatcher to each component's own CLI.

`dockyard executor` is dispatched before anything heavy is imported: a Mesos
agent starts one executor process per framework and agent, and its start-up
time is on every task's critical path.
"""
from __future__ import annotations

import sys

LOCAL_COMMANDS = {"master", "agent", "up", "status"}
EXECUTOR_COMMANDS = {"image"}
LAB_COMMANDS = {"lab"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command == "executor":
        from executor.main import main as executor_main

        return executor_main(args[1:])
    if command in LOCAL_COMMANDS:
        from framework.local.cli import cli
    elif command in LAB_COMMANDS:
        from framework.local.lab.cli import cli
    elif command in EXECUTOR_COMMANDS:
        from executor.cli import cli
    else:
        from scheduler.cli import cli
    return cli.main(args=args, prog_name="dockyard", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
