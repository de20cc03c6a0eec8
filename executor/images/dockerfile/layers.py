"""Layers out of a step's upper directory, and COPY's files into a step's root.

`commit(upper, store)` turns what a step changed (the overlay upper directory)
into a layer blob in the store: a tar with entries sorted by name, numeric
owners, no extended attributes and every time set to one fixed value, so the
same change gives the same digest; overlay whiteouts (character devices 0/0)
become OCI `.wh.NAME` entries and opaque directories `.wh..wh..opq`. The store
then unpacks the blob like any pulled layer, under the same rules
(executor/images/extract.py): whatever a RUN made, it reaches the next step and
the image only through them.

`copy_into(rootfs, ...)` writes COPY and ADD sources into the merged root of a
step, resolving every destination inside that root (`rootfs.secure_join`), as
Docker's COPY places them.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from executor.containers.rootfs import secure_join
from executor.images.build import BuildError
from executor.images.dockerfile.context import Source
from executor.images.extract import OPAQUE, WHITEOUT

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OPAQUE_XATTR = "trusted.overlay.opaque"
# Overlay features that would leave a layer's content behind in a lower directory: the
# builder mounts with them off, and refuses an upper directory that uses them anyway.
FOREIGN_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    """A layer blob in the store: digest of the gzip blob, diff id of the tar inside."""

    digest: str
    diff_id: str
    size: int
    media_type: str = LAYER_GZIP

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def to_json(self) -> dict:
        return {"digest": self.digest, "diff_id": self.diff_id, "size": self.size, "media_type": self.media_type}

    @classmethod
    def from_json(cls, data: dict) -> "Layer":
        return cls(data["digest"], data["diff_id"], int(data["size"]), data.get("media_type", LAYER_GZIP))


class _BlobWriter:
    """A file object for tarfile: hashes the tar, gzips it into a file, hashes the gzip."""

    def __init__(self, out, level: int) -> None:
        self.out = out
        self.tar_hash = hashlib.sha256()
        self.blob_hash = hashlib.sha256()
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip stream, mtime 0
        self.size = 0

    def write(self, data: bytes) -> int:
        self.tar_hash.update(data)
        self._emit(self.compressor.compress(data))
        return len(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob_hash.update(data)
            self.out.write(data)
            self.size += len(data)

    def finish(self) -> None:
        self._emit(self.compressor.flush())


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _changes(upper: Path) -> list[str]:
    names = []
    for directory, subdirs, files in os.walk(upper):
        relative = os.path.relpath(directory, upper)
        for name in subdirs + files:
            names.append(name if relative == "." else f"{relative}/{name}")
    return sorted(names)


def commit(upper: Path, store, mtime: int, level: int = 1) -> tuple[Layer | None, bool]:
    """The upper directory as a layer blob in `store` (None when the step changed nothing), and
    whether that blob is new to the store."""
    names = _changes(upper)
    if not names:
        return None, False
    fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="layer-")
    try:
        with os.fdopen(fd, "wb") as out:
            writer = _BlobWriter(out, level)
            with tarfile.open(fileobj=writer, mode="w|",  # type: ignore[call-overload]
                              format=tarfile.PAX_FORMAT) as tar:
                links: dict[tuple[int, int], str] = {}
                for name in names:
                    _add(tar, upper, name, mtime, links)
            writer.finish()
        digest = "sha256:" + writer.blob_hash.hexdigest()
        target = store.blob_path(digest)
        new = not target.exists()
        if new:
            os.replace(tmp, target)
        else:
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return Layer(digest, "sha256:" + writer.tar_hash.hexdigest(), writer.size), new


def _add(tar: tarfile.TarFile, upper: Path, name: str, mtime: int, links: dict[tuple[int, int], str]) -> None:
    path = str(upper / name)
    info = os.lstat(path)
    mode = info.st_mode
    for xattr in FOREIGN_XATTRS:
        if _xattr(path, xattr) is not None:
            raise BuildError(f"/{name}: the overlay marked it {xattr.rsplit('.', 1)[-1]} (mount option "
                             f"redirect_dir or metacopy on): its content is not in the step's changes")
    entry = tarfile.TarInfo(name)
    entry.mtime = mtime
    entry.uid, entry.gid = info.st_uid, info.st_gid
    entry.uname = entry.gname = ""
    entry.mode = stat.S_IMODE(mode)
    if stat.S_ISCHR(mode) and info.st_rdev == 0:  # an overlay whiteout: NAME was deleted
        directory, base = posixpath.split(name)
        entry.name = posixpath.join(directory, WHITEOUT + base)
        entry.mode, entry.uid, entry.gid = 0o600, 0, 0
        tar.addfile(entry)
        return
    if stat.S_ISDIR(mode):
        entry.type = tarfile.DIRTYPE
        tar.addfile(entry)
        if _xattr(path, OPAQUE_XATTR) == b"y":  # deleted, then made again: hides what lies below
            opaque = tarfile.TarInfo(posixpath.join(name, OPAQUE))
            opaque.mtime, opaque.mode = mtime, 0o600
            tar.addfile(opaque)
        return
    if stat.S_ISLNK(mode):
        entry.type = tarfile.SYMTYPE
        entry.linkname = os.readlink(path)
        tar.addfile(entry)
        return
    if stat.S_ISFIFO(mode):
        entry.type = tarfile.FIFOTYPE
        tar.addfile(entry)
        return
    if not stat.S_ISREG(mode):
        kind = "a socket" if stat.S_ISSOCK(mode) else "a device node"
        raise BuildError(f"/{name} is {kind}: it cannot go into an image")
    if info.st_nlink > 1:
        key = (info.st_dev, info.st_ino)
        if key in links:
            entry.type = tarfile.LNKTYPE
            entry.linkname = links[key]
            tar.addfile(entry)
            return
        links[key] = name
    entry.size = info.st_size
    with open(path, "rb") as handle:
        tar.addfile(entry, handle)


# -- COPY and ADD --------------------------------------------------------------

@dataclass(frozen=True)
class Ownership:
    """Who owns what COPY writes: `--chown`'s ids, else root (or the archive's own for ADD)."""

    uid: int | None = None
    gid: int | None = None

    @property
    def given(self) -> bool:
        return self.uid is not None


def _inside(rootfs: Path, path: Path) -> str:
    return "/" + str(path.relative_to(rootfs)) if path != rootfs else "/"


def make_dirs(rootfs: Path, container_path: str, owner: Ownership) -> Path:
    """`container_path` as a directory inside `rootfs` (made where missing), symlinks resolved inside."""
    current = rootfs
    for part in [p for p in container_path.split("/") if p]:
        candidate = secure_join(rootfs, _inside(rootfs, current) + "/" + part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            os.mkdir(candidate, 0o755)
            os.chown(candidate, owner.uid or 0, owner.gid or 0)
            os.chmod(candidate, 0o755)
            current = candidate
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise BuildError(f"{_inside(rootfs, candidate)} exists in the image and is not a directory")
        current = candidate
    return current


def _clear(target: Path, want_dir: bool) -> bool:
    """Make room at `target`; True when a directory is already there and one is wanted."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(info.st_mode):
        if want_dir:
            return True
        raise BuildError(f"cannot replace the directory {target.name} with a file")
    os.unlink(target)
    return False


