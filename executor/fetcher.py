"""Fetch a task's CommandInfo.URIs into its sandbox before it starts (the Mesos fetcher's job).

Metronome's `run.artifacts` and Marathon's `fetch` arrive here as Mesos URIs
`{value, extract, executable, cache, output_file}`. Mesos does this in the agent
before the executor starts; dockyard's warm executor serves many tasks, so the
executor fetches per task, on the task's own runner thread (a slow download
never blocks the driver). Supported: http(s)://, file:// and plain absolute
paths; archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .zip) are unpacked into
the sandbox unless `extract` is false, and the archive itself is kept, as Mesos
does. `cache` keeps a copy under the agent's work dir keyed by the URI.
Standard library only: this module is on the task start-up path.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is given up
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class FetchError(RuntimeError):
    """A URI could not be fetched or unpacked; the task fails with this message."""


def fetch_all(uris: list[dict], sandbox: Path, cache_dir: Path | None = None) -> list[Path]:
    """Fetch every URI into `sandbox`, in order; the paths of the fetched files."""
    sandbox.mkdir(parents=True, exist_ok=True)
    return [fetch_one(uri, sandbox, cache_dir) for uri in uris]


def fetch_one(uri: dict, sandbox: Path, cache_dir: Path | None = None) -> Path:
    value = str(uri.get("value") or "")
    try:
        target = sandbox / _file_name(uri)
        if uri.get("cache") and cache_dir is not None:
            _fetch_cached(value, target, cache_dir)
        else:
            _download(value, target)
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


def _download(value: str, target: Path) -> None:
    """Copy the URI's bytes to `target` (written under a temporary name, then renamed)."""
    scheme = urllib.parse.urlparse(value).scheme
    partial = target.with_name(target.name + ".partial")
    if scheme in ("http", "https"):
        with urllib.request.urlopen(value, timeout=DOWNLOAD_TIMEOUT) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    elif scheme == "file" or (not scheme and value.startswith("/")):
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(value).path), partial)
    else:
        raise FetchError(f"unsupported URI scheme {scheme!r} in {value!r} (http, https and file are)")
    os.replace(partial, target)


def _fetch_cached(value: str, target: Path, cache_dir: Path) -> None:
    """Fetch once per agent: later tasks copy the cached file (Mesos's fetcher cache, without eviction)."""
    cached = cache_dir / (hashlib.sha256(value.encode()).hexdigest()[:32] + "-" + target.name)
    if not cached.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        _download(value, cached)
    shutil.copyfile(cached, target)


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
