"""From a Dockerfile and a context directory to an OCI image in the image store.

    result = build(BuildOptions(Path("app"), tags=["web:1"]), ImageStore(work_dir), progress)

Two passes over the stages the target needs. The first changes nothing but
reads everything a step will need that can be read before it runs: base images
(pulled when missing), ARG and ENV values, and every COPY/ADD source from the
context, hashed (an ADD archive is also unpacked, under the hostile-layer
rules). A Dockerfile that cannot be built (unknown instruction, missing or
unsafe source, hostile archive) fails there and leaves the store as it was. The
second pass runs the steps: each RUN, COPY, ADD (and WORKDIR that has to make
its directory) is looked up in the cache (cache.py) and, on a miss, done on an
overlay of the layers so far (workspace.py); what it changed becomes a layer
(layers.py). Config instructions only change the image config. The image is
stored and tagged only once every step has succeeded.

Everything that makes an image is fixed by its input: layer entries sorted,
times set to one value (SOURCE_DATE_EPOCH's when given), the config's times too;
an unchanged rebuild ends with the same manifest digest and writes no layer.
"""
from __future__ import annotations

import copy
import json
import posixpath
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from executor.containers.rootfs import secure_join
from executor.images import reference as references
from executor.images.build import FIXED_MTIME, OCI_CONFIG, OCI_MANIFEST, BuildError
from executor.images.dockerfile import parse as parsing
from executor.images.dockerfile import words
from executor.images.dockerfile.cache import SCRATCH, Cache, chain_id, step_key
from executor.images.dockerfile.context import Context, Source, digest, is_archive, unpack_archive
from executor.images.dockerfile.layers import LAYER_GZIP, Layer, Ownership, commit, copy_into, make_dirs
from executor.images.dockerfile.workspace import Workspace
from executor.images.registry import Credentials
from executor.images.store import REF_ANNOTATION, Image, ImageStore, host_platform
from framework import cgroups
from framework.errors import ContainerError, LayerRejected

Progress = Callable[[dict], None]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
OCI_MEDIA = {  # a base image's layers keep their bytes; the manifest names them in OCI's words
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}


@dataclass
class BuildOptions:
    context: Path
    dockerfile: Path | None = None  # default: Dockerfile in the context
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    network: str = "none"  # "none" or "host", for RUN
    no_cache: bool = False
    cpus: float | None = None
    memory_mb: float | None = None
    pids: int = 4096
    runtime: str = "runc"
    epoch: int | None = None  # SOURCE_DATE_EPOCH: the time written into layers and config
    credentials: Credentials | None = None  # for pulling base images


@dataclass
class StepReport:
    number: int
    stage: str
    instruction: str
    cached: bool = False
    layer: str | None = None  # the digest of the layer it made (or found in the cache)
    size: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"step": self.number, "stage": self.stage, "instruction": self.instruction,
                "cached": self.cached, "layer": self.layer, "size": self.size, "seconds": round(self.seconds, 3)}


@dataclass
class BuildResult:
    digest: str  # of the manifest
    config_digest: str
    tags: list[str]  # the references stored (normalised), or the digest when untagged
    layers: list[Layer]
    steps: list[StepReport]
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def layers_written(self) -> int:
        return sum(1 for step in self.steps if step.layer and not step.cached)

    @property
    def reference(self) -> str:
        """The first tag pinned to the digest (`name:tag@sha256:...`), what a deploy should name."""
        return f"{self.tags[0]}@{self.digest}" if self.tags and not self.tags[0].startswith("sha256:") \
            else self.digest

    def to_json(self) -> dict:
        return {"image": self.tags[0] if self.tags else self.digest, "digest": self.digest,
                "reference": self.reference, "tags": self.tags, "layers": len(self.layers), "size": self.size,
                "layers_written": self.layers_written, "steps": [s.to_json() for s in self.steps],
                "seconds": round(self.seconds, 3)}


