"""The `dockyard scheduler | job | app | task | secret | router` commands, assembled into one click group.

Each command group lives in the module named for it; what they share (the REST
client, its options, spec files, output) is in `client.py`, task output from the
agents in `logs.py`, following a deployment in `progress.py` and a job run in
`runs.py`, the dry run in `placement.py`. Nothing imports this module but the
`dockyard` dispatcher (and tests).
"""
from __future__ import annotations

import click

from scheduler.cli.app import app
from scheduler.cli.job import job
from scheduler.cli.scheduler import scheduler
from scheduler.cli.secret import secret
from scheduler.cli.task import task
from scheduler.router.cli import router


@click.group()
def cli() -> None:
    """dockyard: a Mesos framework for services and batch jobs."""


for command in (scheduler, job, app, task, secret, router):
    cli.add_command(command)

__all__ = ["cli"]
