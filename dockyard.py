"""The `dockyard` command: a thin dispatcher to each component's own CLI.

`dockyard executor` is dispatched before anything heavy is imported: a Mesos
agent starts one executor process per framework and agent, and its start-up
time is on every task's critical path.
"""
from __future__ import annotations

import sys

LOCAL_COMMANDS = {"master", "agent", "up", "down", "status", "security"}
EXECUTOR_COMMANDS = {"image"}
LAB_COMMANDS = {"lab"}


USAGE = """usage: dockyard COMMAND [ARGS]...

Run your own PaaS on Apache Mesos: Marathon-style services and Metronome-style
jobs in layered OCI containers, on a real Mesos cluster or an embedded one.

Cluster (embedded, Mesos-compatible):
  up          run a master, N agents and the scheduler on this machine
  down        stop the cluster `up` started (from any terminal)
  status      show agents, resources, frameworks and tasks
  master      run an embedded master (scheduler and operator APIs on :5050)
  agent       run an embedded agent (executor and files APIs on :5051)
  lab         a multi-node lab in network namespaces on this machine
  security    make or inspect a security bundle (CA, certificates, credentials)

Framework:
  scheduler   run the dockyard scheduler (Marathon and Metronome APIs on :8080)
  app         deploy and manage services (Marathon apps)
  task        list, kill, exec into and read the logs of tasks
  job         run and manage batch jobs (Metronome jobs)
  secret      store secrets for apps and jobs (never shown again, delivered in launches only)
  router      keep an HAProxy in step with the apps (marathon-lb's labels; docs/router.md)
  image       build (from a Dockerfile), pull, push, load and inspect OCI images

Run `dockyard COMMAND --help` for a command's options.
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command in ("", "-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if command else 2
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
