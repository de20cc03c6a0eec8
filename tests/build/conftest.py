"""Builds for real: a store with a busybox base image, a context on disk, the events seen."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from executor.images.dockerfile import BuildOptions, BuildResult, build
from executor.images.store import ImageStore
from tests.support import images

BASE = "busybox:base"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/build" in str(item.fspath) and os.geteuid() != 0 and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason="needs root"))


@dataclass
class Builds:
    """A work dir whose store holds BASE, and a build context directory to write into."""

    work: Path
    context: Path
    events: list[dict] = field(default_factory=list)

    @property
    def store(self) -> ImageStore:
        return ImageStore(self.work)

    def write(self, files: dict[str, str | bytes]) -> None:
        for name, content in files.items():
            path = self.context / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)

    def build(self, dockerfile: str | None = None, **options) -> BuildResult:
        if dockerfile is not None:
            self.write({"Dockerfile": dockerfile})
        self.events = []
        options.setdefault("tags", ["test/app:1"])
        return build(BuildOptions(self.context, **options), self.store, self.events.append)

    def snapshot(self) -> dict:
        """What a build may change in the store: tags, blobs, unpacked layers, cache entries."""
        root = self.work / "images"
        return {"index": [(e.get("annotations") or {}).get("org.opencontainers.image.ref.name", "") + e["digest"]
                          for e in self.store.entries()],
                "blobs": sorted(p.name for p in (root / "blobs" / "sha256").iterdir()),
                "layers": sorted(p.name for p in (root / "layers").iterdir()),
                "cache": sorted(p.name for p in (root / "build-cache").iterdir()) if (root / "build-cache").exists()
                else []}


@pytest.fixture
def builds(tmp_path: Path) -> Builds:
    work = tmp_path / "work"
    layout = images.busybox_image().write_oci_layout(tmp_path / "base-layout", "base")
    ImageStore(work).load(layout, BASE)
    context = tmp_path / "context"
    context.mkdir()
    return Builds(work, context)
