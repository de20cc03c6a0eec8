"""Reading a Dockerfile into stages of instructions, with every error naming its line.

The grammar is Docker's (`frontend/dockerfile/parser/parser.go` in moby/buildkit):
parser directives (`# escape=`, `# syntax=`) at the very top; `#` comment lines,
also inside a continued instruction; a line ending in the escape character
continues on the next; an instruction is a keyword (any case) and its arguments.
RUN, CMD, ENTRYPOINT, SHELL, COPY and ADD take a JSON array (exec form) or plain
text (shell form); FROM, RUN, COPY, ADD and HEALTHCHECK take leading `--flag=value`.

Only what the builder runs is accepted (see docs/images.md); anything else is
refused here, before a step runs, with the line it is on.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from executor.images.build import BuildError

SUPPORTED = ("FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "LABEL", "EXPOSE", "CMD",
             "ENTRYPOINT", "STOPSIGNAL", "HEALTHCHECK", "SHELL")
REFUSED = {
    "VOLUME": "VOLUME is not supported: a task's volumes come from its app or job definition "
              "(container.volumes)",
    "ONBUILD": "ONBUILD is not supported: write the steps into the Dockerfile that builds on the image",
    "MAINTAINER": "MAINTAINER is not supported (deprecated by Docker): use LABEL maintainer=\"...\"",
}
FLAGS: dict[str, tuple[str, ...]] = {
    "FROM": ("platform",),
    "COPY": ("from", "chown", "chmod"),
    "ADD": ("chown", "chmod"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
    "RUN": (),
}
EXEC_FORM = ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$")
MAX_BYTES = 1 << 20


class DockerfileError(BuildError):
    """The Dockerfile cannot be built as written; the message names the file and line."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class Instruction:
    """One instruction as written: its keyword, flags, and arguments (JSON or text)."""

    path: str
    line: int
    keyword: str
    text: str  # the arguments after the keyword and flags, continuation lines joined
    flags: tuple[tuple[str, str], ...] = ()
    exec_form: tuple[str, ...] | None = None  # the JSON array, when written as one

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def flag(self, name: str) -> str | None:
        return next((value for key, value in self.flags if key == name), None)

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(self.where, f"{self.keyword}: {message}")

    def __str__(self) -> str:
        flags = "".join(f"--{key}={value} " for key, value in self.flags)
        body = json.dumps(list(self.exec_form)) if self.exec_form is not None else self.text
        return f"{self.keyword} {flags}{body}".rstrip()


@dataclass
class Stage:
    index: int
    name: str | None  # the `AS name` (lower case), if any
    base: str  # the FROM image as written (ARGs not yet substituted)
    origin: Instruction  # the FROM instruction
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or str(self.index)


@dataclass
class Dockerfile:
    path: str
    escape: str
    global_args: list[Instruction]
    stages: list[Stage]

    def stage(self, reference: str) -> Stage | None:
        """A stage by `AS` name (any case) or index; None when it names none (an image, then)."""
        wanted = reference.lower()
        for stage in self.stages:
            if stage.name == wanted:
                return stage
        if reference.isdigit() and int(reference) < len(self.stages):
            return self.stages[int(reference)]
        return None


def _logical_lines(text: str, path: str) -> tuple[str, list[tuple[int, str]]]:
    """(escape character, [(first line number, instruction text)]) with comments removed
    and continuations joined."""
    escape = "\\"
    lines = text.splitlines()
    index = 0
    directives_open = True
    seen_directives: set[str] = set()
    while index < len(lines) and directives_open:
        match = _DIRECTIVE.match(lines[index].strip()) if lines[index].strip() else None
        if match is None:
            directives_open = False
            break
        name, value = match.group(1).lower(), match.group(2)
        if name in seen_directives:
            raise DockerfileError(f"{path}:{index + 1}", f"parser directive {name} given twice")
        seen_directives.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"{path}:{index + 1}", f"escape must be \\ or ` (got {value!r})")
            escape = value
        index += 1
    logical: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number in range(index, len(lines)):
        stripped = lines[number].strip()
        if stripped.startswith("#"):
            continue  # a comment, also between the lines of one instruction
        if not current and not stripped:
            continue
        if not current:
            start = number + 1
        body = lines[number].rstrip()
        if body.endswith(escape):  # Docker's rule: a trailing escape character continues the line
            current.append(body[:-1])
            continue
        current.append(body)
        logical.append((start, "".join(current).strip()))
        current = []
    if current:
        joined = "".join(current).strip()
        if joined:
            logical.append((start, joined))
    return escape, logical


