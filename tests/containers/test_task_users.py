"""Who a container's process is: CommandInfo.user, else the image's User, else root (real runc)."""
from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import ContainerError
from tests.containers.conftest import Launches, stdout_of

IDS = "echo uid=$(id -u) gid=$(id -g); touch $MESOS_SANDBOX/mine"


def _image_with_user(launches: Launches, tmp_path: Path, user: str) -> None:
    from executor.images.store import ImageStore
    from tests.support import images

    archive = images.busybox_image(config={"User": user}).write_docker_archive(tmp_path / "user.tar", "local/runas:1")
    ImageStore(launches.work_dir).load(archive)
    launches.image = "local/runas:1"


def _ids(launches: Launches, command: dict) -> tuple[str, Path]:
    container = launches.launch(command)
    exit_info = container.wait(30)
    assert exit_info is not None and exit_info.exit_code == 0, (Path(container.spec.sandbox) / "stderr").read_text()
    return stdout_of(container).strip(), Path(container.spec.sandbox)


def test_the_tasks_user_wins_over_the_images_and_owns_the_sandbox(launches: Launches, tmp_path: Path) -> None:
    _image_with_user(launches, tmp_path, "1:1")  # its /etc/passwd knows root and nobody only
    printed, sandbox = _ids(launches, {"value": IDS})
    assert printed == "uid=1 gid=1" and (sandbox / "mine").stat().st_uid == 1
    printed, sandbox = _ids(launches, {"value": IDS, "user": "nobody"})
    assert printed == "uid=65534 gid=65534" and (sandbox / "mine").stat().st_uid == 65534


def test_an_image_without_a_user_runs_as_root(launches: Launches) -> None:
    printed, _ = _ids(launches, {"value": IDS})
    assert printed == "uid=0 gid=0"


def test_a_user_the_image_does_not_know_fails_the_launch(launches: Launches) -> None:
    with pytest.raises(ContainerError, match="user 'no-such-user-here' is not in the image's /etc/passwd"):
        launches.launch({"value": "true", "user": "no-such-user-here"})
