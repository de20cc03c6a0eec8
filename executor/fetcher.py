"""Fetch a task's CommandInfo.URIs into its sandbox before it starts (the Mesos fetcher's job).

Metronome's `run.artifacts` and Marathon's `fetch` arrive here as Mesos URIs
`{value, extract, executable, cache, output_file}`. Mesos does this in the agent
before the executor starts; dockyard's warm executor serves many tasks, so the
executor fetches per task, on the task's own runner thread (a slow download
never blocks the driver). Supported: http(s)://, file:// and plain absolute
paths; archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .zip) are unpacked into
the sandbox unless `extract` is false, and the archive itself is kept, as Mesos
does. `cache` keeps a copy under the agent's work dir keyed by the URI
(`ArtifactCache`: a size budget with least-recently-used eviction, as Mesos's
`--fetcher_cache_size`).

A `file://` URI (or a plain path) is opened with the task's user's permissions, as
Mesos's fetcher runs as that user: an executor running as root never hands a task
of another user a file that user could not read itself (`as_user`). Only regular
files are fetched. Cache entries are keyed by user and URI, as Mesos keys them.
Standard library only: this module is on the task start-up path.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import logging
import os
import platform
import pwd
import re
import stat
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping

from framework.errors import DockyardError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is given up
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
CACHE_SIZE_ENV = "DOCKYARD_FETCHER_CACHE_SIZE"  # set by `dockyard agent --fetcher-cache-size`
DEFAULT_CACHE_SIZE = 2 << 30  # Mesos's --fetcher_cache_size default: 2GB
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class FetchError(DockyardError, RuntimeError):
    """A URI could not be fetched or unpacked; the task fails with this message."""


def parse_size(text: str) -> int:
    """Bytes from "2GB", "512MB", "10KB", "100B", "2G" or a bare number (units of 1024, as Mesos's Bytes)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", str(text).strip().upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 2GB, 512MB, 0)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def cache_size_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The cache budget in bytes: `$DOCKYARD_FETCHER_CACHE_SIZE`, else 2GB."""
    raw = (os.environ if environ is None else environ).get(CACHE_SIZE_ENV, "")
    if not raw.strip():
        return DEFAULT_CACHE_SIZE
    try:
        return parse_size(raw)
    except ValueError as error:
        raise FetchError(f"${CACHE_SIZE_ENV}: {error}") from None


def fetch_all(uris: list[dict], sandbox: Path, cache_dir: Path | None = None,
              cache_size: int | None = None, user: str | None = None) -> list[Path]:
    """Fetch every URI into `sandbox`, in order; the paths of the fetched files.

    `cache_size` is the cache's budget in bytes (default: `cache_size_from_env()`);
    `user` is the task's (CommandInfo.user): local files are opened as that user."""
    sandbox.mkdir(parents=True, exist_ok=True)
    cache = None
    if cache_dir is not None and any(uri.get("cache") for uri in uris):
        cache = ArtifactCache(cache_dir, cache_size_from_env() if cache_size is None else cache_size)
    before = {entry.name for entry in sandbox.iterdir()}
    fetched = [fetch_one(uri, sandbox, cache, user) for uri in uris]
    give_away([entry for entry in sandbox.iterdir() if entry.name not in before or entry in fetched], user)
    return fetched


def other_account(user: str | None) -> pwd.struct_passwd | None:
    """`user`'s account when this root executor acts for a user other than root, else None
    (nothing to switch or give away)."""
    if not user or os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise FetchError(f"user {user!r} does not exist on this host") from None
    return None if account.pw_uid == 0 else account


def give_away(paths: list[Path], user: str | None) -> None:
    """What the fetch made (files, unpacked trees) becomes `user`'s, as if Mesos's fetcher, which
    runs as the task's user, had made it. Before the task starts, so nothing in it is the task's
    yet; links are changed themselves, never followed."""
    account = other_account(user)
    if account is None:
        return
    for path in paths:
        os.lchown(path, account.pw_uid, account.pw_gid)
        if path.is_dir() and not path.is_symlink():
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)


def fetch_one(uri: dict, sandbox: Path, cache: "ArtifactCache | None" = None, user: str | None = None) -> Path:
    value = str(uri.get("value") or "")
    try:
        target = sandbox / _file_name(uri)
        if uri.get("cache") and cache is not None:
            cache.fetch(value, target, user)
        else:
            _download(value, target, user=user)
        if uri.get("executable"):
            target.chmod(0o755)  # Mesos: an executable URI is never extracted
        elif uri.get("extract", True):
            _extract(target, sandbox)
    except FetchError:
        raise
    except Exception as error:  # any I/O, HTTP or archive error names the URI
        raise FetchError(f"Failed to fetch {value!r}: {error}") from None
    return target


