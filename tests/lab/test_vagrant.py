"""`vagrant validate` on the lab's Vagrantfile (Debian's vagrant and vagrant-libvirt).

The libvirt provider plugin is a Debian package, so the libvirt settings are
validated in full. VirtualBox is not in Debian: Vagrant refuses to validate a
provider it cannot use, so the VirtualBox block is only checked to parse (with
--ignore-provider), not that its settings exist.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import REPO

VAGRANT_DIR = REPO / "vagrant"

pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None,
                                reason="Debian's vagrant is not installed (make debs adds it)")


def validate(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "home"),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_CHECKPOINT_DISABLE": "1",
           **settings}
    return subprocess.run(["vagrant", "validate", *args], cwd=VAGRANT_DIR, env=env,
                          capture_output=True, text=True, timeout=180)


def libvirt_plugin() -> bool:
    return Path("/usr/share/rubygems-integration/all/specifications").exists() and any(
        "vagrant-libvirt" in p.name
        for p in Path("/usr/share/rubygems-integration/all/specifications").iterdir())


@pytest.mark.skipif(not libvirt_plugin(),
                    reason="vagrant-libvirt (Debian package) is not installed")
def test_vagrantfile_validates_with_libvirt(tmp_path: Path) -> None:
    done = validate(tmp_path, VAGRANT_DEFAULT_PROVIDER="libvirt", DOCKYARD_AGENTS="3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout
    assert not (VAGRANT_DIR / ".vagrant").exists()


def test_vagrantfile_parses_for_every_provider(tmp_path: Path) -> None:
    done = validate(tmp_path, "--ignore-provider", DOCKYARD_MESOS="embedded", DOCKYARD_ZK="0",
                    DOCKYARD_ROUTER="0")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name,value,message", [
    ("DOCKYARD_AGENTS", "0", "DOCKYARD_AGENTS must be a number from 1 to 20"),
    ("DOCKYARD_SUBNET", "8.8.8", "DOCKYARD_SUBNET must be three octets of a private range"),
    ("DOCKYARD_ROUTER", "yes", "DOCKYARD_ROUTER must be 0 or 1"),
])
def test_bad_settings_are_refused_by_name(tmp_path: Path, name: str, value: str,
                                          message: str) -> None:
    done = validate(tmp_path, "--ignore-provider", **{name: value})
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
