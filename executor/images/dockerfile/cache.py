"""The build cache: which layer a step made last time, keyed like Docker's.

A step's key is the chain of layers it starts from (the OCI ChainID of their diff
ids, or `scratch`) and what the step does: for RUN its command, environment
(build arguments included), user, working directory and network; for COPY and
ADD the content digest of the sources (names, modes, contents, link targets),
the destination and the flags. So an unchanged rebuild finds every step, and a
change invalidates that step and, through the chain, every step after it.

Entries live in `<store>/build-cache/<key>.json`; one whose blob is gone (pruned
with the image that used it) is a miss.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from executor.containers.state import read_json, write_json
from executor.images.dockerfile.layers import Layer

VERSION = 1  # bump when what a step makes for the same key changes
SCRATCH = "scratch"


def chain_id(parent: str, diff_id: str) -> str:
    """The OCI ChainID after one more layer (`parent` is SCRATCH below the first)."""
    if parent == SCRATCH:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def step_key(parent_chain: str, step: dict) -> str:
    body = json.dumps({"version": VERSION, "parent": parent_chain, "step": step}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


class Cache:
    def __init__(self, store_root: Path, enabled: bool = True) -> None:
        self.dir = Path(store_root) / "build-cache"
        self.enabled = enabled

    def get(self, key: str, has_blob) -> tuple[bool, Layer | None]:
        """(hit, layer): a hit with no layer is a step that changed nothing."""
        if not self.enabled:
            return False, None
        entry = read_json(self.dir / f"{key}.json")
        if entry is None:
            return False, None
        if entry.get("layer") is None:
            return True, None
        try:
            layer = Layer.from_json(entry["layer"])
        except (KeyError, TypeError, ValueError):
            return False, None
        return (True, layer) if has_blob(layer.digest) else (False, None)

    def put(self, key: str, layer: Layer | None, created_by: str) -> None:
        write_json(self.dir / f"{key}.json",
                   {"layer": layer.to_json() if layer is not None else None, "created_by": created_by})