def _file_name(uri: dict) -> str:
    """`output_file` if given, else the last path segment of the URI."""
    name = uri.get("output_file") or os.path.basename(urllib.parse.urlparse(str(uri.get("value"))).path)
    name = urllib.parse.unquote(name)
    if not name or name in (".", "..") or "/" in name:
        raise FetchError(f"cannot name the fetched file of {uri.get('value')!r}; set output_file")
    return name


def _open_source(value: str, user: str | None = None) -> tuple[BinaryIO, int | None]:
    """The URI's bytes as a stream, and their size when it is known up front (Content-Length, stat)."""
    scheme = urllib.parse.urlparse(value).scheme
    if scheme in ("http", "https"):
        response = urllib.request.urlopen(value, timeout=DOWNLOAD_TIMEOUT)
        length = response.headers.get("Content-Length")
        return response, (int(length) if length and length.isdigit() else None)
    if scheme == "file" or (not scheme and value.startswith("/")):
        return _open_local(urllib.request.url2pathname(urllib.parse.urlparse(value).path), user)
    raise FetchError(f"unsupported URI scheme {scheme!r} in {value!r} (http, https and file are)")


def _open_local(path: str, user: str | None) -> tuple[BinaryIO, int]:
    """A local file opened with `user`'s permissions, if a regular file: a FIFO or a device
    would block or never end, so the path is looked at first (O_PATH opens nothing) and only
    a regular file is opened for reading, through that same descriptor."""
    with as_user(user):
        found = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            info = os.fstat(found)
            if not stat.S_ISREG(info.st_mode):
                raise FetchError(f"{path} is not a regular file")
            fd = os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_CLOEXEC)  # permissions checked here
        finally:
            os.close(found)
    return os.fdopen(fd, "rb"), info.st_size


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}.get(platform.machine())


@contextlib.contextmanager
def as_user(user: str | None) -> Iterator[None]:
    """File access from this thread with `user`'s ids and groups, then back.

    Only when running as root for another user. The filesystem ids (setfsuid/setfsgid) and
    the raw setgroups syscall change the calling thread only (glibc's setuid and setgroups
    would change every thread of the executor); with a non-root fsuid the kernel drops the
    capabilities that bypass file permissions, and gives them back when it is 0 again."""
    account = other_account(user)
    if account is None:
        yield
        return
    if _SYS_SETGROUPS is None:
        raise FetchError(f"cannot open files as {user} on {platform.machine()}")
    groups = os.getgrouplist(account.pw_name, account.pw_gid)
    saved = os.getgroups()
    _set_groups(groups)
    _libc.setfsgid(account.pw_gid)
    _libc.setfsuid(account.pw_uid)
    try:
        yield
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)
        _set_groups(saved)


def _set_groups(groups: list[int]) -> None:
    array = (ctypes.c_uint * max(len(groups), 1))(*groups)
    if _libc.syscall(_SYS_SETGROUPS, len(groups), array) != 0:
        raise FetchError(f"setgroups: {os.strerror(ctypes.get_errno())}")


