"""`dockyard image build`: layers from directories and busybox-static, written and loaded for real."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from executor.images import build
from executor.images.store import ImageStore
from tests.support.procs import dockyard

pytestmark = pytest.mark.root  # loading unpacks layers (chown, whiteout devices)


def run_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(dockyard("image", "build", *args), capture_output=True, text=True, timeout=120)


def test_build_output_and_load_with_config_and_progress(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "srv").mkdir(parents=True)
    (app / "srv" / "hello.sh").write_text("#!/bin/sh\necho hello\n")
    os.chmod(app / "srv" / "hello.sh", 0o755)
    os.link(app / "srv" / "hello.sh", app / "srv" / "again.sh")
    (app / "srv" / "link").symlink_to("hello.sh")
    work = tmp_path / "work"
    result = run_build("--tag", "demo/app:1", "--busybox", "--from-rootfs", str(app), "--cmd", '["/srv/hello.sh"]',
                       "--entrypoint", "/bin/sh -e", "--env", "MODE=demo", "--env", "EMPTY=", "--workdir", "/srv",
                       "--label", "team=blue", "--output", str(tmp_path / "app.tar"), "--load",
                       "--work-dir", str(work))
    assert result.returncode == 0, result.stderr
    assert "[1/2] busybox root" in result.stderr and "[2/2] layer from" in result.stderr  # progress, step by step
    assert "wrote" in result.stderr and "loaded docker.io/demo/app:1" in result.stderr
    # the docker-archive is what `docker save` writes
    with tarfile.open(tmp_path / "app.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["demo/app:1"] and len(manifest[0]["Layers"]) == 2
    # the store holds it with its config; the layer kept modes, hard and symbolic links
    store = ImageStore(work)
    image, dirs = store.prepare("demo/app:1", pull=False)
    config = image.config["config"]
    assert config["Cmd"] == ["/srv/hello.sh"] and config["Entrypoint"] == ["/bin/sh", "-e"]
    assert "MODE=demo" in config["Env"] and "EMPTY=" in config["Env"] and config["WorkingDir"] == "/srv"
    assert config["Labels"] == {"team": "blue"}
    assert (dirs[0] / "bin" / "busybox").is_file() and os.readlink(dirs[0] / "bin" / "sh") == "busybox"
    assert (dirs[0] / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert (dirs[0] / "tmp").stat().st_mode & 0o1777 == 0o1777
    hello = dirs[1] / "srv" / "hello.sh"
    assert hello.stat().st_mode & 0o777 == 0o755 and os.readlink(dirs[1] / "srv" / "link") == "hello.sh"
    assert hello.stat().st_ino == (dirs[1] / "srv" / "again.sh").stat().st_ino
    # the same input gives the same layer digest: nothing time-dependent goes in
    assert build.layer_from_dir(app) == build.layer_from_dir(app)


def test_build_refuses_what_the_store_would_refuse_and_bad_usage(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "control.sock"))
    try:
        refused = run_build("--tag", "x:1", "--from-rootfs", str(root), "--output", str(tmp_path / "x.tar"))
    finally:
        listener.close()
    assert refused.returncode == 1 and "control.sock" in refused.stderr
    assert not (tmp_path / "x.tar").exists()
    nothing = run_build("--tag", "x:1", "--output", str(tmp_path / "x.tar"))
    assert nothing.returncode == 2 and "--from-rootfs" in nothing.stderr
    nowhere = run_build("--tag", "x:1", "--busybox")
    assert nowhere.returncode == 2 and "--output" in nowhere.stderr
    bad_env = run_build("--tag", "x:1", "--busybox", "--env", "NOEQUALS", "--load", "--work-dir", str(tmp_path))
    assert bad_env.returncode != 0 and "KEY=VALUE" in bad_env.stderr


def test_test_images_come_from_the_same_builder() -> None:
    from tests.support import images

    assert images.BuiltImage is build.BuiltImage and images.layer_tar is build.layer_tar
    entries = {entry.name for entry in images.busybox_entries()}
    assert {"bin/busybox", "bin/sh", "bin/httpd", "etc/passwd", "tmp", "www/index.html"} <= entries