class RunFailed(BuildError):
    """A RUN step's command failed; `output` holds the end of what it printed."""

    def __init__(self, where: str, command: str, status: int, output: str, oom: bool, start_error: str,
                 memory_mb: float | None) -> None:
        if start_error and status != 0 and "exec" in start_error:
            why = f"could not start: {start_error}"
        elif oom:
            why = f"killed: out of memory (the build's limit is {memory_mb:g} MB)" if memory_mb else \
                "killed: out of memory"
        elif status > 128 and status - 128 < signal.NSIG:
            why = f"killed by {signal.Signals(status - 128).name}" if status - 128 in \
                {s.value for s in signal.Signals} else f"exit status {status}"
        else:
            why = f"exit status {status}"
        super().__init__(f"{where}: RUN {command} failed: {why}")
        self.status = status
        self.output = output


@dataclass
class StageState:
    """A stage as built so far: its layers, image config and history, and the ARGs in scope."""

    layers: list[Layer] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    args: dict[str, str | None] = field(default_factory=dict)
    cmd_inherited: bool = False
    chain: str = SCRATCH

    def env(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.config.get("Env") or [])

    def set_env(self, key: str, value: str) -> None:
        items = list(self.config.get("Env") or [])
        for index, item in enumerate(items):
            if item.partition("=")[0] == key:
                items[index] = f"{key}={value}"
                break
        else:
            items.append(f"{key}={value}")
        self.config["Env"] = items

    def vars(self) -> dict[str, str]:
        """What `$NAME` means in this stage: its ARGs, with ENV winning over an ARG of the same name."""
        return {**{k: v for k, v in self.args.items() if v is not None}, **self.env()}

    def image(self) -> Image:
        """The stage as the store sees an image (its labels decide how layers are unpacked)."""
        return Image("build", "", {}, {"config": {"Labels": dict(self.config.get("Labels") or {})}}, 0)


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def automatic_args() -> dict[str, str]:
    """BuildKit's platform ARGs, defined without being given (the build runs for this host)."""
    os_name, arch = host_platform()
    values = {}
    for prefix in ("TARGET", "BUILD"):
        values.update({f"{prefix}PLATFORM": f"{os_name}/{arch}", f"{prefix}OS": os_name,
                       f"{prefix}ARCH": arch, f"{prefix}VARIANT": ""})
    return values


