"""A small image builder for test and demo images: layers from files, no Dockerfile.

    image = build_image([busybox_layer(), layer_from_dir(Path("app"))],
                        image_config(cmd=["/bin/httpd", "-f"], env={"MODE": "demo"}))
    image.write_docker_archive(Path("app:1.tar"), "app:1")   # `docker load`-able
    image.write_oci_layout(Path("layout"), "1")               # skopeo's oci:layout:1

What it is not: no RUN steps (nothing executes at build time), no cache, and the
layers sit in memory while the image is written, so it is meant for images of a
few hundred MB at most. Dockerfiles are built by `executor/images/dockerfile/`
(docs/images.md), which shares this module's constants and `BuildError`. Layers
hold exactly what they are given; the same input gives the same digests. Entries
the store would refuse (device nodes, sockets) are refused here, by name, rather
than shipped.

Debian's `busybox-static` gives a complete userland in one static binary, which
is what `busybox_entries` lays out: /bin/busybox, a symlink per applet, a root
and a nobody user, /tmp. Standard library only.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from framework.errors import ContainerError

BUSYBOX = Path("/bin/busybox")
# Used when the binary cannot list its applets (a build without --list): the common ones.
FALLBACK_APPLETS = ("sh", "ash", "cat", "ls", "echo", "env", "pwd", "id", "sleep", "dd", "head", "yes",
                    "httpd", "wc", "mkdir", "rm", "touch", "test", "true", "false", "grep", "hostname", "ps",
                    "kill", "stat", "tail", "seq", "sync", "mount", "readlink", "ping", "ip", "ifconfig",
                    "wget", "du", "cp", "mv", "ln", "chmod", "sed", "awk", "sort", "uniq", "tr", "cut",
                    "date", "uname", "vi", "find", "xargs", "tar", "gzip", "nc", "top", "free", "df")
FIXED_MTIME = 1_700_000_000  # entries made here (not taken from disk) get this, for stable digests
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
Progress = Callable[[str], None]


class BuildError(ContainerError):
    """An image could not be built from what it was given."""


@dataclass
class Entry:
    """One tar entry made from scratch; `kind` is a tarfile type constant."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    mode: int = 0o644
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0


def file(name: str, data: bytes | str, mode: int = 0o644) -> Entry:
    return Entry(name, data.encode() if isinstance(data, str) else data, mode=mode)


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, kind=tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, kind=tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, kind=tarfile.LNKTYPE, linkname=target)


def layer_tar(entries: list[Entry]) -> bytes:
    """An uncompressed layer holding exactly `entries`, names verbatim (tests build hostile ones)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.kind
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = FIXED_MTIME
            info.linkname = entry.linkname
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
            if entry.kind == tarfile.REGTYPE:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def layer_from_dir(root: Path, progress: Progress | None = None) -> bytes:
    """`root`'s tree as an uncompressed layer: sorted, owners and modes kept, symlinks not followed.

    Hard links inside the tree stay hard links. Device nodes and sockets are refused:
    the image store would refuse them too, and they have no place in a test image.
    """
    root = Path(root)
    if not root.is_dir():
        raise BuildError(f"{root}: not a directory")
    names: list[str] = []
    for directory_path, subdirs, files in os.walk(root):
        subdirs.sort()
        relative = os.path.relpath(directory_path, root)
        for name in [*subdirs, *sorted(files)]:
            names.append(name if relative == "." else f"{relative}/{name}")
    names.sort()
    buffer = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            path = root / name
            mode = path.lstat().st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
                raise BuildError(f"{path}: device nodes and sockets cannot go into an image")
            info = tar.gettarinfo(str(path), arcname=name)
            info.uname = info.gname = ""  # numeric owners only: host user names mean nothing in the image
            if info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
            count += 1
            if progress is not None and count % 500 == 0:
                progress(f"  {count}/{len(names)} entries from {root}")
    if progress is not None:
        progress(f"  {count} entries from {root}")
    return buffer.getvalue()


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applets this busybox binary provides (its own `--list`), else a common set."""
    try:
        listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        listed = None
    names = sorted({line.strip() for line in (listed.stdout if listed and listed.returncode == 0 else "")
                    .splitlines() if line.strip() and "/" not in line and line.strip() != "busybox"})
    return names or sorted(FALLBACK_APPLETS)


