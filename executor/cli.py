"""`dockyard image pull|push|load|ls|inspect|rm|prune|build`: agents' image stores by hand.

Which stores: `--work-dir` (or `$DOCKYARD_WORK_DIR`) names one agent's; without it,
the stores of every agent of the cluster `dockyard up` started where the CLI finds
its client settings (`./.dockyard/client.json`, or `$DOCKYARD_CONFIG`), as its
`cluster.json` lists them; else `/var/lib/dockyard`, a packaged agent's. Tables and
progress bars (rich) for people, `--json` for scripts. Not on the executor's
start-up path, so click and rich are fine here.
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


def agent_work_dirs(work_dir: str | None) -> dict[str, str]:
    """name -> work dir of the agents whose stores a command acts on (see the module docstring)."""
    if work_dir:
        return {"": work_dir}
    from framework.local.cluster.up_record import ClusterRecord
    from framework.security.client import find

    settings = find()
    record = ClusterRecord.load(settings.resolve().parent) if settings is not None else None
    if record is not None and record.agents:
        return {Path(agent).name: agent for agent in record.agents}
    return {"": DEFAULT_WORK_DIR}


def _stores(work_dir: str | None, budget: int | None = None, registry: str | None = None) -> dict:
    return {name: _store(path, budget, registry) for name, path in agent_work_dirs(work_dir).items()}


def _holding(work_dir: str | None, reference: str):
    """The first store that has `reference` (the first store when none has it, to say so)."""
    stores = list(_stores(work_dir).values())
    return next((store for store in stores if store.resolve(reference) is not None), stores[0])


def _where(names) -> str:
    named = [name for name in names if name]
    return f" ({', '.join(named)})" if named else ""


def work_dir_option(func: Callable) -> Callable:
    return click.option("--work-dir", default=None, envvar="DOCKYARD_WORK_DIR",
                        help="One agent's work dir (the store is WORK_DIR/images). Default: every agent of the "
                             "cluster `dockyard up` started here (./.dockyard, or $DOCKYARD_CONFIG's directory), "
                             f"else {DEFAULT_WORK_DIR}.")(func)


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
def pull(reference: str, creds: str | None, registry: str | None, work_dir: str | None, as_json: bool) -> None:
    """Pull REFERENCE (only missing layers, verified) into the store(s)."""
    from executor.images.registry import Credentials

    started = time.monotonic()
    received = 0
    try:
        stores = _stores(work_dir, registry=registry)
        for store in stores.values():
            with ProgressView(not as_json) as view:
                img = store.pull(reference, progress=view, credentials=Credentials.parse(creds))
            received += store.last_client.bytes_received if store.last_client else 0
    except DockyardError as error:
        _fail(error)
    result = {"image": img.name, "digest": img.digest, "size": img.size, "bytes_received": received,
              "seconds": round(time.monotonic() - started, 3)}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{img.name} {img.digest} ({_human(received)} transferred in {result['seconds']}s)"
                   f"{_where(stores)}")


@image.command()
@click.argument("reference")
@click.argument("destination", required=False)
@click.option("--creds", help="USER:PASSWORD for the registry.")
@work_dir_option
@json_option
def push(reference: str, destination: str | None, creds: str | None, work_dir: str | None, as_json: bool) -> None:
    """Push a stored image (to DESTINATION if given)."""
    from executor.images.registry import Credentials

    store = _holding(work_dir, reference)
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
def load(archive: str, tag: str | None, work_dir: str | None, as_json: bool) -> None:
    """Load a `docker save` archive or an OCI archive (into every agent of the cluster)."""
    try:
        stores = _stores(work_dir)
        for store in stores.values():
            loaded = store.load(Path(archive), tag)
    except DockyardError as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps({"loaded": loaded, **({"agents": list(stores)} if _where(stores) else {})}))
    else:
        click.echo("\n".join(f"loaded {n}{_where(stores)}" for n in loaded))


def _rows(store, agent: str = "") -> list[dict]:
    rows = []
    for img in store.images():
        rows.append({**({"agent": agent} if agent else {}), "image": img.name, "digest": img.digest,
                     "size": img.size, "layers": len(img.layers), "last_used": store.last_used(img.digest)})
    return rows


@image.command(name="ls")
@work_dir_option
@json_option
def list_images(work_dir: str | None, as_json: bool) -> None:
    """List stored images (of every agent of the cluster: one row per agent and image)."""
    stores = _stores(work_dir)
    rows = [row for agent, store in stores.items() for row in _rows(store, agent)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    from framework.tables import console, table as make_table

    agents = bool(_where(stores))
    table = make_table(*(["AGENT"] if agents else []), "IMAGE", "DIGEST", "LAYERS", "SIZE", "LAST USED")
    for row in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["last_used"])) if row["last_used"] else "-"
        table.add_row(*([row["agent"]] if agents else []), row["image"], row["digest"][7:19], str(row["layers"]),
                      _human(row["size"]), used)
    console().print(table)
    for agent, store in stores.items():
        click.echo(f"store{f' of {agent}' if agent else ''}: {store.root} ({_human(store.usage())})")


@image.command()
@click.argument("reference")
@work_dir_option
def inspect(reference: str, work_dir: str | None) -> None:
    """Manifest and config of a stored image (JSON)."""
    try:
        img = _holding(work_dir, reference).image(reference)
    except DockyardError as error:
        _fail(error)
    click.echo(json.dumps({"image": img.name, "digest": img.digest, "manifest": img.manifest,
                           "config": img.config}, indent=2))


@image.command()
@click.argument("references", nargs=-1, required=True)
@work_dir_option
@json_option
def rm(references: tuple[str, ...], work_dir: str | None, as_json: bool) -> None:
    """Untag images; their layers go when nothing else uses them."""
    stores = list(_stores(work_dir).values())
    removed: list[str] = []
    try:
        for reference in references:
            # When no store has it, the first one's error says so.
            holders = [store for store in stores if store.resolve(reference) is not None] or stores[:1]
            removed += sorted({name for store in holders for name in store.remove(reference)})
    except DockyardError as error:
        _fail(error)
    click.echo(json.dumps({"removed": removed}) if as_json else "\n".join(f"removed {r}" for r in removed))


@image.command()
@click.option("--budget", type=int, help="Also evict least recently used images until the store is under "
                                         "this many bytes.")
@work_dir_option
@json_option
def prune(budget: int | None, work_dir: str | None, as_json: bool) -> None:
    """Remove blobs and layers no image references and no container uses."""
    result: dict = {"evicted": []}
    for store in _stores(work_dir, budget).values():
        result["evicted"] += store.enforce_budget() if budget else []
        for key, value in store.prune().items():
            result[key] = result.get(key, 0) + value
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"removed {result['blobs_removed']} blobs, {result['layers_removed']} layers, "
                   f"freed {_human(result['bytes_freed'])}"
                   + (f"; evicted {', '.join(result['evicted'])}" if result["evicted"] else ""))


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


def _memory_mb(text: str | None) -> float | None:
    """`--memory` as Docker's `-m` reads it (`512m`, `2g`, `1048576` bytes), in MB."""
    if text is None:
        return None
    import re

    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bkmg]?)b?", text.strip().lower())
    if match is None:
        raise click.BadParameter(f"{text!r}: a size like 512m or 2g", param_hint="--memory")
    megabytes = float(match.group(1)) * {"b": 1 / 1048576, "": 1 / 1048576, "k": 1 / 1024, "m": 1,
                                         "g": 1024}[match.group(2)]
    if megabytes < 6:
        raise click.BadParameter(f"{text!r}: at least 6m", param_hint="--memory")
    return megabytes


