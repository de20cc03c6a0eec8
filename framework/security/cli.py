"""`dockyard security ...`: make and inspect a security bundle outside `dockyard up`.

The lab on virtual machines provisions each node with it: every node derives
the same bundle from one shared seed file and issues its own certificate.

    dockyard security init DIR --agent agent1 --agent agent2 --seed-file SEED \
        --cert agent1 --host 192.168.56.11 --host agent1
    dockyard security show DIR
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from framework.errors import SecurityError
from framework.security.bundle import Bundle


@click.group("security")
def security_command() -> None:
    """Security bundles: a CA, certificates, credentials, ACLs and the executor key."""


@security_command.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--agent", "agents", multiple=True, help="an agent's name (its principal is agent-NAME); repeat")
@click.option("--seed-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="derive every secret, key and the CA from this file's bytes (the same on every machine)")
@click.option("--cert", default=None, help="issue a certificate of this name ...")
@click.option("--host", "hosts", multiple=True, help="... valid for this address or host name; repeat")
def init_command(directory: Path, agents: tuple[str, ...], seed_file: Path | None, cert: str | None,
                 hosts: tuple[str, ...]) -> None:
    """Create (or complete) the bundle in DIRECTORY; existing files are kept."""
    if bool(cert) != bool(hosts):
        raise click.UsageError("--cert and --host go together")
    try:
        seed = seed_file.read_bytes().strip() if seed_file else None
        bundle = Bundle(directory, seed=seed).ensure(agents=agents)
        if cert:
            bundle.certificate(cert, hosts)
    except (SecurityError, ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"security bundle in {bundle.directory}")


@security_command.command("show")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
def show_command(directory: Path, as_json: bool) -> None:
    """The bundle's files and principals (never a secret)."""
    bundle = Bundle(directory)
    try:
        principals = json.loads(bundle.credentials_file.read_text())["credentials"]
    except (OSError, ValueError, KeyError) as error:
        raise click.ClickException(f"{bundle.credentials_file}: {error}") from None
    report = {"directory": str(bundle.directory),
              "principals": [entry["principal"] for entry in principals],
              "files": sorted(p.name for p in bundle.directory.iterdir())}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"bundle     {report['directory']}")
    click.echo(f"principals {', '.join(report['principals'])}")
    click.echo(f"files      {', '.join(report['files'])}")
