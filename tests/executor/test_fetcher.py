"""The executor's URI fetcher on real files, and a failed fetch ending a real task."""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from executor.fetcher import FetchError, fetch_all
from executor.host import HostLauncher
from executor.launcher import LaunchSpec
from executor.task_runner import TaskRunner


def test_tar_is_unpacked_and_kept_and_extract_false_leaves_it_packed(tmp_path: Path) -> None:
    archive = tmp_path / "src" / "app.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("app/run.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    first, second = tmp_path / "one", tmp_path / "two"
    fetch_all([{"value": archive.as_uri()}], first)
    fetch_all([{"value": str(archive), "extract": False}], second)
    assert (first / "app" / "run.txt").read_text() == "ok" and (first / "app.tgz").exists()
    assert sorted(p.name for p in second.iterdir()) == ["app.tgz"]


def test_executable_is_chmodded_and_output_file_renames(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    [fetched] = fetch_all([{"value": script.as_uri(), "executable": True, "output_file": "run.sh"}],
                          tmp_path / "sandbox")
    assert fetched.name == "run.sh" and fetched.stat().st_mode & 0o111


def test_cache_serves_a_uri_whose_source_is_gone(tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(b"v1")
    cache = tmp_path / "cache"
    fetch_all([{"value": source.as_uri(), "cache": True}], tmp_path / "a", cache)
    source.unlink()
    [again] = fetch_all([{"value": source.as_uri(), "cache": True}], tmp_path / "b", cache)
    assert again.read_bytes() == b"v1"
    with pytest.raises(FetchError, match="blob.bin"):
        fetch_all([{"value": source.as_uri()}], tmp_path / "c", cache)  # cache: false fetches afresh


def test_zip_member_escaping_the_sandbox_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zipped:
        zipped.writestr("../outside.txt", "x")
    with pytest.raises(FetchError, match="outside the sandbox"):
        fetch_all([{"value": evil.as_uri()}], tmp_path / "sandbox")
    assert not (tmp_path / "outside.txt").exists()


def test_unsupported_scheme_is_named(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="unsupported URI scheme 'ftp'"):
        fetch_all([{"value": "ftp://example.invalid/x.tar"}], tmp_path / "sandbox")


def test_failed_fetch_fails_the_task_before_its_command_runs(tmp_path: Path) -> None:
    updates: list[tuple[str, str | None, str | None]] = []
    marker = tmp_path / "ran"
    command = {"value": f"touch {marker}", "uris": [{"value": (tmp_path / "missing.tar").as_uri()}]}
    spec = LaunchSpec(task_id="t1", command=command, env={"PATH": "/usr/bin:/bin"}, sandbox=tmp_path / "sb",
                      work_dir=tmp_path / "work")
    runner = TaskRunner("t1", spec, HostLauncher(), lambda r, s, m, why, h: updates.append((s, m, why)))
    assert runner.start().join(10)
    assert [u[0] for u in updates] == ["TASK_STARTING", "TASK_FAILED"]
    assert updates[-1][2] == "REASON_CONTAINER_LAUNCH_FAILED" and "missing.tar" in (updates[-1][1] or "")
    assert not marker.exists()
