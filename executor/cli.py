"""`dockyard image pull|push|load|ls|inspect|rm|prune`: the agent's image store by hand.

Tables and progress bars (rich) for people, `--json` for scripts. Not on the
executor's start-up path, so click and rich are fine here.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import click

from framework.errors import DockyardError

DEFAULT_WORK_DIR = "/var/lib/dockyard"


def _store(work_dir: str, budget: int | None = None):
    from executor.images.store import ImageStore

    return ImageStore(Path(work_dir), budget_bytes=budget)


def work_dir_option(func: Callable) -> Callable:
    return click.option("--work-dir", default=DEFAULT_WORK_DIR, envvar="DOCKYARD_WORK_DIR", show_default=True,
                        help="The agent's work dir (the store is WORK_DIR/images).")(func)


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def _fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(1)


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class ProgressView:
    """Renders store progress events as one rich bar per blob (quiet for --json)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.progress = None
        self.tasks: dict[str, int] = {}
        self.lines: list[str] = []

    def __enter__(self) -> "ProgressView":
        if self.enabled:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: dict) -> None:
        digest = event.get("digest", "")
        short = digest.split(":")[-1][:12]
        status = event["status"]
        if self.progress is None:
            if status in ("exists", "verified", "pushed", "done", "shared"):
                self.lines.append(f"{short or event.get('image', '')}: {status}")
                if not self.enabled and sys.stderr.isatty():
                    click.echo(self.lines[-1], err=True)
            return
        if not digest or status in ("resolved", "done", "shared"):
            return
        if status == "extracted":
            if digest in self.tasks:
                self.progress.update(self.tasks[digest], description=f"{short} extracted")
            return
        if digest not in self.tasks:
            self.tasks[digest] = self.progress.add_task(short, total=event.get("total") or None)
        task = self.tasks[digest]
        if status in ("downloading", "uploading"):
            self.progress.update(task, completed=event.get("done", 0), description=f"{short} {status}")
        elif status in ("exists", "verified", "pushed"):
            total = event.get("total") or None
            self.progress.update(task, completed=total or 1, total=total or 1, description=f"{short} {status}")


@click.group()
def cli() -> None:
    """dockyard command line (image store part)."""


@cli.group()
def image() -> None:
    """Manage the OCI image store of an agent."""


@image.command()
@click.argument("reference")
@click.option("--creds", help="USER:PASSWORD for the registry.")
@work_dir_option
@json_option
def pull(reference: str, creds: str | None, work_dir: str, as_json: bool) -> None:
    """Pull REFERENCE (only missing layers, verified) into the store."""
    from executor.images.registry import Credentials

    store = _store(work_dir)
    started = time.monotonic()
    try:
        with ProgressView(not as_json) as view:
            img = store.pull(reference, progress=view, credentials=Credentials.parse(creds))
    except DockyardError as error:
        _fail(error)
    received = store.last_client.bytes_received if store.last_client else 0
    result = {"image": img.name, "digest": img.digest, "size": img.size, "bytes_received": received,
              "seconds": round(time.monotonic() - started, 3)}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{img.name} {img.digest} ({_human(received)} transferred in {result['seconds']}s)")


@image.command()
@click.argument("reference")
@click.argument("destination", required=False)
@click.option("--creds", help="USER:PASSWORD for the registry.")
@work_dir_option
@json_option
def push(reference: str, destination: str | None, creds: str | None, work_dir: str, as_json: bool) -> None:
    """Push a stored image (to DESTINATION if given)."""
    from executor.images.registry import Credentials

    store = _store(work_dir)
    try:
        with ProgressView(not as_json) as view:
            digest = store.push(reference, destination, progress=view, credentials=Credentials.parse(creds))
    except DockyardError as error:
        _fail(error)
    sent = store.last_client.bytes_sent if store.last_client else 0
    if as_json:
        click.echo(json.dumps({"image": destination or reference, "digest": digest, "bytes_sent": sent}))
    else:
        click.echo(f"pushed {destination or reference} {digest}")


@image.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--tag", help="Tag to give the loaded image (default: the archive's own).")
@work_dir_option
@json_option
def load(archive: str, tag: str | None, work_dir: str, as_json: bool) -> None:
    """Load a `docker save` archive or an OCI archive."""
    try:
        loaded = _store(work_dir).load(Path(archive), tag)
    except DockyardError as error:
        _fail(error)
    click.echo(json.dumps({"loaded": loaded}) if as_json else "\n".join(f"loaded {n}" for n in loaded))


def _rows(store) -> list[dict]:
    rows = []
    for img in store.images():
        rows.append({"image": img.name, "digest": img.digest, "size": img.size, "layers": len(img.layers),
                     "last_used": store.last_used(img.digest)})
    return rows


@image.command(name="ls")
@work_dir_option
@json_option
def list_images(work_dir: str, as_json: bool) -> None:
    """List stored images."""
    store = _store(work_dir)
    rows = _rows(store)
    if as_json:
        click.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in ("IMAGE", "DIGEST", "LAYERS", "SIZE", "LAST USED"):
        table.add_column(column)
    for row in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["last_used"])) if row["last_used"] else "-"
        table.add_row(row["image"], row["digest"][7:19], str(row["layers"]), _human(row["size"]), used)
    Console().print(table)
    click.echo(f"store: {_human(store.usage())}")


@image.command()
@click.argument("reference")
@work_dir_option
def inspect(reference: str, work_dir: str) -> None:
    """Manifest and config of a stored image (JSON)."""
    try:
        img = _store(work_dir).image(reference)
    except DockyardError as error:
        _fail(error)
    click.echo(json.dumps({"image": img.name, "digest": img.digest, "manifest": img.manifest,
                           "config": img.config}, indent=2))


@image.command()
@click.argument("references", nargs=-1, required=True)
@work_dir_option
@json_option
def rm(references: tuple[str, ...], work_dir: str, as_json: bool) -> None:
    """Untag images; their layers go when nothing else uses them."""
    store = _store(work_dir)
    removed: list[str] = []
    try:
        for reference in references:
            removed += store.remove(reference)
    except DockyardError as error:
        _fail(error)
    click.echo(json.dumps({"removed": removed}) if as_json else "\n".join(f"removed {r}" for r in removed))


@image.command()
@click.option("--budget", type=int, help="Also evict least recently used images until the store is under "
                                         "this many bytes.")
@work_dir_option
@json_option
def prune(budget: int | None, work_dir: str, as_json: bool) -> None:
    """Remove blobs and layers no image references and no container uses."""
    store = _store(work_dir, budget)
    evicted = store.enforce_budget() if budget else []
    result = store.prune()
    result["evicted"] = evicted
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"removed {result['blobs_removed']} blobs, {result['layers_removed']} layers, "
                   f"freed {_human(result['bytes_freed'])}" + (f"; evicted {', '.join(evicted)}" if evicted else ""))
