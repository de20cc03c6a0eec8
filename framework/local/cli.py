"""`dockyard master|agent|up|down|status`: the embedded cluster's command group."""
from __future__ import annotations

import click

from framework.local.agent.main import agent_command
from framework.local.cluster.down import down_command
from framework.local.master.main import master_command
from framework.local.cluster.status import status_command
from framework.local.cluster.supervisor import up_command
from framework.security.cli import security_command


@click.group()
def cli() -> None:
    """The embedded Mesos-compatible cluster."""


cli.add_command(master_command)
cli.add_command(agent_command)
cli.add_command(up_command)
cli.add_command(down_command)
cli.add_command(status_command)
cli.add_command(security_command)
