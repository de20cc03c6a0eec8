"""Safe layer extraction: a layer tarball is hostile until every entry is checked.

Rules (a refused entry raises `LayerRejected(entry, why)` and the partial
directory is removed by the caller):

- Names are archive-relative: an absolute name or any `..` component is refused.
- No entry is written through a symlink: if any parent directory of an entry is
  a symlink in the layer being extracted, the entry is refused.
- Symlinks may point anywhere *inside* the image. An absolute target is resolved
  from the image root (as the container sees it, e.g. `/bin/sh -> /bin/busybox`);
  a relative target is resolved from the link's directory. A target that climbs
  above the root (`../../etc/passwd` from `/a`) is refused: it points out.
- Hard links must name an entry already extracted from the same layer, by a clean
  relative name; the target may not be a directory nor sit under a symlink.
- Character and block devices are refused (overlay whiteouts are created by us,
  never taken from the tar). FIFOs are allowed.
- setuid/setgid bits are dropped unless the caller passes `keep_setid=True`, which
  the store does only when the image config carries the label
  `org.dockyard.allow-setid=true`. The file itself is kept.
- Extended attributes in the tar are ignored (no `trusted.overlay.*` from outside).
- OCI whiteouts: `.wh.NAME` becomes an overlay whiteout (char device 0/0) named
  NAME; `.wh..wh..opq` marks its directory opaque (`trusted.overlay.opaque=y`).

Standard library only.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO

from framework.errors import LayerRejected

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
SETID = stat.S_ISUID | stat.S_ISGID
_CHUNK = 1 << 20


def clean_name(name: str) -> str:
    """The entry's archive name as a clean relative path, or LayerRejected."""
    if name.startswith("/"):
        raise LayerRejected(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise LayerRejected(name, "path contains '..'")
    if "\x00" in name:
        raise LayerRejected(name, "NUL in name")
    return "/".join(parts)


def symlink_escapes(entry: str, target: str) -> bool:
    """True when `target`, resolved lexically inside the image root, climbs out of it."""
    if target.startswith("/"):
        base: list[str] = []
        path = target
    else:
        base = entry.split("/")[:-1]
        path = target
    stack = list(base)
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
        else:
            stack.append(part)
    return False


class Extractor:
    """Unpack one layer into `dest` (a fresh directory), applying the rules above."""

    def __init__(self, dest: Path, keep_setid: bool = False) -> None:
        self.dest = Path(dest)
        self.keep_setid = keep_setid
        self._dir_times: list[tuple[Path, int]] = []

    def _check_parents(self, name: str, raw: str) -> Path:
        """The host path for `name`, after making sure no parent is a symlink or non-dir."""
        current = self.dest
        parts = name.split("/")
        for part in parts[:-1]:
            current = current / part
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o755)
                continue
            if stat.S_ISLNK(info.st_mode):
                raise LayerRejected(raw, "parent directory is a symlink")
            if not stat.S_ISDIR(info.st_mode):
                raise LayerRejected(raw, "parent is not a directory")
        return current / parts[-1]

    @staticmethod
    def _clear(path: Path, keep_dir: bool = False) -> None:
        """Remove what an earlier entry put at `path` (later entries win)."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            if keep_dir:
                return
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def extract(self, fileobj: IO[bytes]) -> int:
        """Unpack a (possibly compressed) tar stream; returns the number of entries."""
        count = 0
        try:
            archive = tarfile.open(fileobj=fileobj, mode="r|*")
        except tarfile.TarError as error:
            raise LayerRejected("<archive>", f"not a tar archive: {error}") from error
        with archive:
            try:
                for member in archive:
                    self._entry(archive, member)
                    count += 1
            except tarfile.TarError as error:
                raise LayerRejected("<archive>", f"corrupt tar: {error}") from error
        for path, mtime in reversed(self._dir_times):
            try:
                os.utime(path, (mtime, mtime), follow_symlinks=False)
            except OSError:
                pass
        return count

    def _entry(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        raw = member.name
        name = clean_name(raw)
        if not name:
            if member.isdir():
                return  # the root itself ("./")
            raise LayerRejected(raw, "empty name")
        base = posixpath.basename(name)
        if base.startswith(WHITEOUT):
            self._whiteout(name, raw)
            return
        target = self._check_parents(name, raw)
        mode = member.mode & 0o7777
        if mode & SETID and not self.keep_setid:
            mode &= ~SETID
        if member.ischr() or member.isblk():
            raise LayerRejected(raw, "device node")
        if member.isdir():
            self._clear(target, keep_dir=True)
            if not target.exists():
                os.mkdir(target, 0o700)
            self._dir_times.append((target, int(member.mtime)))
        elif member.issym():
            if symlink_escapes(name, member.linkname):
                raise LayerRejected(raw, f"symlink points outside the image ({member.linkname})")
            self._clear(target)
            os.symlink(member.linkname, target)
        elif member.islnk():
            try:
                link = clean_name(member.linkname)
            except LayerRejected as error:
                raise LayerRejected(raw, f"hard link target {member.linkname!r}: {error.why}") from None
            if not link:
                raise LayerRejected(raw, "hard link to the root")
            source = self._check_parents(link, raw)
            try:
                info = os.lstat(source)
            except FileNotFoundError:
                raise LayerRejected(raw, f"hard link to a missing entry ({member.linkname})") from None
            if stat.S_ISDIR(info.st_mode):
                raise LayerRejected(raw, "hard link to a directory")
            if source == target:
                return
            self._clear(target)
            os.link(source, target, follow_symlinks=False)
            return  # a hard link shares the target's inode: no mode or owner of its own
        elif member.isfifo():
            self._clear(target)
            os.mkfifo(target, 0o600)
        elif member.isreg():
            self._clear(target)
            source = archive.extractfile(member)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                if source is not None:
                    shutil.copyfileobj(source, out, _CHUNK)
        else:
            raise LayerRejected(raw, f"unsupported entry type {member.type!r}")
        os.lchown(target, member.uid, member.gid)
        if not member.issym():
            os.chmod(target, mode)  # after chown: chown clears setid bits
            if not member.isdir():
                os.utime(target, (member.mtime, member.mtime))
        else:
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)

    def _whiteout(self, name: str, raw: str) -> None:
        directory, _, base = name.rpartition("/")
        parent = self._check_parents(name, raw).parent
        if base == OPAQUE:
            os.setxattr(parent, "trusted.overlay.opaque", b"y")
            return
        if base.startswith(WHITEOUT + WHITEOUT):
            return  # other AUFS metadata (.wh..wh.plnk and friends): not content
        hidden = base[len(WHITEOUT):]
        if not hidden or hidden in (".", ".."):
            raise LayerRejected(raw, "whiteout of nothing")
        target = parent / hidden
        self._clear(target)
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        del directory


def extract_layer(fileobj: IO[bytes], dest: Path, keep_setid: bool = False) -> int:
    """Unpack a layer stream into `dest` (created if missing)."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    return Extractor(Path(dest), keep_setid).extract(fileobj)