def busybox_entries(applets: list[str] | tuple[str, ...] | None = None, busybox: Path = BUSYBOX) -> list[Entry]:
    """A minimal root from busybox-static: the binary, applet links, root and nobody, /tmp."""
    if not busybox.is_file():
        raise BuildError(f"{busybox} not found: install Debian's busybox-static")
    entries = [directory("bin"), directory("etc"), directory("tmp", 0o1777), directory("root", 0o700),
               file("bin/busybox", busybox.read_bytes(), 0o755)]
    entries += [symlink(f"bin/{name}", "busybox") for name in (applets or busybox_applets(busybox))]
    entries += [file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"),
                file("etc/group", "root:x:0:\nnogroup:x:65534:\n")]
    return entries


def image_config(cmd: list[str] | None = None, entrypoint: list[str] | None = None,
                 env: dict[str, str] | None = None, workdir: str | None = None,
                 labels: dict[str, str] | None = None, user: str | None = None) -> dict:
    """The `config` part of an image config, as Docker and OCI define it (PATH defaulted)."""
    variables = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
    config: dict = {"Env": [f"{key}={value}" for key, value in variables.items()]}
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    if workdir:
        config["WorkingDir"] = workdir
    if labels:
        config["Labels"] = dict(labels)
    if user:
        config["User"] = user
    return config


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class BuiltImage:
    """An image as blobs in memory: layers (uncompressed tars), config, manifest, digest."""

    layers: list[bytes]
    config: dict  # the whole image config; `config["config"]` holds Cmd, Env...
    compressed: bool = True
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        config = dict(self.config)
        config.setdefault("architecture", "amd64")
        config.setdefault("os", "linux")
        config["rootfs"] = {"type": "layers", "diff_ids": [_digest(layer) for layer in self.layers]}
        config.setdefault("created", "2024-01-01T00:00:00Z")
        config_bytes = json.dumps(config, sort_keys=True).encode()
        self.blobs[_digest(config_bytes)] = config_bytes
        descriptors = []
        for layer in self.layers:
            stored = gzip.compress(layer, compresslevel=1, mtime=0) if self.compressed else layer
            self.blobs[_digest(stored)] = stored
            descriptors.append({"mediaType": OCI_LAYER + ("+gzip" if self.compressed else ""),
                                "digest": _digest(stored), "size": len(stored)})
        self.manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                         "config": {"mediaType": OCI_CONFIG, "digest": _digest(config_bytes),
                                    "size": len(config_bytes)},
                         "layers": descriptors}
        self.manifest_bytes = json.dumps(self.manifest, sort_keys=True).encode()
        self.digest = _digest(self.manifest_bytes)
        self.blobs[self.digest] = self.manifest_bytes

    @property
    def layer_descriptors(self) -> list[dict]:
        return self.manifest["layers"]

    @property
    def size(self) -> int:
        return sum(d["size"] for d in self.layer_descriptors)

    def write_oci_layout(self, path: Path, tag: str = "latest") -> Path:
        """An OCI image layout directory (skopeo's `oci:PATH:TAG`); other tags there are kept."""
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        for digest, data in self.blobs.items():
            (path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        index_path = path / "index.json"
        index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get(REF_ANNOTATION) != tag]
        index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": self.digest,
                                   "size": len(self.manifest_bytes), "annotations": {REF_ANNOTATION: tag}})
        index_path.write_text(json.dumps(index))
        return path

    def write_oci_archive(self, path: Path, tag: str = "latest") -> Path:
        """The OCI layout as one tar file (skopeo's `oci-archive:`)."""
        with tarfile.open(path, "w") as tar:
            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), FIXED_MTIME
                tar.addfile(info, io.BytesIO(data))
            add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
            for digest, data in sorted(self.blobs.items()):
                add(f"blobs/sha256/{digest.split(':')[1]}", data)
            add("index.json", json.dumps({"schemaVersion": 2, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": self.digest, "size": len(self.manifest_bytes),
                 "annotations": {REF_ANNOTATION: tag}}]}).encode())
        return path

    def write_docker_archive(self, path: Path, repo_tag: str) -> Path:
        """A `docker save` archive: manifest.json, <id>.json config, <n>/layer.tar (uncompressed)."""
        config_digest = self.manifest["config"]["digest"]
        config_name = config_digest.split(":")[1] + ".json"
        with tarfile.open(path, "w") as tar:
            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
            add(config_name, self.blobs[config_digest])
            names = []
            for number, layer in enumerate(self.layers):
                name = f"{hashlib.sha256(layer).hexdigest()[:16]}{number}/layer.tar"
                add(name, layer)
                names.append(name)
            add("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [repo_tag],
                                              "Layers": names}]).encode())
        return path


def build_image(layers: list[bytes], config: dict | None = None, compressed: bool = True) -> BuiltImage:
    """An image from layers (bottom first) and the `config` part of its image config."""
    if not layers:
        raise BuildError("an image needs at least one layer")
    return BuiltImage(list(layers), {"config": dict(config or image_config())}, compressed)