def _split_flags(keyword: str, rest: str, where: str) -> tuple[tuple[tuple[str, str], ...], str]:
    allowed = FLAGS.get(keyword)
    if allowed is None:
        return (), rest
    flags = []
    while rest.startswith("--"):
        token, _, remainder = rest.partition(" ")
        match = _FLAG.match(token)
        if match is None:
            raise DockerfileError(where, f"{keyword}: malformed flag {token!r}")
        name, value = match.group(1), match.group(2)
        if name not in allowed:
            known = ", ".join(f"--{a}" for a in allowed) or "none"
            hint = {"network": " (give `--network host` to `dockyard image build` instead)"}.get(name, "")
            raise DockerfileError(where, f"{keyword}: flag --{name} is not supported{hint}; supported: {known}")
        if value is None:
            raise DockerfileError(where, f"{keyword}: flag --{name} needs a value (--{name}=VALUE)")
        flags.append((name, value))
        rest = remainder.lstrip()
    return tuple(flags), rest


def _exec_form(text: str) -> tuple[str, ...] | None:
    """The JSON array of strings `text` is, or None (then it is shell form, as Docker reads it)."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return tuple(value)


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Every instruction, grouped by stage; raises DockerfileError naming the first bad line."""
    if len(text.encode()) > MAX_BYTES:
        raise DockerfileError(path, f"larger than {MAX_BYTES} bytes")
    escape, logical = _logical_lines(text, path)
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    names: set[str] = set()
    for line, body in logical:
        where = f"{path}:{line}"
        keyword, _, rest = body.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = f"{more} {rest}".strip()
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword in REFUSED:
            raise DockerfileError(where, REFUSED[keyword])
        if keyword not in SUPPORTED:
            raise DockerfileError(where, f"unknown instruction: {body.split()[0]} (supported: "
                                         f"{', '.join(SUPPORTED)})")
        flags, rest = _split_flags(keyword, rest, where)
        exec_form = _exec_form(rest) if keyword in EXEC_FORM else None
        instruction = Instruction(path, line, keyword, rest, flags, exec_form)
        if keyword not in ("CMD", "ENTRYPOINT", "RUN") and not rest and keyword != "HEALTHCHECK":
            raise instruction.error("needs an argument")
        if keyword == "FROM":
            stages.append(_stage(instruction, len(stages), names))
        elif not stages:
            if keyword != "ARG":
                raise DockerfileError(where, f"{keyword} before the first FROM (only ARG may come first)")
            global_args.append(instruction)
        else:
            _check(instruction)
            stages[-1].instructions.append(instruction)
    if not stages:
        raise DockerfileError(path, "no FROM instruction: a Dockerfile starts from an image or `scratch`")
    return Dockerfile(path, escape, global_args, stages)


def _stage(instruction: Instruction, index: int, names: set[str]) -> Stage:
    parts = instruction.text.split()
    name = None
    if len(parts) == 3 and parts[1].upper() == "AS":
        name = parts[2].lower()
        if not re.match(r"^[a-z][a-z0-9_.-]*$", name):
            raise instruction.error(f"invalid stage name {parts[2]!r}")
        if name in names:
            raise instruction.error(f"stage name {parts[2]!r} is used twice")
        names.add(name)
    elif len(parts) != 1:
        raise instruction.error("expected `FROM image [AS name]`")
    return Stage(index, name, parts[0], instruction)


def _check(instruction: Instruction) -> None:
    """What can be told from the instruction alone, before anything is built."""
    keyword, text = instruction.keyword, instruction.text
    if keyword in ("COPY", "ADD"):
        count = len(instruction.exec_form) if instruction.exec_form is not None else len(text.split())
        if count < 2:
            raise instruction.error("needs at least one source and a destination")
    elif keyword == "SHELL":
        if not instruction.exec_form:
            raise instruction.error('takes a JSON array, e.g. SHELL ["/bin/sh", "-c"]')
    elif keyword == "HEALTHCHECK":
        head = text.split(None, 1)[0].upper() if text else ""
        if head not in ("CMD", "NONE"):
            raise instruction.error("expected `HEALTHCHECK [OPTIONS] CMD command` or `HEALTHCHECK NONE`")
        if head == "NONE" and (instruction.flags or len(text.split()) > 1):
            raise instruction.error("NONE takes no options or arguments")
        if head == "CMD" and len(text.split(None, 1)) < 2:
            raise instruction.error("CMD needs a command")


def read(path: Path, display: str | None = None) -> Dockerfile:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"{display or path}: no such Dockerfile") from None
    except OSError as error:
        raise BuildError(f"{display or path}: {error.strerror}") from None
    if len(data) > MAX_BYTES:
        raise DockerfileError(display or str(path), f"larger than {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DockerfileError(display or str(path), "not UTF-8 text") from None
    return parse(text, display or path.name)