def _download(value: str, target: Path, source: BinaryIO | None = None, user: str | None = None) -> None:
    """Copy the URI's bytes (or the already opened `source`) to `target`, via a temporary name."""
    partial = target.with_name(target.name + ".partial")
    if source is None:
        source, _size = _open_source(value, user)
    with source, open(partial, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    os.replace(partial, target)


class ArtifactCache:
    """The agent's fetcher cache: one file per URI under `directory`, at most `budget` bytes in all.

    Shared by every executor on the agent (several processes, several threads each), so all
    bookkeeping is on disk and guarded by `flock`s:

    * `.lock` (exclusive, held briefly) serialises look-ups, reservations and evictions;
    * an entry being copied into a sandbox is held shared, a download in progress
      (`<entry>.partial`, created at its announced size: that is its reservation) exclusive.
      Eviction takes an entry only if it can lock it exclusively without waiting, so an
      entry in use is never evicted;
    * an entry's mtime is its last use: eviction removes the least recently used first.

    As Mesos, a URI whose size is not known up front (no Content-Length), or that does not
    fit even after evicting every entry not in use, bypasses the cache: it is fetched straight
    into the sandbox. A second fetch of a URI being downloaded waits for that download.
    """

    LOCK_NAME = ".lock"

    def __init__(self, directory: Path, budget: int) -> None:
        self.directory = Path(directory)
        self.budget = max(0, int(budget))

    def entry(self, value: str, name: str, user: str | None = None) -> Path:
        key = value if not user else f"{user}\0{value}"  # a user's entries are theirs, as in Mesos
        return self.directory / (hashlib.sha256(key.encode()).hexdigest()[:32] + "-" + name)

    def fetch(self, value: str, target: Path, user: str | None = None) -> None:
        """Put the URI's bytes at `target`, from the cache if it has them, caching them if they fit."""
        entry = self.entry(value, target.name, user)
        partial = entry.with_name(entry.name + ".partial")
        for _attempt in range(3):
            held: BinaryIO | None = None
            downloading: BinaryIO | None = None
            with self._locked():
                if entry.exists():
                    held = open(entry, "rb")
                    fcntl.flock(held, fcntl.LOCK_SH)  # in use: not evictable until closed
                    os.utime(entry)  # most recently used
                elif partial.exists():
                    downloading = open(partial, "rb")
                    if _try_lock(downloading, fcntl.LOCK_SH):  # nobody writes it: a crashed download
                        downloading.close()
                        downloading = None
                        partial.unlink()
            if held is not None:
                with held, open(target, "wb") as out:
                    shutil.copyfileobj(held, out, 1 << 20)
                return
            if downloading is not None:
                with downloading:  # another task fetches this URI: wait for it, then look again
                    fcntl.flock(downloading, fcntl.LOCK_SH)
                continue
            if self._download(value, entry, partial, target, user):
                return
        _download(value, target, user=user)  # the cache keeps losing races for this URI: do without it

    def _download(self, value: str, entry: Path, partial: Path, target: Path, user: str | None = None) -> bool:
        """Download into the cache and copy to `target`, or straight to `target` when it does not fit.

        False when another fetch started on this URI meanwhile (the caller looks again)."""
        source, size = _open_source(value, user)
        with source:
            out: BinaryIO | None = None
            with self._locked():
                if entry.exists() or partial.exists():
                    return False
                if size is not None and self._make_room(size):
                    out = open(partial, "w+b")
                    fcntl.flock(out, fcntl.LOCK_EX)
                    os.truncate(out.fileno(), size)  # the reservation: counted until the download ends
            if out is None:
                log.info("fetcher cache: %s bypasses the cache (%s)", value,
                         "size unknown" if size is None else f"{size} bytes do not fit in {self.budget}")
                _download(value, target, source)
                return True
            with out:
                try:
                    shutil.copyfileobj(source, out, 1 << 20)
                    written = out.tell()
                    out.truncate(written)
                except BaseException:
                    with self._locked():
                        partial.unlink(missing_ok=True)
                    raise
                with self._locked():
                    if written > size:  # larger than announced: deliver it, keep nothing (as Mesos)
                        shutil.move(partial, target)
                        return True
                    os.replace(partial, entry)
                    os.utime(entry)
                    fcntl.flock(out, fcntl.LOCK_SH)  # still in use while copied to the sandbox
                out.seek(0)
                with open(target, "wb") as copy:
                    shutil.copyfileobj(out, copy, 1 << 20)
        return True

    def _make_room(self, size: int) -> bool:
        """Evict least recently used entries not in use until `size` more bytes fit; False if they cannot.

        Called with `.lock` held. Evicts nothing when the goal cannot be met."""
        if size > self.budget:
            return False
        files: list[tuple[float, Path, int]] = []
        for path in self.directory.iterdir():
            if path.name == self.LOCK_NAME:
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                files.append((stat.st_mtime, path, stat.st_size))
        used = sum(file_size for _mtime, _path, file_size in files)
        if used + size <= self.budget:
            return True
        victims: list[tuple[Path, int, BinaryIO]] = []
        try:
            freed = 0
            for _mtime, path, file_size in sorted(files, key=lambda f: f[0]):
                if used - freed + size <= self.budget:
                    break
                try:
                    handle = open(path, "rb")
                except FileNotFoundError:
                    continue
                if not _try_lock(handle, fcntl.LOCK_EX):  # being copied or downloaded: in use
                    handle.close()
                    continue
                victims.append((path, file_size, handle))
                freed += file_size
            if used - freed + size > self.budget:
                return False
            for path, file_size, _handle in victims:
                path.unlink(missing_ok=True)
                log.info("fetcher cache: evicted %s (%d bytes)", path.name, file_size)
            return True
        finally:
            for _path, _size, handle in victims:
                handle.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / self.LOCK_NAME, "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _try_lock(handle: BinaryIO, mode: int) -> bool:
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _extract(archive: Path, into: Path) -> None:
    """Unpack a recognised archive into the sandbox; members may not escape it."""
    name = archive.name.lower()
    if name.endswith(TAR_SUFFIXES):
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")  # refuses absolute paths, "..", device files
    elif name.endswith(".zip"):
        root = into.resolve()
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise FetchError(f"{archive.name}: member {member!r} would land outside the sandbox")
            zipped.extractall(into)
