"""Build small OCI images for tests from Debian's busybox-static (no binaries committed).

Layers are tarballs made here; an image is written as an OCI layout directory
(then copied into a real registry with skopeo), a `docker save` archive or an
OCI archive.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ["sh", "cat", "ls", "echo", "env", "pwd", "id", "sleep", "dd", "head", "yes", "httpd", "wc",
           "mkdir", "rm", "touch", "test", "true", "false", "grep", "hostname", "ps", "kill", "stat",
           "tail", "seq", "sync", "mount", "readlink", "ping", "ip", "ifconfig", "wget", "du"]


@dataclass
class Entry:
    """One tar entry; `kind` is a tarfile type constant."""

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
    """An uncompressed layer tarball holding exactly `entries` (names taken verbatim)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.kind
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = 1_700_000_000
            info.linkname = entry.linkname
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
            if entry.kind == tarfile.REGTYPE:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def busybox_entries() -> list[Entry]:
    """A minimal root: busybox, applet links, /etc/passwd and group, /tmp."""
    entries = [directory("bin"), directory("etc"), directory("tmp", 0o1777), directory("root", 0o700),
               directory("www"),
               file("bin/busybox", BUSYBOX.read_bytes(), 0o755)]
    entries += [symlink(f"bin/{name}", "busybox") for name in APPLETS]
    entries += [file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"),
                file("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
                file("www/index.html", "hello from busybox httpd\n")]
    return entries


def random_file_entries(prefix: str, total_bytes: int, chunk: int = 8 << 20) -> list[Entry]:
    """Incompressible files adding up to `total_bytes` (for size benchmarks)."""
    entries = [directory(prefix)]
    index = 0
    remaining = total_bytes
    while remaining > 0:
        size = min(chunk, remaining)
        entries.append(file(f"{prefix}/blob{index:05d}", os.urandom(size)))
        remaining -= size
        index += 1
    return entries


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


@dataclass
class BuiltImage:
    """An image as blobs in memory: layers (as stored), config, manifest."""

    layers: list[bytes]  # uncompressed tars
    config: dict
    compressed: bool = True
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        diff_ids = [_digest(layer) for layer in self.layers]
        config = dict(self.config)
        config.setdefault("architecture", "amd64")
        config.setdefault("os", "linux")
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        config.setdefault("created", "2024-01-01T00:00:00Z")
        config_bytes = json.dumps(config, sort_keys=True).encode()
        self.blobs[_digest(config_bytes)] = config_bytes
        descriptors = []
        for layer in self.layers:
            stored = _gzip(layer) if self.compressed else layer
            media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if self.compressed else "")
            self.blobs[_digest(stored)] = stored
            descriptors.append({"mediaType": media, "digest": _digest(stored), "size": len(stored)})
        self.manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _digest(config_bytes), "size": len(config_bytes)},
            "layers": descriptors,
        }
        self.manifest_bytes = json.dumps(self.manifest, sort_keys=True).encode()
        self.digest = _digest(self.manifest_bytes)
        self.blobs[self.digest] = self.manifest_bytes

    @property
    def layer_descriptors(self) -> list[dict]:
        return self.manifest["layers"]

    def write_oci_layout(self, path: Path, tag: str = "latest") -> Path:
        """An OCI image layout directory (skopeo's `oci:PATH:TAG`)."""
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        for digest, data in self.blobs.items():
            (path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        index_path = path / "index.json"
        index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "digest": self.digest, "size": len(self.manifest_bytes),
                                   "annotations": {"org.opencontainers.image.ref.name": tag}})
        index_path.write_text(json.dumps(index))
        return path

    def write_oci_archive(self, path: Path, tag: str = "latest") -> Path:
        layout = path.with_suffix(".layout")
        self.write_oci_layout(layout, tag)
        with tarfile.open(path, "w") as tar:
            for item in sorted(layout.rglob("*")):
                tar.add(item, arcname=str(item.relative_to(layout)), recursive=False)
        shutil.rmtree(layout)
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


def busybox_image(extra_layers: list[list[Entry]] | None = None, config: dict | None = None,
                  compressed: bool = True) -> BuiltImage:
    """busybox as the base layer plus optional layers; `config` goes under the config's `config`."""
    layers = [layer_tar(busybox_entries())] + [layer_tar(e) for e in extra_layers or []]
    image_config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "Cmd": ["/bin/sh"]}
    image_config.update(config or {})
    return BuiltImage(layers, {"config": image_config}, compressed)


def skopeo_copy(source: str, dest: str, creds: str | None = None, timeout: float = 120) -> None:
    """Copy between transports with the real skopeo; registries are plain HTTP on loopback."""
    argv = ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "--dest-tls-verify=false"]
    if creds and dest.startswith("docker://"):
        argv.append(f"--dest-creds={creds}")
    if creds and source.startswith("docker://"):
        argv.append(f"--src-creds={creds}")
    result = subprocess.run(argv + [source, dest], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy {source} {dest} failed: {result.stderr.strip()}")


def skopeo_inspect(ref: str, raw: bool = False, creds: str | None = None) -> dict:
    argv = ["skopeo", "inspect", "--tls-verify=false"] + (["--raw"] if raw else [])
    if creds:
        argv.append(f"--creds={creds}")
    result = subprocess.run(argv + [ref], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo inspect {ref} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)