def duration_ns(text: str, what: str) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`), as HEALTHCHECK's options take it, in nanoseconds."""
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise BuildError(f"{what}: {text!r} is not a duration (e.g. 30s, 1m30s, 500ms)")
    return int(total)


class Builder:
    def __init__(self, options: BuildOptions, store: ImageStore, progress: Progress | None = None) -> None:
        self.options = options
        self.store = store
        self.emit = progress or (lambda event: None)
        path = options.dockerfile or Path(options.context) / "Dockerfile"
        shown = str(options.dockerfile) if options.dockerfile else "Dockerfile"
        self.dockerfile = parsing.read(Path(path), shown)
        self.escape = self.dockerfile.escape
        self.context = Context(Path(options.context))
        self.cache = Cache(store.root, enabled=not options.no_cache)
        self.epoch = options.epoch if options.epoch is not None else FIXED_MTIME
        self.created = _iso(self.epoch)
        self.states: dict[int, StageState] = {}
        self.images: dict[str, Image] = {}
        self.prepared: dict[int, tuple[list[Source], str]] = {}
        self.views: dict[str, Context] = {}
        self.used_args: set[str] = set()
        self.reports: list[StepReport] = []
        self.dry = True
        self.number = 0
        self.total = 0
        self.workspace: Workspace | None = None
        self.global_values = self._global_args()

    # -- arguments ----------------------------------------------------------------
    def _global_args(self) -> dict[str, str | None]:
        values: dict[str, str | None] = {}
        for instruction in self.dockerfile.global_args:
            known = {**automatic_args(), **{k: v for k, v in values.items() if v is not None}}
            for name, default in self._declared(instruction, known):
                values[name] = self._arg_value(name, default, None)
        return values

    def _declared(self, instruction: parsing.Instruction, known: dict[str, str]) -> list[tuple[str, str | None]]:
        declared = []
        for piece in words.raw_words(instruction.text, self.escape):
            name, sep, default = piece.partition("=")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise instruction.error(f"invalid argument name {name!r}")
            declared.append((name, words.word(default, known, self.escape) if sep else None))
        return declared

    def _arg_value(self, name: str, default: str | None, inherited: str | None) -> str | None:
        if name in self.options.build_args:
            self.used_args.add(name)
            return self.options.build_args[name]
        if default is not None:
            return default
        if inherited is not None:
            return inherited
        return automatic_args().get(name)

    def _global_vars(self) -> dict[str, str]:
        return {**automatic_args(), **{k: v for k, v in self.global_values.items() if v is not None}}

    # -- stages -------------------------------------------------------------------
    def _base_name(self, stage: parsing.Stage) -> str:
        try:
            return words.word(stage.base, self._global_vars(), self.escape)
        except words.WordError as error:
            raise stage.origin.error(str(error)) from None

    def _stage_of_base(self, stage: parsing.Stage) -> parsing.Stage | None:
        """The earlier stage a FROM names; None for an image (`FROM alpine AS alpine` is the image)."""
        base = self._base_name(stage).lower()
        return next((s for s in self.dockerfile.stages[:stage.index] if s.name == base), None)

    def needed(self) -> list[parsing.Stage]:
        """The target stage and those it builds on or copies from, in Dockerfile order."""
        target = self.dockerfile.stages[-1]
        if self.options.target:
            found = next((s for s in self.dockerfile.stages if s.name == self.options.target.lower()), None)
            if found is None:
                names = ", ".join(s.name for s in self.dockerfile.stages if s.name) or "none"
                raise BuildError(f"target stage {self.options.target!r} is not in {self.dockerfile.path} "
                                 f"(named stages: {names})")
            target = found
        wanted = {target.index}
        todo = [target]
        while todo:
            stage = todo.pop()
            deps = []
            base = self._stage_of_base(stage)
            if base is not None:
                deps.append(base)
            for instruction in stage.instructions:
                reference = instruction.flag("from") if instruction.keyword == "COPY" else None
                if reference is None:
                    continue
                try:
                    reference = words.word(reference, self._global_vars(), self.escape)
                except words.WordError as error:
                    raise instruction.error(str(error)) from None
                source = self.dockerfile.stage(reference)
                if source is not None:
                    if source.index >= stage.index:
                        raise instruction.error(f"--from={reference} names this stage or a later one")
                    deps.append(source)
            for dep in deps:
                if dep.index not in wanted:
                    wanted.add(dep.index)
                    todo.append(dep)
        return [stage for stage in self.dockerfile.stages if stage.index in wanted]

    def build(self) -> BuildResult:
        started = time.monotonic()
        tags = [str(references.parse(tag)) for tag in self.options.tags]
        stages = self.needed()
        self.total = sum(1 + len(stage.instructions) for stage in stages)
        limits = cgroups.Limits(self.options.cpus, self.options.memory_mb, self.options.pids)
        self.workspace = Workspace(self.store.work_dir, limits, self.options.runtime, self.options.network)
        try:
            for stage in stages:  # the first pass: read and check, change no store
                self._stage(stage)
            unused = sorted(set(self.options.build_args) - self.used_args)
            if unused:
                self.emit({"event": "warning", "message": f"build argument(s) {', '.join(unused)} not used by "
                                                          f"{self.dockerfile.path}"})
            self.dry, self.states, self.number = False, {}, 0
            for stage in stages:
                self._stage(stage)
            result = self._finish(self.states[stages[-1].index], tags)
        finally:
            self.workspace.close()
        result.seconds = time.monotonic() - started
        self.emit({"event": "built", "digest": result.digest, "tags": result.tags,
                   "layers_written": result.layers_written})
        return result

    def _stage(self, stage: parsing.Stage) -> None:
        self._begin(stage, stage.origin)
        state = self._from(stage)
        self._end()
        for instruction in stage.instructions:
            self._begin(stage, instruction)
            try:
                getattr(self, "_" + instruction.keyword.lower())(state, instruction)
            except words.WordError as error:
                raise instruction.error(str(error)) from None
            self._end()
        self.states[stage.index] = state

    def _begin(self, stage: parsing.Stage, instruction: parsing.Instruction) -> None:
        self.number += 1
        if self.dry:
            return
        report = StepReport(self.number, stage.label, str(instruction))
        report.seconds = time.monotonic()
        self.reports.append(report)
        self.emit({"event": "step", "step": self.number, "total": self.total, "stage": stage.label,
                   "instruction": str(instruction), "line": instruction.line})

    def _end(self) -> None:
        if not self.dry:
            self.reports[-1].seconds = time.monotonic() - self.reports[-1].seconds

    # -- FROM ---------------------------------------------------------------------
    def _image(self, name: str) -> Image:
        if name not in self.images:
            if self.store.resolve(name) is None:
                self.emit({"event": "pull", "image": name})
                self.store.pull(name, progress=lambda event: self.emit({"event": "pull", **event}),
                                credentials=self.options.credentials)
            image = self.store.image(name)
            self.images[name] = image
        return self.images[name]

    def _from(self, stage: parsing.Stage) -> StageState:
        instruction = stage.origin
        platform = instruction.flag("platform")
        if platform is not None:
            wanted = words.word(platform, self._global_vars(), self.escape)
            if wanted != automatic_args()["TARGETPLATFORM"]:
                raise instruction.error(f"--platform={wanted}: this builder builds for "
                                        f"{automatic_args()['TARGETPLATFORM']} only")
        base_stage = self._stage_of_base(stage)
        name = self._base_name(stage)
        if base_stage is not None:
            state = copy.deepcopy(self.states[base_stage.index])
            state.args = {}
        elif name.lower() == "scratch":
            state = StageState()
        else:
            state = self._from_image(self._image(name), instruction)
        state.cmd_inherited = bool(state.config.get("Cmd"))
        if "PATH" not in state.env():
            state.config["Env"] = [f"PATH={DEFAULT_PATH}", *(state.config.get("Env") or [])]
        return state

    def _from_image(self, image: Image, instruction: parsing.Instruction) -> StageState:
        diff_ids = (image.config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(image.layers):
            raise instruction.error(f"{image.name}: its config lists {len(diff_ids)} diff ids for "
                                    f"{len(image.layers)} layers")
        state = StageState(config=copy.deepcopy(image.config.get("config") or {}))
        for descriptor, diff_id in zip(image.layers, diff_ids):
            media = descriptor.get("mediaType", LAYER_GZIP)
            layer = Layer(descriptor["digest"], diff_id, int(descriptor.get("size", 0)), OCI_MEDIA.get(media, media))
            state.layers.append(layer)
            state.chain = chain_id(state.chain, diff_id)
        history = [dict(entry) for entry in image.config.get("history") or []]
        if sum(1 for entry in history if not entry.get("empty_layer")) != len(state.layers):
            history = [{"created": self.created, "created_by": f"layer {n + 1} of {image.name}"}
                       for n in range(len(state.layers))]
        state.history = history
        if state.config.get("OnBuild") and not self.dry:
            self.emit({"event": "warning", "message": f"{image.name} has ONBUILD triggers; they are not run"})
        state.config.pop("OnBuild", None)
        return state

    # -- steps that make layers ----------------------------------------------------
    def _history(self, state: StageState, instruction: parsing.Instruction, layer: Layer | None) -> None:
        entry = {"created": self.created, "created_by": str(instruction), "comment": "dockyard image build"}
        if layer is None:
            entry["empty_layer"] = True
        else:
            state.layers.append(layer)
            state.chain = chain_id(state.chain, layer.diff_id)
        state.history.append(entry)

    def _unpacked(self, state: StageState, layers: list[Layer] | None = None) -> list[Path]:
        """The store's unpacked directories of `layers` (the stage's), protected while the build runs."""
        assert self.workspace is not None
        image = state.image()
        layers = state.layers if layers is None else layers
        self.workspace.protect([image.layer_key(layer.descriptor()) for layer in layers])
        return [self.store.unpack(image, layer.descriptor()) for layer in layers]

    def _layer_step(self, state: StageState, instruction: parsing.Instruction, step: dict,
                    action: Callable[[Path], None], for_run: bool = False) -> None:
        assert self.workspace is not None
        key = step_key(state.chain, step)
        report = self.reports[-1]
        hit, layer = self.cache.get(key, self.store.has_blob)
        if hit:
            report.cached = True
            self.emit({"event": "cached", "step": report.number, "layer": layer.digest if layer else None})
        else:
            lowers = self._unpacked(state)
            with self.workspace.step(lowers, for_run) as (rootfs, _upper):
                action(rootfs)
            layer, new = commit(self.workspace.dir / "upper", self.store, self.epoch)
            self.workspace.reset()
            if layer is not None:
                self._check(state, layer, instruction, forget=new)
            self.cache.put(key, layer, str(instruction))
        if layer is not None:
            report.layer, report.size = layer.digest, layer.size
        self.emit({"event": "layer" if layer else "empty", "step": report.number, "cached": hit,
                   "digest": layer.digest if layer else None, "size": layer.size if layer else 0})
        self._history(state, instruction, layer)

    def _check(self, state: StageState, layer: Layer, instruction: parsing.Instruction, forget: bool) -> None:
        """Unpack the new layer as a pulled one would be: what the extraction rules refuse, the
        build refuses (and forgets the blob, when `forget`: it made it)."""
        assert self.workspace is not None
        image = state.image()
        self.workspace.protect([image.layer_key(layer.descriptor())])
        try:
            self.store.unpack(image, layer.descriptor())
        except LayerRejected as error:
            if forget:
                self.store.blob_path(layer.digest).unlink(missing_ok=True)
            raise instruction.error(f"what it made cannot go into an image: {error}") from None

    def _run(self, state: StageState, instruction: parsing.Instruction) -> None:
        if instruction.exec_form is not None:
            argv = list(instruction.exec_form)
            command = json.dumps(argv)
        else:
            argv = [*(state.config.get("Shell") or DEFAULT_SHELL), instruction.text]
            command = instruction.text
        if not argv or not instruction.text:
            raise instruction.error("needs a command")
        env = list(state.config.get("Env") or [])
        defined = state.env()
        env += [f"{k}={v}" for k, v in state.args.items() if v is not None and k not in defined]
        user = state.config.get("User") or ""
        cwd = state.config.get("WorkingDir") or "/"
        step = {"op": "RUN", "argv": argv, "env": env, "user": user, "workdir": cwd,
                "network": self.options.network}
        if self.dry:
            return

        def run(rootfs: Path) -> None:
            assert self.workspace is not None
            try:
                result = self.workspace.run(rootfs, self.workspace.dir / "upper", argv, env, cwd, user,
                                            lambda line: self.emit({"event": "output", "line": line}))
            except ContainerError as error:  # the image's user, the runtime itself
                raise instruction.error(str(error)) from None
            if result.status != 0:
                raise RunFailed(instruction.where, command, result.status, result.output, result.oom,
                                result.start_error, self.options.memory_mb)

        self._layer_step(state, instruction, step, run, for_run=True)

    def _copy(self, state: StageState, instruction: parsing.Instruction, add: bool = False) -> None:
        variables = state.vars()
        pieces = list(instruction.exec_form) if instruction.exec_form is not None else \
            words.raw_words(instruction.text, self.escape)
        arguments = [words.word(piece, variables, self.escape) for piece in pieces]
        sources, dest = arguments[:-1], arguments[-1]
        workdir = state.config.get("WorkingDir") or "/"
        into_dir = dest.endswith("/") or posixpath.basename(dest) in (".", "..")
        dest = posixpath.normpath(posixpath.join(workdir, dest))
        dest += "/" if into_dir and dest != "/" else ""
        chown = instruction.flag("chown")
        chown = words.word(chown, variables, self.escape) if chown else None
        chmod_text = instruction.flag("chmod")
        chmod = None
        if chmod_text is not None:
            if not re.match(r"^[0-7]{3,4}$", chmod_text):
                raise instruction.error(f"--chmod={chmod_text}: expected octal permission bits, e.g. 0755")
            chmod = int(chmod_text, 8)
        what = f"{instruction.where}: {instruction.keyword}"
        step = {"op": instruction.keyword, "dest": dest, "chown": chown, "chmod": chmod}
        from_ = instruction.flag("from")
        if from_ is not None:
            if self.dry:
                return
            view, chain = self._view(words.word(from_, variables, self.escape), instruction)
            step.update({"from": chain, "sources": sources})
            found: list[Source] = []

            def copy_from(rootfs: Path) -> None:
                found[:] = view.sources(sources, what)
                self._check_many(found, dest, instruction)
                copy_into(rootfs, found, dest, self._owner(chown, rootfs, instruction), chmod)

            self._layer_step(state, instruction, step, copy_from)
            return
        prepared = self._prepare_sources(state, instruction, sources, add, what)
        self._check_many(prepared[0], dest, instruction)
        step.update({"digest": prepared[1], "count": len(prepared[0])})
        if self.dry:
            return
        self._layer_step(state, instruction, step, lambda rootfs: copy_into(
            rootfs, prepared[0], dest, self._owner(chown, rootfs, instruction), chmod))

    def _add(self, state: StageState, instruction: parsing.Instruction) -> None:
        self._copy(state, instruction, add=True)

    @staticmethod
    def _check_many(sources: list[Source], dest: str, instruction: parsing.Instruction) -> None:
        if len(sources) > 1 and not dest.endswith("/"):
            raise instruction.error(f"with more than one source the destination must be a directory "
                                    f"ending in / (got {dest})")

    def _prepare_sources(self, state: StageState, instruction: parsing.Instruction, sources: list[str],
                         add: bool, what: str) -> tuple[list[Source], str]:
        """The context's sources of a COPY/ADD and their content digest, read once (first pass);
        ADD's archives unpacked (and checked) here too."""
        key = instruction.line
        if key in self.prepared:
            return self.prepared[key]
        if add:
            for source in sources:
                if _URL.match(source):
                    raise instruction.error(f"{source}: URLs are refused, a build must not depend on the "
                                            f"network; download the file into the build context and ADD or "
                                            f"COPY it from there")
        found = self.context.sources(sources, what)
        content = digest(found)
        if add:
            unpacked = []
            for source in found:
                if not source.is_dir and is_archive(source.host):
                    assert self.workspace is not None
                    into = self.workspace.dir / "archives" / f"{instruction.line}-{len(unpacked)}"
                    into.mkdir(parents=True)
                    unpacked.append(unpack_archive(source, into, what))
                else:
                    unpacked.append(source)
            found = unpacked
        self.prepared[key] = (found, content)
        return self.prepared[key]

    def _view(self, reference: str, instruction: parsing.Instruction) -> tuple[Context, str]:
        """The merged root of a stage (by name or index) or an image, to COPY from; its chain id."""
        assert self.workspace is not None
        stage = self.dockerfile.stage(reference)
        if stage is not None:
            if stage.index not in self.states:
                raise instruction.error(f"--from={reference}: that stage is not built before this one")
            state = self.states[stage.index]
        else:
            state = self._from_image(self._image(reference), instruction)
        if state.chain not in self.views:
            root = self.workspace.view(self._unpacked(state))
            self.views[state.chain] = Context(root, image=True)
        return self.views[state.chain], state.chain

    def _owner(self, chown: str | None, rootfs: Path, instruction: parsing.Instruction) -> Ownership:
        """`--chown=user[:group]`, names read from the image's /etc/passwd and /etc/group; a user
        alone means that number as the group too, as Docker reads it."""
        if not chown:
            return Ownership()
        user, _, group = chown.partition(":")

        def lookup(name: str, table: str) -> int:
            if name.isdigit():
                return int(name)
            try:
                lines = secure_join(rootfs, f"/etc/{table}").read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            for line in lines:
                parts = line.split(":")
                if len(parts) > 2 and parts[0] == name and parts[2].isdigit():
                    return int(parts[2])
            raise instruction.error(f"--chown={chown}: {name!r} is not in the image's /etc/{table}")

        uid = lookup(user, "passwd")
        return Ownership(uid, lookup(group, "group") if group else uid)

    def _workdir(self, state: StageState, instruction: parsing.Instruction) -> None:
        path = words.word(instruction.text, state.vars(), self.escape)
        current = state.config.get("WorkingDir") or "/"
        absolute = posixpath.normpath(posixpath.join(current, path))
        state.config["WorkingDir"] = absolute
        if self.dry:
            return

        def make(rootfs: Path) -> None:
            if not secure_join(rootfs, absolute).is_dir():
                make_dirs(rootfs, absolute, Ownership())

        self._layer_step(state, instruction, {"op": "WORKDIR", "path": absolute}, make)

    # -- config instructions ---------------------------------------------------------
    def _config_step(self, state: StageState, instruction: parsing.Instruction) -> None:
        if not self.dry:
            self._history(state, instruction, None)

    def _env(self, state: StageState, instruction: parsing.Instruction) -> None:
        for key, value in words.pairs(instruction.text, state.vars(), self.escape, "ENV"):
            state.set_env(key, value)
        self._config_step(state, instruction)

    def _arg(self, state: StageState, instruction: parsing.Instruction) -> None:
        for name, default in self._declared(instruction, state.vars()):
            state.args[name] = self._arg_value(name, default, self.global_values.get(name))
        self._config_step(state, instruction)

    def _label(self, state: StageState, instruction: parsing.Instruction) -> None:
        labels = dict(state.config.get("Labels") or {})
        for key, value in words.pairs(instruction.text, state.vars(), self.escape, "LABEL", legacy=False):
            labels[key] = value
        state.config["Labels"] = labels
        self._config_step(state, instruction)

    def _expose(self, state: StageState, instruction: parsing.Instruction) -> None:
        ports = dict(state.config.get("ExposedPorts") or {})
        for item in words.words(instruction.text, state.vars(), self.escape):
            number, _, protocol = item.partition("/")
            protocol = (protocol or "tcp").lower()
            first, _, last = number.partition("-")
            if protocol not in ("tcp", "udp", "sctp") or not first.isdigit() or (last and not last.isdigit()):
                raise instruction.error(f"{item!r} is not PORT[/tcp|udp|sctp] or a range FIRST-LAST")
            low, high = int(first), int(last or first)
            if not 0 < low <= high <= 65535:
                raise instruction.error(f"{item!r}: ports are 1-65535")
            if high - low > 1024:
                raise instruction.error(f"{item!r}: a range of at most 1024 ports")
            for port in range(low, high + 1):
                ports[f"{port}/{protocol}"] = {}
        state.config["ExposedPorts"] = ports
        self._config_step(state, instruction)

    def _command(self, state: StageState, instruction: parsing.Instruction) -> list[str]:
        if instruction.exec_form is not None:
            return list(instruction.exec_form)
        if not instruction.text:
            return []
        return [*(state.config.get("Shell") or DEFAULT_SHELL), instruction.text]

    def _cmd(self, state: StageState, instruction: parsing.Instruction) -> None:
        state.config["Cmd"] = self._command(state, instruction)
        state.cmd_inherited = False
        self._config_step(state, instruction)

    def _entrypoint(self, state: StageState, instruction: parsing.Instruction) -> None:
        state.config["Entrypoint"] = self._command(state, instruction)
        if state.cmd_inherited:  # Docker: an ENTRYPOINT drops the CMD that came from the base image
            state.config.pop("Cmd", None)
            state.cmd_inherited = False
        self._config_step(state, instruction)

    def _user(self, state: StageState, instruction: parsing.Instruction) -> None:
        state.config["User"] = words.word(instruction.text, state.vars(), self.escape)
        self._config_step(state, instruction)

    def _stopsignal(self, state: StageState, instruction: parsing.Instruction) -> None:
        value = words.word(instruction.text, state.vars(), self.escape)
        name = value.upper()
        known = {s.name for s in signal.Signals}
        if not (value.isdigit() and 0 < int(value) < signal.NSIG) and name not in known \
                and f"SIG{name}" not in known:
            raise instruction.error(f"{value!r} is not a signal (a name like SIGTERM, or a number)")
        state.config["StopSignal"] = value
        self._config_step(state, instruction)

    def _shell(self, state: StageState, instruction: parsing.Instruction) -> None:
        state.config["Shell"] = list(instruction.exec_form or ())
        self._config_step(state, instruction)

    def _healthcheck(self, state: StageState, instruction: parsing.Instruction) -> None:
        head, _, rest = instruction.text.partition(" ")
        if head.upper() == "NONE":
            state.config["Healthcheck"] = {"Test": ["NONE"]}
            self._config_step(state, instruction)
            return
        rest = rest.strip()
        exec_form = parsing._exec_form(rest)
        test = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest]
        check: dict = {"Test": test}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                          ("start-interval", "StartInterval")):
            value = instruction.flag(flag)
            if value is not None:
                check[key] = duration_ns(value, f"{instruction.where}: HEALTHCHECK --{flag}")
        retries = instruction.flag("retries")
        if retries is not None:
            if not retries.isdigit() or int(retries) < 1:
                raise instruction.error(f"--retries={retries}: a whole number of at least 1")
            check["Retries"] = int(retries)
        state.config["Healthcheck"] = check
        self._config_step(state, instruction)

    # -- the image --------------------------------------------------------------------
    def _finish(self, state: StageState, tags: list[str]) -> BuildResult:
        os_name, arch = host_platform()
        settings = {key: value for key, value in state.config.items() if value not in (None, [], {}) or
                    key in ("Cmd", "Entrypoint") and value == []}
        config = {"created": self.created, "architecture": arch, "os": os_name, "config": settings,
                  "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in state.layers]},
                  "history": state.history}
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        config_digest = self.store.put_blob(config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                    "layers": [layer.descriptor() for layer in state.layers]}
        manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        manifest_digest = self.store.put_blob(manifest_bytes)
        names = tags or [manifest_digest]
        for name in names:
            entry = self.store.resolve(name)
            if entry is not None and entry["digest"] == manifest_digest and \
                    (entry.get("annotations") or {}).get(REF_ANNOTATION) == name:
                self.store.touch(manifest_digest)
            else:
                self.store._tag(name, manifest_digest, OCI_MANIFEST, len(manifest_bytes))
            self.emit({"event": "tagged", "image": name, "digest": manifest_digest})
        return BuildResult(manifest_digest, config_digest, names, list(state.layers), self.reports)


def build(options: BuildOptions, store: ImageStore, progress: Progress | None = None) -> BuildResult:
    """Build `options.context` with its Dockerfile into `store`; see the module docstring."""
    return Builder(options, store, progress).build()
