"""Small OCI images for tests, from Debian's busybox-static (no binaries committed).

The building itself is `executor/images/build.py` (what `dockyard image build`
uses); this adds what only tests want: a fixed applet set, an httpd page, random
incompressible layers for size benchmarks, and skopeo as an independent client.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from executor.images.build import (BUSYBOX, BuiltImage, Entry, build_image, directory, file,
                                   hardlink, image_config, layer_tar, symlink)
from executor.images.build import busybox_entries as _busybox_entries

__all__ = ["APPLETS", "BUSYBOX", "BuiltImage", "Entry", "busybox_entries", "busybox_image", "directory", "file",
           "hardlink", "layer_tar", "random_file_entries", "skopeo_copy", "skopeo_inspect", "symlink", "cli_archive"]

APPLETS = ["sh", "cat", "ls", "echo", "env", "pwd", "id", "sleep", "dd", "head", "yes", "httpd", "wc",
           "mkdir", "rm", "touch", "test", "true", "false", "grep", "hostname", "ps", "kill", "stat",
           "tail", "seq", "sync", "mount", "readlink", "ping", "ip", "ifconfig", "wget", "du"]


def busybox_entries() -> list[Entry]:
    """The builder's busybox root with the applets tests use, plus a page for `httpd -h /www`."""
    return _busybox_entries(APPLETS) + [directory("www"), file("www/index.html", "hello from busybox httpd\n")]


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


def busybox_image(extra_layers: list[list[Entry]] | None = None, config: dict | None = None,
                  compressed: bool = True) -> BuiltImage:
    """busybox as the base layer plus optional layers; `config` goes under the config's `config`."""
    layers = [layer_tar(busybox_entries())] + [layer_tar(e) for e in extra_layers or []]
    settings = image_config(cmd=["/bin/sh"])
    settings.update(config or {})
    return build_image(layers, settings, compressed)


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


def cli_archive(directory: Path, tag: str, rootfs: Path | None = None, timeout: float = 120) -> Path:
    """`dockyard image build --busybox` (plus `rootfs`'s files) saved as `<directory>/<tag>.tar`: what an
    agent's `--docker-registry DIR` loads, made the way a user makes it."""
    from tests.support.procs import dockyard

    archive = directory / f"{tag}.tar"
    extra = ["--from-rootfs", str(rootfs)] if rootfs is not None else []
    built = subprocess.run(dockyard("image", "build", "--tag", tag, "--busybox", *extra, "--cmd", "/bin/sh",
                                    "--output", str(archive)), capture_output=True, text=True, timeout=timeout)
    if built.returncode != 0:
        raise RuntimeError(f"dockyard image build failed: {built.stderr}")
    return archive
