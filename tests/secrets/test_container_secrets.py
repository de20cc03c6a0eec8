"""Secrets inside a container, launched directly (no cluster): the tmpfs, the files, config.json."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from framework.mesos.secrets import value_secret
from tests.containers.conftest import Launches, stdout_of, wait_output

pytestmark = pytest.mark.root
VALUE = "line one\nline 'two' $HOME"


def mounted(path: Path) -> str | None:
    """The filesystem type mounted at `path`, if any."""
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            parts = line.split()
            if parts[4] == str(path):
                return parts[parts.index("-") + 1]
    return None


def test_secret_files_and_environment_stay_on_the_containers_tmpfs(launches: Launches) -> None:
    command = {"value": 'printf %s "$DB_PW" | sha256sum; sha256sum < /mnt/mesos/sandbox/s/pw; '
                        'id -u; stat -c "%a %u %g" /mnt/mesos/sandbox/s/pw /etc/tls.key; '
                        'sha256sum < /etc/tls.key; echo x > /etc/tls.key 2>/dev/null || echo read-only; echo ready; sleep 60',
               "user": "nobody",
               "environment": {"variables": [{"name": "DB_PW", "type": "SECRET", "secret": value_secret(VALUE.encode())},
                                             {"name": "PLAIN", "value": "p"}]}}
    volumes = [{"container_path": "s/pw", "mode": "RO",
                "source": {"type": "SECRET", "secret": value_secret(VALUE.encode())}},
               {"container_path": "/etc/tls.key", "mode": "RO",
                "source": {"type": "SECRET", "secret": value_secret(b"binary\x00\xff")}}]
    container = launches.launch(command, container={"volumes": volumes})
    wait_output(container, "ready")
    digest = hashlib.sha256(VALUE.encode()).hexdigest()
    lines = stdout_of(container).splitlines()
    assert lines[0].split()[0] == lines[1].split()[0] == digest
    assert lines[2] == "65534"
    assert lines[3:5] == ["400 65534 65534", "400 65534 65534"], "0400, the task's user's"
    assert lines[5].split()[0] == hashlib.sha256(b"binary\x00\xff").hexdigest()
    assert "read-only" in lines
    secrets_dir = container.dir / "secrets"
    assert mounted(secrets_dir) == "tmpfs"
    assert (secrets_dir / "config.json").exists() and not (container.bundle / "config.json").exists()
    # `runtime exec` (COMMAND health checks) finds the container's config on the tmpfs too.
    done = subprocess.run(container.exec_argv(["/bin/sh", "-c", 'printf %s "$DB_PW" | sha256sum']),
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.split()[0] == digest, done.stderr
    on_disk = [p for p in Path(container.spec.sandbox).rglob("*") if p.is_file() and VALUE.encode() in p.read_bytes()]
    on_disk += [p for p in container.dir.rglob("*") if secrets_dir not in p.parents and p.is_file()
                and VALUE.encode() in p.read_bytes()]
    assert not on_disk
    container.destroy()
    assert mounted(secrets_dir) is None and not container.dir.exists()


def test_a_host_task_cannot_have_a_secret_file(tmp_path: Path) -> None:
    from executor.host import HostLauncher
    from executor.launcher import LaunchSpec

    spec = LaunchSpec(task_id="t", command={"value": "true"}, env={}, sandbox=tmp_path / "sandbox",
                      container={"type": "MESOS", "volumes": [{"container_path": "pw", "source": {
                          "type": "SECRET", "secret": value_secret(b"x")}}]}, work_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a container image"):
        HostLauncher().launch(spec)
