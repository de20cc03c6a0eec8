"""`dockyard secret ...`: a REST client of the scheduler's secret store.

    dockyard secret put db/password < file        # or --from-file FILE; a new version if it exists
    dockyard secret ls [PREFIX] [--json]           # names, sizes, versions, who changed them when
    dockyard secret rm db/password
    dockyard secret rotate-key [--generate] [--prune]
    dockyard secret gen-key                        # a new key for a --secrets-key-file (local)

A value is never printed, and never passed on a command line (it would show in
`ps` and in shell history): it comes from stdin or a file.
"""
from __future__ import annotations

import sys

import click

from framework.tables import table as make_table
from scheduler.cli.client import client_options, connect, console, emit, err_console, json_option

PREFIX = "/secrets/v1/secret/default"


def _path(name: str) -> str:
    return "/" + name.strip("/")


@click.group()
def secret() -> None:
    """Secrets for apps and jobs (the scheduler's secret store)."""


@secret.command("put")
@click.argument("name")
@click.option("--from-file", "from_file", metavar="FILE", help="read the value from FILE [default: stdin]")
@client_options
@json_option
def secret_put(name: str, from_file: str | None, url: str | None, config: str | None, as_json: bool) -> None:
    """Store NAME's value (stdin, or --from-file): a new secret, or its next version."""
    value = _read_value(from_file)
    meta = connect(url, config).call("PUT", PREFIX + _path(name), content=value,
                                     headers={"Content-Type": "application/octet-stream"})
    if as_json:
        emit(meta)
    else:
        console.print(f"{meta['path']}: version {meta['version']}, {meta['size']} bytes", markup=False)


def _read_value(from_file: str | None) -> bytes:
    if not from_file:
        if sys.stdin.isatty():
            err_console.print("reading the value from stdin (end with Ctrl-D)", style="dim")
        return sys.stdin.buffer.read()
    try:
        with open(from_file, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise click.ClickException(f"{from_file}: no such file (--from-file names the file holding the value)") \
            from None
    except IsADirectoryError:
        raise click.ClickException(f"{from_file} is a directory: --from-file names the file holding the value") \
            from None
    except OSError as error:
        raise click.ClickException(f"cannot read {from_file}: {error.strerror or error}") from None


@secret.command("ls")
@click.argument("prefix", required=False, default="")
@client_options
@json_option
def secret_ls(prefix: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Secrets (below PREFIX): names, sizes, versions, who changed them when. Never values."""
    listing = connect(url, config).call("GET", PREFIX + _path(prefix), params={"list": "true"})
    metas = listing["secrets"]
    if as_json:
        emit(metas)
        return
    table = make_table("NAME", "SIZE", "VERSION", "UPDATED", "BY", "CREATED", "BY ", "KEY")
    for meta in metas:
        table.add_row(meta["path"], str(meta["size"]), str(meta["version"]), meta["updatedAt"],
                      meta["updatedBy"] or "-", meta["createdAt"], meta["createdBy"] or "-", meta["key"])
    console.print(table)


@secret.command("rm")
@click.argument("name")
@client_options
def secret_rm(name: str, url: str | None, config: str | None) -> None:
    """Remove a secret (apps and jobs that use it fail to launch new tasks until it is back)."""
    connect(url, config).call("DELETE", PREFIX + _path(name))
    console.print(f"{name.strip('/')} removed", markup=False)


@secret.command("rotate-key")
@click.option("--generate", is_flag=True, help="first put a new key on top of the scheduler's key file")
@click.option("--prune", is_flag=True, help="then leave only the current key in the key file")
@client_options
@json_option
def secret_rotate(generate: bool, prune: bool, url: str | None, config: str | None, as_json: bool) -> None:
    """Seal every secret again with the current (first) key of --secrets-key-file."""
    result = connect(url, config).call("POST", "/secrets/v1/rotate-key", {"generate": generate, "prune": prune})
    if as_json:
        emit(result)
        return
    console.print(f"{result['rotated']} of {result['secrets']} secrets sealed again with key {result['key']}"
                  + (f"; retired keys {', '.join(result['retired'])}"
                     + (" pruned from the key file" if result["pruned"] else " still in the key file")
                     if result["retired"] else ""), markup=False)


@secret.command("gen-key")
def secret_gen_key() -> None:
    """Print a new key for a --secrets-key-file (nothing is sent anywhere)."""
    from scheduler.secrets.crypto import generate_key

    click.echo(generate_key())
