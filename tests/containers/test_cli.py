"""`dockyard image ...` end to end, as a person or a script runs it."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import images, registry
from tests.support.procs import dockyard

pytestmark = pytest.mark.root  # layer extraction chowns and makes whiteout devices


def cli(*args: str) -> str:
    result = subprocess.run(dockyard("image", *args), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_image_commands(busybox: str, reg: registry.Registry, tmp_path: Path) -> None:
    work = ["--work-dir", str(tmp_path / "work")]
    pulled = json.loads(cli("pull", busybox, "--json", *work))
    assert pulled["image"] == busybox and pulled["bytes_received"] > 1_000_000
    listed = json.loads(cli("ls", "--json", *work))
    assert [row["image"] for row in listed] == [busybox] and listed[0]["layers"] == 2
    assert busybox in cli("ls", *work)
    inspected = json.loads(cli("inspect", busybox, *work))
    assert inspected["digest"] == pulled["digest"] and inspected["config"]["config"]["WorkingDir"] == "/tmp"
    dest = f"{reg.host}/test/cli-pushed:1"
    assert json.loads(cli("push", busybox, dest, "--json", *work))["digest"] == pulled["digest"]
    assert images.skopeo_inspect(f"docker://{dest}")["Digest"] == pulled["digest"]
    archive = images.busybox_image([[images.file("x", "y")]]).write_docker_archive(tmp_path / "a.tar", "local/x:1")
    assert json.loads(cli("load", str(archive), "--json", *work))["loaded"] == ["docker.io/local/x:1"]
    assert json.loads(cli("rm", "local/x:1", "--json", *work))["removed"] == ["docker.io/local/x:1"]
    assert json.loads(cli("prune", "--json", *work))["blobs_removed"] == 0
    failed = subprocess.run(dockyard("image", "inspect", "no/such:image", *work), capture_output=True, text=True)
    assert failed.returncode == 1 and "not in the store" in failed.stderr
