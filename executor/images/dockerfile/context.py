"""The build context: the directory COPY and ADD read, less what `.dockerignore` excludes.

Nothing outside the context is ever read. A source that climbs out (`../x`), a
symlink on the way to a source, or copied as one, that points out of the context,
and files that cannot go into an image (sockets, devices, FIFOs) are refused,
naming the path.

`.dockerignore` follows Docker's rules (moby/patternmatcher): one pattern a line,
`#` comments, Go `filepath.Match` syntax plus `**` for any number of directories,
`!` re-includes; the last pattern that matches a path, or one of its parent
directories, decides.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from executor.images.build import BuildError
from executor.containers.rootfs import secure_join
from executor.images.extract import extract_layer, symlink_escapes
from framework.errors import LayerRejected

WILDCARDS = re.compile(r"[*?\[]")


class ContextError(BuildError):
    """A COPY or ADD source cannot be taken from the build context."""


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern
    depth: int
    exclusion: bool


def _translate(pattern: str) -> str:
    """A `.dockerignore` pattern as an anchored regular expression (patternmatcher's rules)."""
    out = ["^"]
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            if index + 1 < len(pattern) and pattern[index + 1] == "*":
                index += 2
                if index < len(pattern) and pattern[index] == "/":
                    index += 1
                out.append(".*" if index >= len(pattern) else "(.*/)?")
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            out.append(re.escape(pattern[index]))
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                raise ContextError(f".dockerignore: unclosed '[' in {pattern!r}")
            body = pattern[index + 1:end]
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    out.append("$")
    return "".join(out)


class Ignore:
    """The patterns of a `.dockerignore`; `excluded(path)` for a context-relative path."""

    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            cleaned = posixpath.normpath(line.lstrip("/")) if line.lstrip("/") else "."
            if cleaned == ".":
                continue
            self.patterns.append(_Pattern(re.compile(_translate(cleaned)), len(cleaned.split("/")), exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def read(cls, path: Path) -> "Ignore":
        try:
            return cls(path.read_text(errors="replace").splitlines())
        except FileNotFoundError:
            return cls([])

    def excluded(self, relative: str) -> bool:
        matched = False
        parts = relative.split("/")
        for pattern in self.patterns:
            hit = bool(pattern.regex.match(relative))
            if not hit and len(parts) > 1 and pattern.depth < len(parts):
                hit = bool(pattern.regex.match("/".join(parts[:pattern.depth])))
            if hit:
                matched = not pattern.exclusion
        return matched


@dataclass(frozen=True)
class Entry:
    """One file, directory or symlink to copy: where it lies and its name under the source."""

    host: Path
    name: str  # relative to the source ("" for the source itself)
    mode: int  # st_mode (type and permission bits)
    link: str = ""  # a symlink's target
    size: int = 0


@dataclass
class Source:
    """What one COPY/ADD source argument names: a file or a directory (its tree, less ignored)."""

    name: str  # context-relative, as resolved
    host: Path
    is_dir: bool
    entries: list[Entry] = field(default_factory=list)
    archive: bool = False  # unpacked by ADD: its entries keep the archive's owners

    @property
    def basename(self) -> str:
        return posixpath.basename(self.name) or "."


class Context:
    """A build context directory and its `.dockerignore`; or, with `image=True`, the merged root
    of a stage or image (COPY --from), where symlinks are the image's own: absolute ones resolve
    from that root, none is refused, and `..` stops at the root, as inside a container."""

    def __init__(self, root: Path, ignore: Ignore | None = None, image: bool = False) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ContextError(f"build context {root}: not a directory")
        self.image = image
        self.ignore = ignore if ignore is not None else \
            Ignore([]) if image else Ignore.read(self.root / ".dockerignore")
        self._listing: list[str] | None = None

    # -- names ----------------------------------------------------------------
    def clean(self, source: str, what: str) -> str:
        """A source argument as a context-relative path; refused when it climbs out."""
        relative = posixpath.normpath(source.lstrip("/")) if source.strip("/") else "."
        if relative == ".." or relative.startswith("../"):
            raise ContextError(f"{what}: {source} is outside the build context (sources are read from "
                               f"{self.root} only)")
        return relative

    def _check_link(self, relative: str, target: str, what: str) -> None:
        """A symlink at `relative` must point inside the context, read lexically from its directory."""
        if not self.image and (target.startswith("/") or symlink_escapes(relative, target)):
            raise ContextError(f"{what}: symlink {relative} points outside the build context ({target})")

    def resolve(self, relative: str, what: str) -> str:
        """`relative` with every symlink on the way (and at the end) followed inside the root:
        in an image as its container would (rootfs.secure_join); in a context, each link met is
        checked, so none leads out."""
        if self.image:
            found = secure_join(self.root, relative)
            return str(found.relative_to(self.root)) if found != self.root else "."
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not resolved:
                    raise ContextError(f"{what}: {relative} leads outside the build context")
                resolved.pop()
                continue
            candidate = "/".join([*resolved, part])
            if (self.root / candidate).is_symlink():
                hops += 1
                if hops > 40:
                    raise ContextError(f"{what}: too many symlinks resolving {relative}")
                target = os.readlink(self.root / candidate)
                self._check_link(candidate, target, what)
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            resolved.append(part)
        return "/".join(resolved) or "."

    def listing(self) -> list[str]:
        """Every path in the context that `.dockerignore` lets through, sorted (for wildcards)."""
        if self._listing is None:
            found = []
            for directory, subdirs, files in os.walk(self.root):
                relative_dir = os.path.relpath(directory, self.root)
                keep = []
                for name in sorted(subdirs):
                    relative = name if relative_dir == "." else f"{relative_dir}/{name}"
                    if not self.ignore.excluded(relative):
                        found.append(relative)
                    if not self.ignore.excluded(relative) or self.ignore.has_exclusions:
                        keep.append(name)
                subdirs[:] = keep
                for name in files:
                    relative = name if relative_dir == "." else f"{relative_dir}/{name}"
                    if not self.ignore.excluded(relative):
                        found.append(relative)
            self._listing = sorted(found)
        return self._listing

    # -- sources --------------------------------------------------------------
    def sources(self, arguments: list[str], what: str) -> list[Source]:
        """Each argument's source (wildcards expanded); refused if missing, ignored or unsafe."""
        found: list[Source] = []
        for argument in arguments:
            relative = self.clean(argument, what)
            if WILDCARDS.search(relative):
                regex = re.compile(_translate(relative))
                matches = [name for name in self.listing() if regex.match(name)]
                if not matches:
                    raise ContextError(f"{what}: no file in the build context matches {argument}")
                found += [self._source(name, what) for name in matches]
            else:
                found.append(self._source(relative, what, argument))
        return found

    def _source(self, relative: str, what: str, written: str | None = None) -> Source:
        shown = written or relative
        if relative != "." and self.ignore.excluded(relative):
            raise ContextError(f"{what}: {shown} is excluded by .dockerignore")
        resolved = self.resolve(relative, what)
        if resolved != "." and self.ignore.excluded(resolved):
            raise ContextError(f"{what}: {shown} is excluded by .dockerignore")
        host = self.root / resolved if resolved != "." else self.root
        try:
            info = os.lstat(host)
        except FileNotFoundError:
            where = "in the image" if self.image else f"in the build context ({self.root})"
            raise ContextError(f"{what}: {shown} not found {where}") from None
        if stat.S_ISDIR(info.st_mode):
            source = Source(resolved, host, True)
            source.entries = self._tree(resolved, host, what)
            return source
        self._check_kind(relative, info.st_mode, what)
        return Source(resolved, host, False, [Entry(host, "", info.st_mode, size=info.st_size)])

    def _check_kind(self, relative: str, mode: int, what: str) -> None:
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            kind = "a socket" if stat.S_ISSOCK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device node"
            raise ContextError(f"{what}: {relative} is {kind}, which cannot go into an image")

    def _tree(self, relative_root: str, host_root: Path, what: str) -> list[Entry]:
        entries = [Entry(host_root, "", os.lstat(host_root).st_mode)]
        excluded_dirs: list[Entry] = []  # kept only if an exception takes back something below
        for directory, subdirs, files in os.walk(host_root):
            inside = os.path.relpath(directory, host_root)
            keep = []
            for name in sorted(subdirs + files):
                under = name if inside == "." else f"{inside}/{name}"
                in_context = under if relative_root == "." else f"{relative_root}/{under}"
                if self.ignore.excluded(in_context):
                    host = Path(directory) / name
                    if name in subdirs and self.ignore.has_exclusions and not host.is_symlink():
                        keep.append(name)
                        excluded_dirs.append(Entry(host, under, os.lstat(host).st_mode))
                    continue
                host = Path(directory) / name
                info = os.lstat(host)
                self._check_kind(in_context, info.st_mode, what)
                link = ""
                if stat.S_ISLNK(info.st_mode):
                    link = os.readlink(host)
                    self._check_link(in_context, link, what)
                elif name in subdirs:
                    keep.append(name)
                entries.append(Entry(host, under, info.st_mode, link, info.st_size))
            subdirs[:] = [name for name in sorted(subdirs) if name in keep]
        names = {entry.name for entry in entries}
        entries += [d for d in excluded_dirs if any(n.startswith(d.name + "/") for n in names)]
        entries.sort(key=lambda entry: entry.name)
        return entries


def digest(sources: list[Source]) -> str:
    """The content digest of what a COPY takes: names, types, permission bits, contents and
    link targets; not times nor owners (COPY sets those)."""
    hasher = hashlib.sha256()
    for source in sources:
        hasher.update(f"source {source.basename} {'dir' if source.is_dir else 'file'}\n".encode())
        for entry in source.entries:
            kind = "l" if stat.S_ISLNK(entry.mode) else "d" if stat.S_ISDIR(entry.mode) else "f"
            hasher.update(f"{kind} {entry.name!r} {stat.S_IMODE(entry.mode):o} {entry.link!r} ".encode())
            if kind == "f":
                hasher.update(file_digest(entry.host).encode())
            hasher.update(b"\n")
    return "sha256:" + hasher.hexdigest()


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def is_archive(path: Path) -> bool:
    """A tar archive (plain, gzip, bzip2 or xz) that ADD unpacks; anything else ADD copies."""
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def unpack_archive(source: Source, into: Path, what: str) -> Source:
    """ADD's local archive, unpacked under the rules for hostile layers (executor/images/extract.py):
    no entry leaves `into`, no device nodes, no links out. Owners are the archive's."""
    try:
        with open(source.host, "rb") as handle:
            extract_layer(handle, into)
    except LayerRejected as error:
        raise ContextError(f"{what}: archive {source.name} refused: entry {error.entry!r}: {error.why}") from None
    for directory, _subdirs, files in os.walk(into):
        for name in files:
            mode = os.lstat(os.path.join(directory, name)).st_mode
            if stat.S_ISCHR(mode):
                raise ContextError(f"{what}: archive {source.name} refused: it holds whiteout entries "
                                   f"(.wh.{name}), which only image layers may")
    unpacked = Context(into, Ignore([]), image=True)
    result = Source(source.name, into, True, archive=True)
    result.entries = unpacked._tree(".", unpacked.root, what)
    return result
