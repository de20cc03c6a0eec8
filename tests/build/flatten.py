"""An image's root file system, flattened from its layer tarballs, as comparable data.

Reads an OCI image layout directory (dockyard's store is one; `buildah push ... oci:DIR`
writes one) with the standard library only, applying OCI whiteouts layer by layer,
so both images are read by the same code and neither builder's unpacking is trusted.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from pathlib import Path

Tree = dict[str, tuple]  # path -> (type, mode, uid, gid, sha256 or link target)


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def manifest(layout: Path, name: str) -> dict:
    """The manifest the index annotates with `name` (org.opencontainers.image.ref.name)."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == name:
            return json.loads(_blob(layout, entry["digest"]).read_bytes())
    raise KeyError(f"{name} not in {layout}")


def config(layout: Path, name: str) -> dict:
    return json.loads(_blob(layout, manifest(layout, name)["config"]["digest"]).read_bytes())


def flatten(layout: Path, name: str) -> Tree:
    tree: Tree = {}
    for descriptor in manifest(layout, name)["layers"]:
        with tarfile.open(_blob(layout, descriptor["digest"])) as tar:
            for member in tar:
                path = posixpath.normpath("/" + member.name)
                directory, base = posixpath.split(path)
                if base == ".wh..wh..opq":
                    for key in [k for k in tree if k.startswith(directory.rstrip("/") + "/")]:
                        del tree[key]
                    continue
                if base.startswith(".wh."):
                    hidden = posixpath.join(directory, base[4:])
                    for key in [k for k in tree if k == hidden or k.startswith(hidden + "/")]:
                        del tree[key]
                    continue
                if path in tree and not (member.isdir() and tree[path][0] == "dir"):
                    for key in [k for k in tree if k.startswith(path + "/")]:
                        del tree[key]
                if member.isreg():
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    content = hashlib.sha256(data).hexdigest()
                    kind = "file"
                elif member.islnk():
                    target = posixpath.normpath("/" + member.linkname)
                    kind, content = tree[target][0], tree[target][4]
                else:
                    kind = "dir" if member.isdir() else "symlink" if member.issym() else f"type {member.type!r}"
                    content = member.linkname if member.issym() else ""
                tree[path] = (kind, member.mode & 0o7777, member.uid, member.gid, content)
    tree.pop("/", None)
    return tree
