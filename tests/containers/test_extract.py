"""Hostile layers are refused entry by entry; whiteouts become overlay whiteouts."""
from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from executor.containers.rootfs import mount_overlay, unmount
from executor.images.extract import extract_layer
from executor.images.store import ImageStore
from framework.errors import LayerRejected
from tests.support import images
from tests.support.images import Entry, directory, file, hardlink, symlink

HOSTILE = {
    "dotdot": ([file("../escape", "x")], "../escape"),
    "dotdot-inside": ([directory("a"), file("a/../../escape", "x")], "a/../../escape"),
    "absolute": ([file("/etc/evil", "x")], "/etc/evil"),
    "symlink-out": ([directory("a"), symlink("a/out", "../../etc")], "a/out"),
    "symlink-out-deep": ([symlink("up", "x/../../..")], "up"),
    "hardlink-out": ([hardlink("passwd", "../../etc/passwd")], "passwd"),
    "hardlink-absolute": ([hardlink("passwd", "/etc/passwd")], "passwd"),
    "hardlink-missing": ([hardlink("ghost", "not/there")], "ghost"),
    "symlinked-parent": ([symlink("etc", "/tmp"), file("etc/evil", "x")], "etc/evil"),
    "symlinked-parent-relative": ([symlink("d", "."), file("d/d/f", "x")], "d/d/f"),
    "char-device": ([Entry("dev/mem", kind=tarfile.CHRTYPE, devmajor=1, devminor=1)], "dev/mem"),
    "block-device": ([Entry("dev/sda", kind=tarfile.BLKTYPE, devmajor=8, devminor=0)], "dev/sda"),
    "overlay-whiteout-device": ([Entry("hidden", kind=tarfile.CHRTYPE)], "hidden"),
}


@pytest.mark.root
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_is_refused_naming_the_entry(case: str, tmp_path: Path) -> None:
    entries, bad = HOSTILE[case]
    before = set(os.listdir("/etc"))
    with pytest.raises(LayerRejected) as caught:
        extract_layer(io.BytesIO(images.layer_tar(entries)), tmp_path / "layer")
    assert caught.value.entry == bad
    assert bad in str(caught.value)
    assert set(os.listdir("/etc")) == before
    assert not (tmp_path / "escape").exists() and not Path("/tmp/evil").exists()


@pytest.mark.root
def test_refused_layer_fails_the_pull_and_keeps_the_store_intact(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "work")
    good = images.busybox_image([[file("ok", "fine\n")]])
    store.load(good.write_docker_archive(tmp_path / "good.tar", "good:1"))
    evil = images.busybox_image([[file("fine", "x"), symlink("link", "/"), file("link/etc/passwd", "x")]])
    with pytest.raises(LayerRejected, match="link/etc/passwd"):
        store.load(evil.write_docker_archive(tmp_path / "evil.tar", "evil:1"))
    assert list(store.tmp.iterdir()) == []
    assert store.resolve("evil:1") is None
    layer = store.layer_dir(store.image("good:1").layer_key(evil.layer_descriptors[-1]))
    assert not layer.exists()
    assert (store.prepare("good:1")[1][-1] / "ok").read_text() == "fine\n"


@pytest.mark.root
def test_safe_links_are_kept(tmp_path: Path) -> None:
    entries = [directory("bin"), file("bin/busybox", "elf", 0o755), symlink("bin/sh", "/bin/busybox"),
               symlink("bin/up", "../bin/busybox"), hardlink("bin/hard", "bin/busybox"),
               Entry("fifo", kind=tarfile.FIFOTYPE)]
    extract_layer(io.BytesIO(images.layer_tar(entries)), tmp_path)
    assert os.readlink(tmp_path / "bin" / "sh") == "/bin/busybox"
    assert os.stat(tmp_path / "bin" / "hard").st_ino == os.stat(tmp_path / "bin" / "busybox").st_ino
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


@pytest.mark.root
def test_setid_bits_dropped_unless_the_image_allows(tmp_path: Path) -> None:
    entries = [file("su", "elf", 0o4755), file("wall", "elf", 0o2755), directory("shared", 0o2775)]
    extract_layer(io.BytesIO(images.layer_tar(entries)), tmp_path / "plain")
    assert stat.S_IMODE(os.stat(tmp_path / "plain" / "su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "plain" / "wall").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "plain" / "shared").st_mode) == 0o775
    extract_layer(io.BytesIO(images.layer_tar(entries)), tmp_path / "kept", keep_setid=True)
    assert stat.S_IMODE(os.stat(tmp_path / "kept" / "su").st_mode) == 0o4755
    # through the store: the image config's label decides
    store = ImageStore(tmp_path / "work")
    allowed = images.busybox_image([entries], config={"Labels": {"org.dockyard.allow-setid": "true"}})
    store.load(allowed.write_docker_archive(tmp_path / "a.tar", "setid:yes"))
    assert stat.S_IMODE(os.stat(store.prepare("setid:yes")[1][-1] / "su").st_mode) == 0o4755
    store.load(images.busybox_image([entries]).write_docker_archive(tmp_path / "b.tar", "setid:no"))
    assert stat.S_IMODE(os.stat(store.prepare("setid:no")[1][-1] / "su").st_mode) == 0o755


@pytest.mark.root
def test_whiteouts_hide_lower_files_in_the_overlay(tmp_path: Path) -> None:
    lower = [directory("a"), file("a/x", "x"), file("a/y", "y"), directory("b"), file("b/old", "old"),
             file("gone", "g")]
    upper = [file("a/.wh.x", ""), file("b/.wh..wh..opq", ""), file("b/new", "new"), file(".wh.gone", "")]
    extract_layer(io.BytesIO(images.layer_tar(lower)), tmp_path / "l1")
    extract_layer(io.BytesIO(images.layer_tar(upper)), tmp_path / "l2")
    whiteout = os.lstat(tmp_path / "l2" / "a" / "x")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(tmp_path / "l2" / "b", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "l2" / "a" / ".wh.x").exists()
    root = tmp_path / "root"
    mount_overlay([tmp_path / "l1", tmp_path / "l2"], tmp_path / "up", tmp_path / "work", root)
    try:
        assert sorted(os.listdir(root / "a")) == ["y"]
        assert sorted(os.listdir(root / "b")) == ["new"]
        assert not (root / "gone").exists()
    finally:
        unmount(root)
    assert not os.path.ismount(root)
