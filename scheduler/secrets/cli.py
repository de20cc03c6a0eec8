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
from scheduler.cli import client_options, connect, console, emit, err_console, json_option

PREFIX = "/secrets/v1/secret/default"


def _path(name: str) -> str:
    return "/" + name.strip("/")


def register(cli: click.Group) -> None:
    @cli.group()
    def secret() -> None:
        """Secrets for apps and jobs (the scheduler's secret store)."""

    @secret.command("put")
    @click.argument("name")
    @click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False),
                  help="read the value from FILE [default: stdin]")
    @client_options
    @json_option
    def secret_put(name: str, from_file: str | None, url: str | None, config: str | None, as_json: bool) -> None:
        """Store NAME's value (stdin, or --from-file): a new secret, or its next version."""
        if from_file:
            with open(from_file, "rb") as handle:
                value = handle.read()
        else:
            if sys.stdin.isatty():
                err_console.print("reading the value from stdin (end with Ctrl-D)", style="dim")
            value = sys.stdin.buffer.read()
        api = connect(url, config)
        try:
            response = api.client.put(api.url + PREFIX + _path(name), content=value,
                                      headers={"Content-Type": "application/octet-stream"})
        except Exception as error:
            raise click.ClickException(f"cannot reach the scheduler at {api.url}: {error}") from None
        meta = _answer(api, response)
        if as_json:
            emit(meta)
        else:
            console.print(f"{meta['path']}: version {meta['version']}, {meta['size']} bytes")

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
        console.print(f"{name.strip('/')} removed")

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
                         if result["retired"] else ""))

    @secret.command("gen-key")
    def secret_gen_key() -> None:
        """Print a new key for a --secrets-key-file (nothing is sent anywhere)."""
        from scheduler.secrets.crypto import generate_key

        click.echo(generate_key())


def _answer(api, response) -> dict:  # noqa: ANN001 - scheduler.cli.Api and an httpx.Response
    from scheduler.cli import server_message

    if response.status_code in (401, 403):
        raise click.ClickException(api.settings.refusal(response.status_code, f"the scheduler at {api.url}",
                                                        server_message(response)))
    if response.status_code >= 400:
        raise click.ClickException(f"{response.status_code}: {server_message(response)}")
    return response.json()