class StepView:
    """A build's progress as Docker prints it: `Step 3/9 : RUN ...`, the step's output, then
    ` ---> Using cache` and the layer it made or found, on stderr. Silent for --quiet."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bold = sys.stderr.isatty()

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        kind = event["event"]
        say = lambda line: click.echo(line, err=True)  # noqa: E731
        if kind == "step":
            say(click.style(f"Step {event['step']}/{event['total']} : {event['instruction']}", bold=self.bold))
        elif kind == "output":
            say(event["line"])
        elif kind == "cached":
            say(" ---> Using cache")
        elif kind == "layer":
            say(f" ---> {event['digest'][7:19]} ({_human(event['size'])})")
        elif kind == "empty" and not event["cached"]:
            say(" ---> no changes, no layer")
        elif kind == "warning":
            say(click.style(f"[warning] {event['message']}", fg="yellow"))
        elif kind == "pull" and event.get("status") in (None, "done"):
            say(f" ---> pulled {event.get('image', '')}" if event.get("status") else f" ---> pulling {event['image']}")


def _build_layers(tags: tuple[str, ...], rootfs: tuple[Path, ...], busybox: bool, cmd: str | None,
                  entrypoint: str | None, env: tuple[str, ...], workdir: str | None, labels: tuple[str, ...],
                  user: str | None, output: Path | None, load_it: bool, work_dir: str | None, as_json: bool) -> None:
    """An image from directories (and busybox), no Dockerfile: for tests and demos."""
    from executor.images import build as builder
    from executor.images import reference as references

    if not tags:
        raise click.UsageError("give --tag NAME:TAG")
    if output is None and not load_it:
        raise click.UsageError("give --output FILE.tar and/or --load")
    tag = tags[0]
    say = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    started = time.monotonic()
    try:
        for name in tags:
            references.parse(name)  # a name the store and registries accept
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

            loaded: list[str] = []
            for agent, store in _stores(work_dir).items():
                with tempfile.TemporaryDirectory(dir=store.tmp) as scratch:
                    layout = image.write_oci_layout(Path(scratch) / "layout", "built")
                    loaded = [name for tag_name in tags for name in store.load(layout, tag_name)]
                say(f"loaded {', '.join(loaded)} into {store.root}{f' ({agent})' if agent else ''}")
            result["loaded"] = loaded
    except (DockyardError, OSError, ValueError) as error:
        _fail(error)
    result["seconds"] = round(time.monotonic() - started, 3)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{tag} {image.digest} ({len(layers)} layers, {_human(image.size)})")


def _build_dockerfile(context: Path, dockerfile: Path | None, tags: tuple[str, ...], build_args: dict[str, str],
                      target: str | None, push: bool, network: str, no_cache: bool, quiet: bool,
                      memory: str | None, cpus: float | None, creds: str | None, registry: str | None,
                      work_dir: str | None, as_json: bool) -> None:
    """A Dockerfile build into the first store, copied into the others, pushed with --push."""
    from executor.images.dockerfile import BuildOptions, RunFailed, build, copy_image, push as push_image
    from executor.images.registry import Credentials

    if push and not tags:
        raise click.UsageError("--push needs at least one --tag naming the registry (HOST:PORT/NAME:TAG)")
    if cpus is not None and cpus <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--cpus")
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch and not epoch.isdigit():
        raise click.UsageError(f"SOURCE_DATE_EPOCH={epoch!r}: seconds since 1970, a whole number")
    options = BuildOptions(context, dockerfile, list(tags), build_args, target, network, no_cache,
                           cpus, _memory_mb(memory), epoch=int(epoch) if epoch else None,
                           credentials=Credentials.parse(creds))
    view = StepView(not quiet)  # on stderr: --json keeps stdout for the document alone
    try:
        stores = _stores(work_dir, registry=registry)
        names = list(stores)
        first = stores[names[0]]
        result = build(options, first, view)
        for name in names[1:]:
            copy_image(first, stores[name], result.tags)
        pushed = push_image(first, result.tags, Credentials.parse(creds)) if push else []
    except DockyardError as error:
        output = error.output if isinstance(error, RunFailed) and (quiet or as_json) else ""
        if as_json:
            click.echo(json.dumps({"error": str(error), **({"output": error.output} if isinstance(error, RunFailed)
                                                            else {})}))
        if output:
            click.echo(output.rstrip("\n"), err=True)
        _fail(error)
    summary = {**result.to_json(), "pushed": pushed, "stores": [str(store.root) for store in stores.values()],
               **({"agents": names} if _where(names) else {})}
    if as_json:
        click.echo(json.dumps(summary))
    elif quiet:
        click.echo(result.digest)
    else:
        click.echo(f"Successfully built {result.digest} ({len(result.layers)} layers, {_human(result.size)}; "
                   f"{result.layers_written} written, {summary['seconds']}s)")
        for name in result.tags:
            if not name.startswith("sha256:"):
                click.echo(f"Successfully tagged {name}{_where(names)}")
        for item in pushed:
            click.echo(f"Pushed {item['image']} ({_human(item['bytes_sent'])} sent)")


@image.command()
@click.argument("context", metavar="DIR", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-f", "--file", "dockerfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The Dockerfile (default: DIR/Dockerfile).")
@click.option("-t", "--tag", "tags", multiple=True, help="NAME:TAG of the image (repeatable).")
@click.option("--build-arg", "build_arg", multiple=True, help="KEY=VALUE for an ARG of the Dockerfile (repeatable).")
@click.option("--target", help="Build this stage (and the stages it needs) instead of the last one.")
@click.option("--push", is_flag=True, help="Push every tag to the registry it names, after the build.")
@click.option("--network", type=click.Choice(["none", "host"]), default="none", show_default=True,
              help="The network of RUN steps: none (loopback only) or the host's.")
@click.option("--no-cache", is_flag=True, help="Run every step, whatever the cache holds.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image digest (and errors).")
@click.option("-m", "--memory", help="Memory limit of RUN steps, as Docker's -m (512m, 2g).")
@click.option("--cpus", type=float, help="CPU limit of RUN steps (e.g. 1.5).")
@click.option("--creds", help="USER:PASSWORD for the registries (base images, --push).")
@click.option("--docker-registry", "registry", envvar="DOCKYARD_DOCKER_REGISTRY",
              help="Where unqualified base image names come from, as the agent's --docker-registry.")
@click.option("--from-rootfs", "rootfs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              multiple=True, help="No Dockerfile: a directory whose tree becomes a layer (repeat for more).")
@click.option("--busybox", is_flag=True, help="No Dockerfile: start from a minimal busybox-static root "
                                              "(/bin/busybox, applet links, /etc/passwd, /tmp).")
@click.option("--cmd", help='With --busybox/--from-rootfs: Cmd, a JSON array (["sh","-c","echo hi"]) or a '
                            'command line.')
@click.option("--entrypoint", help="With --busybox/--from-rootfs: Entrypoint, a JSON array or a command line.")
@click.option("--env", "env", multiple=True, help="With --busybox/--from-rootfs: KEY=VALUE (repeatable).")
@click.option("--workdir", help="With --busybox/--from-rootfs: working directory of the image's process.")
@click.option("--label", "labels", multiple=True, help="With --busybox/--from-rootfs: KEY=VALUE label.")
@click.option("--user", help="With --busybox/--from-rootfs: user of the image's process.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="With --busybox/--from-rootfs: write a `docker save` archive (docker-archive) here.")
@click.option("--load", "load_it", is_flag=True,
              help="With --busybox/--from-rootfs: load the image into the store(s). A Dockerfile build "
                   "always does.")
@work_dir_option
@json_option
def build(context: Path | None, dockerfile: Path | None, tags: tuple[str, ...], build_arg: tuple[str, ...],
          target: str | None, push: bool, network: str, no_cache: bool, quiet: bool, memory: str | None,
          cpus: float | None, creds: str | None, registry: str | None, rootfs: tuple[Path, ...], busybox: bool,
          cmd: str | None, entrypoint: str | None, env: tuple[str, ...], workdir: str | None,
          labels: tuple[str, ...], user: str | None, output: Path | None, load_it: bool, work_dir: str | None,
          as_json: bool) -> None:
    """Build an image from DIR and its Dockerfile (docs/images.md) into the store of every agent
    (or --work-dir's), or, without DIR, from directories and busybox (--from-rootfs, --busybox)."""
    layered = {"--from-rootfs": rootfs, "--busybox": busybox, "--cmd": cmd, "--entrypoint": entrypoint,
               "--env": env, "--workdir": workdir, "--label": labels, "--user": user, "--output": output}
    if context is None:
        if not rootfs and not busybox:
            raise click.UsageError("give a build context DIR (with a Dockerfile), or --from-rootfs DIR and/or "
                                   "--busybox")
        docker_only = {"-f": dockerfile, "--build-arg": build_arg, "--target": target, "--push": push,
                       "--no-cache": no_cache, "--quiet": quiet, "--memory": memory, "--cpus": cpus}
        given = [name for name, value in docker_only.items() if value]
        if given:
            raise click.UsageError(f"{', '.join(given)}: only for a Dockerfile build (give its DIR)")
        _build_layers(tags, rootfs, busybox, cmd, entrypoint, env, workdir, labels, user, output, load_it,
                      work_dir, as_json)
        return
    given = [name for name, value in layered.items() if value]
    if given:
        raise click.UsageError(f"{', '.join(given)}: only without a build context (the Dockerfile says it)")
    _build_dockerfile(context, dockerfile, tags, _pairs(build_arg, "--build-arg"), target, push, network, no_cache,
                      quiet, memory, cpus, creds, registry, work_dir, as_json)
