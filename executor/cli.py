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


def _store(work_dir: str, budget: int | None = None, registry: str | None = None):
    from executor.images.source import RegistrySource
    from executor.images.store import ImageStore

    return ImageStore(Path(work_dir), budget_bytes=budget, registry=RegistrySource.parse(registry))


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
@click.option("--docker-registry", "registry", envvar="DOCKYARD_DOCKER_REGISTRY",
              help="Where unqualified names come from, as the agent's --docker-registry: a registry URL "
                   "or a directory of `docker save` archives named <repo>:<tag>.tar.")
@work_dir_option
@json_option
def pull(reference: str, creds: str | None, registry: str | None, work_dir: str, as_json: bool) -> None:
    """Pull REFERENCE (only missing layers, verified) into the store."""
    from executor.images.registry import Credentials

    started = time.monotonic()
    try:
        store = _store(work_dir, registry=registry)
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
    from framework.tables import console, table as make_table

    table = make_table("IMAGE", "DIGEST", "LAYERS", "SIZE", "LAST USED")
    for row in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["last_used"])) if row["last_used"] else "-"
        table.add_row(row["image"], row["digest"][7:19], str(row["layers"]), _human(row["size"]), used)
    console().print(table)
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


def _argv(text: str | None) -> list[str] | None:
    """`--cmd`/`--entrypoint`: a JSON array (Docker's exec form) or a shell-style string."""
    if text is None:
        return None
    if text.strip().startswith("["):
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise click.BadParameter("a JSON array of strings, or a plain command line")
        return value
    import shlex

    return shlex.split(text)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=what)
        pairs[key] = rest
    return pairs


@image.command()
@click.option("--tag", "tag", required=True, help="NAME:TAG of the image (e.g. busybox:test).")
@click.option("--from-rootfs", "rootfs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              multiple=True, help="A directory whose tree becomes a layer (repeat for more layers).")
@click.option("--busybox", is_flag=True, help="Start from a minimal busybox-static root (/bin/busybox, "
                                              "applet links, /etc/passwd, /tmp) as the bottom layer.")
@click.option("--cmd", help='Cmd: JSON array (["sh","-c","echo hi"]) or a command line.')
@click.option("--entrypoint", help="Entrypoint: JSON array or a command line.")
@click.option("--env", "env", multiple=True, help="KEY=VALUE in the image's environment (repeatable).")
@click.option("--workdir", help="Working directory of the image's process.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE label (repeatable).")
@click.option("--user", help="User the image's process runs as (name or uid[:gid]).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a `docker save` archive (docker-archive) here.")
@click.option("--load", "load_it", is_flag=True, help="Load the image into the local store (--work-dir).")
@work_dir_option
@json_option
def build(tag: str, rootfs: tuple[Path, ...], busybox: bool, cmd: str | None, entrypoint: str | None,
          env: tuple[str, ...], workdir: str | None, labels: tuple[str, ...], user: str | None,
          output: Path | None, load_it: bool, work_dir: str, as_json: bool) -> None:
    """Build a small image from directories (and busybox): for tests and demos, no RUN steps."""
    from executor.images import build as builder
    from executor.images import reference as references

    if not rootfs and not busybox:
        raise click.UsageError("give --from-rootfs DIR and/or --busybox")
    if output is None and not load_it:
        raise click.UsageError("give --output FILE.tar and/or --load")
    say = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    started = time.monotonic()
    try:
        references.parse(tag)  # a name the store and registries accept
        config = builder.image_config(_argv(cmd), _argv(entrypoint), _pairs(env, "--env"), workdir,
                                      _pairs(labels, "--label"), user)
        layers = []
        total = len(rootfs) + (1 if busybox else 0)
        if busybox:
            say(f"[{len(layers) + 1}/{total}] busybox root from {builder.BUSYBOX}")
            layers.append(builder.layer_tar(builder.busybox_entries()))
        for directory in rootfs:
            say(f"[{len(layers) + 1}/{total}] layer from {directory}")
            layers.append(builder.layer_from_dir(directory, progress=say))
        say("compressing layers and writing the manifest")
        image = builder.build_image(layers, config)
        for number, descriptor in enumerate(image.layer_descriptors, 1):
            say(f"  layer {number}: {descriptor['digest'][:19]} {_human(descriptor['size'])}")
        result: dict = {"image": tag, "digest": image.digest, "layers": len(layers), "size": image.size}
        if output is not None:
            image.write_docker_archive(output, tag)
            say(f"wrote {output} (docker-archive)")
            result["output"] = str(output)
        if load_it:
            import tempfile

            store = _store(work_dir)
            with tempfile.TemporaryDirectory(dir=store.tmp) as scratch:
                loaded = store.load(image.write_oci_layout(Path(scratch) / "layout", "built"), tag)
            say(f"loaded {', '.join(loaded)} into {work_dir}")
            result["loaded"] = loaded
    except (DockyardError, OSError, ValueError) as error:
        _fail(error)
    result["seconds"] = round(time.monotonic() - started, 3)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{tag} {image.digest} ({len(layers)} layers, {_human(image.size)})")