def _place(host: Path, target: Path, owner: Ownership, keep_owner: bool, chmod: int | None) -> None:
    info = os.lstat(host)
    uid, gid = (info.st_uid, info.st_gid) if keep_owner and not owner.given else (owner.uid or 0, owner.gid or 0)
    mode = stat.S_IMODE(info.st_mode) if chmod is None else chmod
    if stat.S_ISDIR(info.st_mode):
        if _clear(target, want_dir=True):
            return  # an existing directory keeps its own owner and mode
        os.mkdir(target, 0o700)
    elif stat.S_ISLNK(info.st_mode):
        _clear(target, want_dir=False)
        os.symlink(os.readlink(host), target)
        os.lchown(target, uid, gid)
        return
    elif stat.S_ISREG(info.st_mode):
        _clear(target, want_dir=False)
        shutil.copyfile(host, target, follow_symlinks=False)
    else:
        raise BuildError(f"{host.name} is not a file, directory or symlink")
    os.chown(target, uid, gid)
    os.chmod(target, mode)  # after chown, which clears setuid and setgid bits


def copy_into(rootfs: Path, sources: list[Source], dest: str, owner: Ownership, chmod: int | None) -> None:
    """Docker's COPY: a directory source's contents go into `dest`; a file goes to `dest` itself,
    or into it when `dest` ends in `/` or is a directory. `dest` is absolute (WORKDIR applied).
    Everything written is root's, or `owner`'s; an unpacked archive's entries keep their own."""
    into_dir = dest.endswith("/") or len(sources) > 1
    clean = posixpath.normpath(dest)
    for source in sources:
        if source.is_dir:
            base = make_dirs(rootfs, clean, owner)
            base_path = _inside(rootfs, base)
            for entry in source.entries:
                if not entry.name:
                    continue
                parent_inside, leaf = posixpath.split(posixpath.join(base_path, entry.name))
                parent = secure_join(rootfs, parent_inside)
                _place(entry.host, parent / leaf, owner, source.archive, chmod)
            continue
        existing = secure_join(rootfs, clean)
        if into_dir or existing.is_dir():
            directory = make_dirs(rootfs, clean, owner)
            target = directory / source.basename
        else:
            parent_inside, leaf = posixpath.split(clean)
            target = make_dirs(rootfs, parent_inside, owner) / leaf
        _place(source.host, target, owner, source.archive, chmod)
