"""The agent's content-addressed image store, in OCI image layout.

```
<work_dir>/images/
  oci-layout, index.json     OCI layout; each tag is an index entry annotated
                             org.opencontainers.image.ref.name=<full reference>
  blobs/sha256/<hex>         manifests, configs, layer tarballs (verified digests)
  layers/<hex>[+setid]/      each layer unpacked once, shared read-only by every
                             container (overlay lowerdirs); never copied
  layers/<hex>.size          bytes the unpacked layer takes (for the budget)
  access/<manifest hex>      mtime = last use (LRU eviction under a size budget)
  tmp/                       downloads and unpacks in progress (temp + rename)
  locks/                     flock files: one pull per image across processes
```

Containers record the layers they use in `<work_dir>/containers/<id>/state.json`;
prune and eviction never touch those.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import tarfile
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from executor.images import reference as references
from executor.images.extract import extract_layer
from executor.images.reference import DEFAULT_REGISTRY, Reference
from executor.images.registry import (DOCKER_CONFIG, DOCKER_MANIFEST, INDEX_TYPES, OCI_MANIFEST,
                                      Credentials, RegistryClient)
from executor.images.source import RegistrySource
from framework.errors import ImagePullError, LayerRejected

REF_ANNOTATION = "org.opencontainers.image.ref.name"
SETID_LABEL = "org.dockyard.allow-setid"
LAYER_GZIP = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip",
              "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
              "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
LAYER_PLAIN = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar")
Progress = Callable[[dict], None]


def _hex(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise ImagePullError(f"unsupported or malformed digest {digest!r}")
    return value


def host_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return "linux", arch


@dataclass
class Image:
    """A stored image: its reference, manifest and config (parsed)."""

    name: str
    digest: str  # of the manifest
    manifest: dict
    config: dict
    size: int

    @property
    def layers(self) -> list[dict]:
        return list(self.manifest.get("layers") or [])

    @property
    def allow_setid(self) -> bool:
        labels = (self.config.get("config") or {}).get("Labels") or {}
        return str(labels.get(SETID_LABEL, "")).lower() == "true"

    def layer_key(self, descriptor: dict) -> str:
        return _hex(descriptor["digest"]) + ("+setid" if self.allow_setid else "")


class ImageStore:
    """Blobs, tags and unpacked layers under `<work_dir>/images`."""

    def __init__(self, work_dir: Path | str, budget_bytes: int | None = None,
                 concurrency: int = 4, registry: RegistrySource | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.registry = registry  # the agent's --docker-registry: where unqualified names come from
        self.root = self.work_dir / "images"
        self.blobs = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.access = self.root / "access"
        self.budget_bytes = budget_bytes
        self.concurrency = concurrency
        self.last_client: RegistryClient | None = None
        for path in (self.blobs, self.layers_dir, self.tmp, self.locks, self.access):
            path.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._atomic_write(layout, json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": []})

    # -- small helpers ------------------------------------------------------
    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=".w-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _lock(self, name: str, shared: bool = False) -> Iterator[None]:
        """A cross-process lock (flock); threads hold separate descriptions, so it holds there too."""
        fd = os.open(self.locks / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImagePullError(f"blob {digest} is not in the store") from None

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest and digest != actual:
            raise ImagePullError(f"content does not match digest {digest} (got {actual})")
        path = self.blob_path(actual)
        if not path.exists():
            self._atomic_write(path, data)
        return actual

    def _put_blob_file(self, source: Path, expected: str | None) -> str:
        """Hash a file, check it, move it into the store (the file is consumed)."""
        hasher = hashlib.sha256()
        with open(source, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
        actual = "sha256:" + hasher.hexdigest()
        if expected and actual != expected:
            source.unlink(missing_ok=True)
            raise ImagePullError(f"blob does not match digest {expected} (got {actual})")
        os.replace(source, self.blob_path(actual))
        return actual

    # -- the index ----------------------------------------------------------
    def _read_index(self) -> dict:
        return json.loads((self.root / "index.json").read_text())

    def _write_index(self, index: dict) -> None:
        self._atomic_write(self.root / "index.json", json.dumps(index, indent=1).encode())

    def _tag(self, name: str, digest: str, media_type: str, size: int) -> None:
        with self._lock("index.lock"):
            index = self._read_index()
            manifests = [m for m in index["manifests"]
                         if (m.get("annotations") or {}).get(REF_ANNOTATION) != name]
            manifests.append({"mediaType": media_type, "digest": digest, "size": size,
                              "annotations": {REF_ANNOTATION: name,
                                              "org.dockyard.stored": str(time.time())}})
            index["manifests"] = manifests
            self._write_index(index)
        self.touch(digest)

    def touch(self, digest: str) -> None:
        """Mark an image used now (LRU)."""
        path = self.access / _hex(digest)
        path.touch()
        os.utime(path)

    def entries(self) -> list[dict]:
        return list(self._read_index()["manifests"])

    def resolve(self, name: str) -> dict | None:
        """The index entry for a reference, a digest or a digest prefix; None if absent."""
        entries = self.entries()
        wanted = str(references.parse(name)) if not name.startswith("sha256:") else None
        for entry in entries:
            ref = (entry.get("annotations") or {}).get(REF_ANNOTATION)
            if wanted and ref == wanted:
                return entry
        if "@" in name:
            digest = name.split("@", 1)[1]
            name = digest
        prefix = name if name.startswith("sha256:") else f"sha256:{name}"
        matches = {e["digest"] for e in entries if e["digest"].startswith(prefix) and len(name) >= 8}
        if len(matches) == 1:
            digest = matches.pop()
            return next(e for e in entries if e["digest"] == digest)
        return None

    def image(self, name: str) -> Image:
        entry = self.resolve(name)
        if entry is None:
            raise ImagePullError(f"image {name!r} is not in the store")
        return self._image(entry)

    def _image(self, entry: dict) -> Image:
        manifest = json.loads(self.read_blob(entry["digest"]))
        config = json.loads(self.read_blob(manifest["config"]["digest"]))
        size = sum(int(l.get("size", 0)) for l in manifest.get("layers") or [])
        name = (entry.get("annotations") or {}).get(REF_ANNOTATION, entry["digest"])
        return Image(name, entry["digest"], manifest, config, size)

    def images(self) -> list[Image]:
        found = []
        for entry in self.entries():
            try:
                found.append(self._image(entry))
            except (ImagePullError, ValueError, KeyError):
                continue
        return found

    # -- unpacked layers ----------------------------------------------------
    def layer_dir(self, key: str) -> Path:
        return self.layers_dir / key

    def unpack(self, image: Image, descriptor: dict) -> Path:
        """The layer's shared directory, unpacking it first if needed (once, under a lock)."""
        key = image.layer_key(descriptor)
        final = self.layer_dir(key)
        if final.is_dir():
            return final
        with self._lock(f"layer-{key}.lock"):
            if final.is_dir():
                return final
            media = descriptor.get("mediaType", "")
            if "zstd" in media:
                raise ImagePullError(f"layer {descriptor['digest']}: zstd layers are not supported")
            work = Path(tempfile.mkdtemp(dir=self.tmp, prefix="layer-"))
            try:
                with open(self.blob_path(descriptor["digest"]), "rb") as handle:
                    extract_layer(handle, work, keep_setid=image.allow_setid)
                (self.layers_dir / f"{key}.size").write_text(str(_disk_usage(work)))
                os.rename(work, final)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        return final

    def prepare(self, name: str, progress: Progress | None = None,
                credentials: Credentials | None = None, pull: bool = True) -> tuple[Image, list[Path]]:
        """The image (pulled if missing) and its unpacked layer dirs, bottom first."""
        if self.resolve(name) is None:
            if not pull:
                raise ImagePullError(f"image {name!r} is not in the store")
            image = self.pull(name, progress=progress, credentials=credentials)
        else:
            image = self.image(name)
            self.touch(image.digest)
        dirs = [self.unpack(image, layer) for layer in image.layers]
        return image, dirs

    # -- pulling ------------------------------------------------------------
    def pull(self, name: str, progress: Progress | None = None, credentials: Credentials | None = None,
             client: RegistryClient | None = None) -> Image:
        """Fetch an image: only missing blobs, concurrently, verified, then unpacked and tagged.

        Concurrent pulls of one reference (threads or processes) share the work: the
        second waits on the lock and then finds the first one's result.
        """
        ref = references.parse(name)
        emit = progress or (lambda event: None)
        started = time.time()
        lock_name = "pull-" + hashlib.sha1(str(ref).encode()).hexdigest() + ".lock"
        with self._lock(lock_name):
            entry = self.resolve(str(ref))
            stored = float((entry or {}).get("annotations", {}).get("org.dockyard.stored", 0) or 0)
            if entry is not None and stored >= started:
                emit({"status": "shared", "image": str(ref)})
                return self._image(entry)  # somebody pulled it while we waited
            archive = self._archive_for(name, ref)
            if archive is not None:
                return self._load_archive(archive, ref, emit)
            qualified = references.names_registry(name)
            if self.registry is not None and not qualified:
                if self.registry.directory is not None:
                    raise ImagePullError(f"no archive for image {name!r} in {self.registry.directory} (looked for "
                                         f"{', '.join(c + '.tar' for c in self._archive_names(name, ref))})")
                if client is None:
                    client = RegistryClient(self.registry.host or ref.api_host, credentials, self.registry.insecure)
                return self._pull_locked(self._at_default_registry(name, ref), emit, credentials, client, ref)
            return self._pull_locked(ref, emit, credentials, client)

    # -- the agent's --docker-registry ---------------------------------------
    @staticmethod
    def _archive_names(name: str, ref: Reference) -> list[str]:
        """Archive names Mesos's local puller would use: `<name>.tar`, then `<repository>:<tag>.tar`."""
        names = [name.strip()]
        written = references.written_repository(name)
        if ref.digest is None and f"{written}:{ref.tag}" not in names:
            names.append(f"{written}:{ref.tag}")
        return names

    def _archive_for(self, name: str, ref: Reference) -> Path | None:
        if self.registry is None or self.registry.directory is None:
            return None
        return self.registry.archive_for(name, self._archive_names(name, ref))

    def _load_archive(self, archive: Path, ref: Reference, emit: Progress) -> Image:
        """A `docker save` (or OCI) archive from the local registry directory, stored as `ref`."""
        emit({"status": "loading", "image": str(ref), "archive": str(archive)})
        self.load(archive, tag=str(ref))  # the file name is the image's name, as in Mesos
        image = self.image(str(ref))
        emit({"status": "done", "image": str(ref), "digest": image.digest})
        self.enforce_budget(keep={image.digest})
        return image

    def _at_default_registry(self, name: str, ref: Reference) -> Reference:
        """`ref` fetched from the default registry host: the repository as written (no implied
        `library/`, which only Docker Hub uses) unless that host is Docker Hub itself."""
        host = self.registry.host if self.registry is not None else None
        if not host or host in (DEFAULT_REGISTRY, references.DOCKER_HUB_API, "index.docker.io"):
            return ref
        return Reference(host, references.written_repository(name), ref.tag, ref.digest)

    def _pull_locked(self, ref: Reference, emit: Progress, credentials: Credentials | None,
                     client: RegistryClient | None, store_as: Reference | None = None) -> Image:
        """Fetch `ref` from its registry; tag it in the store as `store_as` (default: `ref`)."""
        client = client or RegistryClient(ref.api_host, credentials)
        self.last_client = client
        body, media, digest = client.manifest(ref)
        if media in INDEX_TYPES:
            self.put_blob(body, digest)
            chosen = self._choose_platform(json.loads(body), ref)
            body, media, digest = client.manifest(ref, chosen)
        manifest = json.loads(body)
        if ref.digest and ref.digest not in (digest,) and not self.has_blob(ref.digest):
            raise ImagePullError(f"{ref}: registry returned {digest}, not the pinned digest")
        emit({"status": "resolved", "image": str(ref), "digest": digest})
        config = manifest.get("config") or {}
        layers = list(manifest.get("layers") or [])
        wanted = [config] + layers
        missing = [d for d in wanted if not self.has_blob(d["digest"])]
        for descriptor in wanted:
            if descriptor not in missing:
                emit({"status": "exists", "digest": descriptor["digest"], "total": descriptor.get("size", 0)})
        errors: list[BaseException] = []
        if missing:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures = [pool.submit(self._download, client, ref, d, emit) for d in missing]
                for future in futures:
                    error = future.exception()
                    if error is not None:
                        errors.append(error)
        if errors:
            first = errors[0]
            if isinstance(first, (ImagePullError, LayerRejected)):
                raise first
            raise ImagePullError(f"pull of {ref} failed: {first}") from first
        self.put_blob(body, digest)
        name = str(store_as or ref)
        image = Image(name, digest, manifest, json.loads(self.read_blob(config["digest"])),
                      sum(int(l.get("size", 0)) for l in layers))
        for descriptor in layers:
            self.unpack(image, descriptor)
            emit({"status": "extracted", "digest": descriptor["digest"]})
        self._tag(name, digest, media, len(body))
        emit({"status": "done", "image": name, "digest": digest})
        self.enforce_budget(keep={digest})
        return image

    @staticmethod
    def _choose_platform(index: dict, ref: Reference) -> str:
        host_os, host_arch = host_platform()
        candidates = [m for m in index.get("manifests") or [] if m.get("platform")]
        for want_arch in (host_arch, "amd64"):
            for entry in candidates:
                plat = entry["platform"]
                if plat.get("os") == host_os and plat.get("architecture") == want_arch:
                    return entry["digest"]
        if not candidates and index.get("manifests"):
            return index["manifests"][0]["digest"]
        raise ImagePullError(f"{ref}: no manifest for {host_os}/{host_arch} in the image index")

    def _download(self, client: RegistryClient, ref: Reference, descriptor: dict, emit: Progress) -> None:
        digest = descriptor["digest"]
        total = int(descriptor.get("size", 0))
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            emit({"status": "downloading", "digest": digest, "done": done, "total": total})

        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as out:
                actual = client.blob(ref, digest, out, advance)
                out.flush()
                os.fsync(out.fileno())
            if actual != digest:
                raise ImagePullError(f"layer {digest} of {ref} failed verification (got {actual})")
            os.replace(tmp, self.blob_path(digest))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        emit({"status": "verified", "digest": digest, "total": total})

    # -- pushing ------------------------------------------------------------
    def push(self, name: str, destination: str | None = None, progress: Progress | None = None,
             credentials: Credentials | None = None) -> str:
        """Upload an image's blobs (those the registry lacks) and its manifest; returns the digest."""
        image = self.image(name)
        dest = references.parse(destination or image.name)
        emit = progress or (lambda event: None)
        client = RegistryClient(dest.api_host, credentials)
        self.last_client = client
        for descriptor in [image.manifest["config"], *image.layers]:
            digest = descriptor["digest"]
            if client.has_blob(dest, digest):
                emit({"status": "exists", "digest": digest, "total": descriptor.get("size", 0)})
                continue
            client.upload_blob(dest, digest, self.blob_path(digest),
                               lambda n, d=digest, t=descriptor.get("size", 0):
                               emit({"status": "uploading", "digest": d, "done": n, "total": t}))
            emit({"status": "pushed", "digest": digest, "total": descriptor.get("size", 0)})
        body = self.read_blob(image.digest)
        media = image.manifest.get("mediaType") or OCI_MANIFEST
        client.put_manifest(dest, dest.digest or dest.tag or "latest", body, media)
        emit({"status": "done", "image": str(dest), "digest": image.digest})
        return image.digest

    # -- loading archives ---------------------------------------------------
    def load(self, archive: Path | str, tag: str | None = None) -> list[str]:
        """Load a `docker save` or OCI archive; returns the references stored."""
        archive = Path(archive)
        if archive.is_dir():
            return self._load_layout(archive, tag)
        try:
            with tarfile.open(archive) as tar:
                names = set(tar.getnames())
                normal = {n.lstrip("./"): n for n in names}
                if "oci-layout" in normal and "index.json" in normal:
                    return self._load_oci(tar, normal, tag)
                if "manifest.json" in normal:
                    return self._load_docker(tar, normal, tag)
        except tarfile.TarError as error:
            raise ImagePullError(f"{archive}: not a readable archive ({error})") from error
        raise ImagePullError(f"{archive}: neither a docker save archive nor an OCI archive")

    def _member_to_blob(self, tar: tarfile.TarFile, member: str, expected: str | None) -> tuple[str, int]:
        source = tar.extractfile(member)
        if source is None:
            raise ImagePullError(f"archive entry {member} is not a file")
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="load-")
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        size = os.path.getsize(tmp)
        try:
            return self._put_blob_file(Path(tmp), expected), size
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _load_docker(self, tar: tarfile.TarFile, names: dict[str, str], tag: str | None) -> list[str]:
        manifest_list = json.load(tar.extractfile(names["manifest.json"]))  # type: ignore[arg-type]
        loaded = []
        for item in manifest_list:
            config_digest, config_size = self._member_to_blob(tar, names[item["Config"]], None)
            layers = []
            for layer in item["Layers"]:
                member = names[layer.lstrip("./")]
                digest, size = self._member_to_blob(tar, member, None)
                with open(self.blob_path(digest), "rb") as handle:
                    magic = handle.read(2)
                media = LAYER_GZIP[1] if magic == b"\x1f\x8b" else LAYER_PLAIN[1]
                layers.append({"mediaType": media, "digest": digest, "size": size})
            manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                        "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config_size},
                        "layers": layers}
            body = json.dumps(manifest, indent=3).encode()
            digest = self.put_blob(body)
            tags = [tag] if tag else (item.get("RepoTags") or [])
            if not tags:
                tags = [f"sha256:{_hex(digest)}"]
            self._unpack_all(digest)  # a refused layer raises before anything is tagged
            for name in tags:
                ref = name if name.startswith("sha256:") else str(references.parse(name))
                self._tag(ref, digest, DOCKER_MANIFEST, len(body))
                loaded.append(ref)
        return loaded

    def _load_oci(self, tar: tarfile.TarFile, names: dict[str, str], tag: str | None) -> list[str]:
        index = json.load(tar.extractfile(names["index.json"]))  # type: ignore[arg-type]
        loaded = []
        for member, original in names.items():
            if member.startswith("blobs/sha256/") and len(member) == len("blobs/sha256/") + 64:
                digest = "sha256:" + member.rsplit("/", 1)[1]
                if not self.has_blob(digest):
                    self._member_to_blob(tar, original, digest)
        for entry in index.get("manifests") or []:
            digest, media = entry["digest"], entry.get("mediaType", OCI_MANIFEST)
            if media in INDEX_TYPES:
                digest = self._choose_platform(json.loads(self.read_blob(digest)), references.parse("oci-archive"))
                media = json.loads(self.read_blob(digest)).get("mediaType", OCI_MANIFEST)
            name = tag or (entry.get("annotations") or {}).get(REF_ANNOTATION)
            if not name:
                name = f"sha256:{_hex(digest)}"
            elif ":" not in name.rsplit("/", 1)[-1] and "/" not in name and "." not in name:
                name = f"{tag or 'oci-archive'}:{name}" if not tag else name
            ref = name if name.startswith("sha256:") else str(references.parse(name))
            self._unpack_all(digest)
            self._tag(ref, digest, media, len(self.read_blob(digest)))
            loaded.append(ref)
        return loaded

    def _load_layout(self, layout: Path, tag: str | None) -> list[str]:
        """An OCI image layout directory (what `skopeo copy ... oci:DIR:TAG` writes)."""
        if not (layout / "oci-layout").exists() or not (layout / "index.json").exists():
            raise ImagePullError(f"{layout}: not an OCI image layout")
        index = json.loads((layout / "index.json").read_text())
        loaded = []
        for entry in index.get("manifests") or []:
            name = (entry.get("annotations") or {}).get(REF_ANNOTATION)
            if tag and len(index["manifests"]) > 1 and name != tag.rsplit(":", 1)[-1]:
                continue
            manifest = json.loads((layout / "blobs" / "sha256" / _hex(entry["digest"])).read_bytes())
            for descriptor in [manifest["config"], *manifest.get("layers", [])]:
                if not self.has_blob(descriptor["digest"]):
                    fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="load-")
                    os.close(fd)
                    shutil.copyfile(layout / "blobs" / "sha256" / _hex(descriptor["digest"]), tmp)
                    self._put_blob_file(Path(tmp), descriptor["digest"])
            body = (layout / "blobs" / "sha256" / _hex(entry["digest"])).read_bytes()
            digest = self.put_blob(body, entry["digest"])
            self._unpack_all(digest)
            ref = str(references.parse(tag or name or "oci-layout:latest"))
            self._tag(ref, digest, entry.get("mediaType", OCI_MANIFEST), len(body))
            loaded.append(ref)
        return loaded

    def _unpack_all(self, digest: str) -> None:
        image = self._image({"digest": digest})
        for layer in image.layers:
            self.unpack(image, layer)

    # -- removal, prune, budget --------------------------------------------
    def _container_records(self) -> list[dict]:
        records = []
        containers = self.work_dir / "containers"
        if containers.is_dir():
            for state in containers.glob("*/state.json"):
                try:
                    records.append(json.loads(state.read_text()))
                except (OSError, ValueError):
                    continue
        return records

    def in_use(self) -> set[str]:
        """Layer keys that some container (live or not yet cleaned) records as its lowerdirs."""
        return {key for record in self._container_records() for key in record.get("layers") or []}

    def images_in_use(self) -> set[str]:
        """Manifest digests of images some container runs."""
        return {r["image_digest"] for r in self._container_records() if r.get("image_digest")}

    def remove(self, name: str) -> list[str]:
        """Untag an image (every tag if a digest is given); then prune what it alone held."""
        entry = self.resolve(name)
        if entry is None:
            raise ImagePullError(f"image {name!r} is not in the store")
        by_digest = name.startswith("sha256:") or "@" in name
        removed = []
        with self._lock("index.lock"):
            index = self._read_index()
            keep = []
            for item in index["manifests"]:
                ref = (item.get("annotations") or {}).get(REF_ANNOTATION)
                if item is not None and (item == entry or (by_digest and item["digest"] == entry["digest"])):
                    removed.append(ref or item["digest"])
                else:
                    keep.append(item)
            index["manifests"] = keep
            self._write_index(index)
        self.prune()
        return removed

    def prune(self) -> dict:
        """Delete blobs no tagged image references and layer dirs no image nor container uses."""
        with self._lock("index.lock"):
            referenced: set[str] = set()
            keys: set[str] = set()
            for image in self.images():
                referenced.add(_hex(image.digest))
                referenced.add(_hex(image.manifest["config"]["digest"]))
                for layer in image.layers:
                    referenced.add(_hex(layer["digest"]))
                    keys.add(image.layer_key(layer))
            for entry in self.entries():
                referenced.add(_hex(entry["digest"]))
            used = self.in_use()
            freed = 0
            blobs = layers = 0
            for path in self.blobs.iterdir():
                if path.name not in referenced and path.name not in {k.split("+")[0] for k in used}:
                    freed += path.stat().st_size
                    path.unlink(missing_ok=True)
                    blobs += 1
            for path in self.layers_dir.iterdir():
                if path.suffix == ".size":
                    continue
                if path.name not in keys and path.name not in used:
                    freed += self._layer_size(path.name)
                    shutil.rmtree(path, ignore_errors=True)
                    (self.layers_dir / f"{path.name}.size").unlink(missing_ok=True)
                    layers += 1
            for path in self.access.iterdir():
                if path.name not in referenced:
                    path.unlink(missing_ok=True)
            for path in self.tmp.iterdir():  # leftovers of killed pulls (older than a minute)
                if time.time() - path.stat().st_mtime > 60:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return {"blobs_removed": blobs, "layers_removed": layers, "bytes_freed": freed}

    def _layer_size(self, key: str) -> int:
        try:
            return int((self.layers_dir / f"{key}.size").read_text())
        except (OSError, ValueError):
            return 0

    def usage(self) -> int:
        """Bytes the store holds: blobs plus unpacked layers."""
        total = sum(p.stat().st_size for p in self.blobs.iterdir())
        return total + sum(self._layer_size(p.name) for p in self.layers_dir.iterdir() if p.suffix != ".size")

    def last_used(self, digest: str) -> float:
        try:
            return (self.access / _hex(digest)).stat().st_mtime
        except OSError:
            return 0.0

    def enforce_budget(self, keep: set[str] | None = None) -> list[str]:
        """Evict least recently used images (never one in use) until under the budget."""
        if not self.budget_bytes:
            return []
        evicted: list[str] = []
        keep = set(keep or ()) | self.images_in_use()
        while self.usage() > self.budget_bytes:
            # untagging an image whose layers a container shares is fine: prune keeps those
            candidates = [i for i in self.images() if i.digest not in keep]
            if not candidates:
                break
            victim = min(candidates, key=lambda i: self.last_used(i.digest))
            evicted.extend(self.remove(victim.name))
        return evicted


def _disk_usage(path: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                pass
    return total


def new_id() -> str:
    return uuid.uuid4().hex[:12]

