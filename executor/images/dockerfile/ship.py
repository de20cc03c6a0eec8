"""A built image into more stores (every agent of an `up` cluster) and to a registry.

`copy_image` is what `dockyard image build` does for the agents after the first:
each blob the other store lacks is hard-linked when both stores share a file
system (else copied), every layer is unpacked there under the store's own rules,
and only then is the image tagged. `push` is the store's push, counting the
bytes sent, so only the layers the registry lacks travel.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from executor.images.registry import Credentials
from executor.images.store import ImageStore


def copy_image(source: ImageStore, target: ImageStore, names: list[str]) -> None:
    """Put the images `names` (as `source` tags them) into `target` under the same names."""
    for name in names:
        image = source.image(name)
        for descriptor in [{"digest": image.digest}, image.manifest["config"], *image.layers]:
            digest = descriptor["digest"]
            if target.has_blob(digest):
                continue
            fd, tmp = tempfile.mkstemp(dir=target.tmp, prefix="copy-")
            os.close(fd)
            os.unlink(tmp)
            try:
                os.link(source.blob_path(digest), tmp)
            except OSError:
                shutil.copyfile(source.blob_path(digest), tmp)
            os.replace(tmp, target.blob_path(digest))
        for layer in image.layers:
            target.unpack(image, layer)
        media = image.manifest.get("mediaType") or ""
        target._tag(name, image.digest, media, len(source.read_blob(image.digest)))


def push(store: ImageStore, names: list[str], credentials: Credentials | None = None) -> list[dict]:
    """Push each tag to the registry its name says; (image, digest, bytes sent) for each."""
    pushed = []
    for name in names:
        digest = store.push(name, credentials=credentials)
        sent = store.last_client.bytes_sent if store.last_client else 0
        pushed.append({"image": name, "digest": digest, "bytes_sent": sent})
    return pushed
