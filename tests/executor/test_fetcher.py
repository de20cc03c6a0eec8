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


# -- the cache's budget, over a real HTTP server ------------------------------------------------

class ArtifactServer:
    """A real HTTP server on loopback (its own thread) that counts GETs per path.

    `gate(path)` makes that path send half its body, then wait until `release(path)`."""

    def __init__(self, root: Path) -> None:
        import http.server
        import threading

        self.root = root
        self.hits: dict[str, int] = {}
        self.gates: dict[str, threading.Event] = {}
        self.halfway: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                name = self.path.lstrip("/")
                with server.lock:
                    server.hits[name] = server.hits.get(name, 0) + 1
                path = server.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                gate = server.gates.get(name)
                if gate is not None:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.halfway[name].set()
                    gate.wait(30)
                    self.wfile.write(body[len(body) // 2:])
                else:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def put(self, name: str, size: int) -> str:
        (self.root / name).write_bytes(name.encode()[:1] * size)
        return f"{self.url}/{name}"

    def gate(self, name: str) -> None:
        import threading

        self.gates[name], self.halfway[name] = threading.Event(), threading.Event()

    def release(self, name: str) -> None:
        self.gates.pop(name).set()

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "served"
    root.mkdir()
    served = ArtifactServer(root)
    try:
        yield served
    finally:
        served.close()


def cached_names(cache: Path) -> list[str]:
    return sorted(p.name.split("-", 1)[1] for p in cache.iterdir() if p.name != ".lock")


def test_cache_evicts_the_least_recently_used_entry_to_stay_in_budget(server: ArtifactServer,
                                                                     tmp_path: Path) -> None:
    a, b, c = (server.put(name, 100) for name in ("a.bin", "b.bin", "c.bin"))
    cache = tmp_path / "cache"

    def fetch(url: str, where: str) -> Path:
        [path] = fetch_all([{"value": url, "cache": True}], tmp_path / where, cache, cache_size=250)
        return path

    fetch(a, "s1"), fetch(b, "s2")
    assert fetch(a, "s3").read_bytes() == b"a" * 100  # a hit: a is now the most recently used
    assert server.hits == {"a.bin": 1, "b.bin": 1}
    fetch(c, "s4")  # 300 bytes would not fit in 250: b, the least recently used, goes
    assert cached_names(cache) == ["a.bin", "c.bin"]
    assert sum(p.stat().st_size for p in cache.iterdir()) <= 250
    fetch(a, "s5")
    assert server.hits["a.bin"] == 1  # still served from the cache
    assert fetch(b, "s6").read_bytes() == b"b" * 100 and server.hits["b.bin"] == 2  # fetched again
    assert cached_names(cache) == ["a.bin", "b.bin"]  # c was the least recently used this time


def test_an_entry_being_downloaded_is_never_evicted(server: ArtifactServer, tmp_path: Path) -> None:
    import threading

    old, slow, other = server.put("old.bin", 100), server.put("slow.bin", 150), server.put("other.bin", 200)
    cache = tmp_path / "cache"
    fetch_all([{"value": old, "cache": True}], tmp_path / "s0", cache, cache_size=300)
    server.gate("slow.bin")
    results: list[object] = []
    slow_fetch = threading.Thread(target=lambda: results.append(
        fetch_all([{"value": slow, "cache": True}], tmp_path / "s1", cache, cache_size=300)))
    slow_fetch.start()
    try:
        assert server.halfway["slow.bin"].wait(10)
        # slow.bin holds 150 bytes of the 300 while it downloads; other.bin needs 200: even with
        # old.bin evicted it would not fit, so it bypasses the cache and nothing is evicted
        [fetched] = fetch_all([{"value": other, "cache": True}], tmp_path / "s2", cache, cache_size=300)
        assert fetched.read_bytes() == b"o" * 200
        assert cached_names(cache) == ["old.bin", "slow.bin.partial"]
        # a second task wanting slow.bin waits for the download instead of starting another
        second: list[object] = []
        waiter = threading.Thread(target=lambda: second.append(
            fetch_all([{"value": slow, "cache": True}], tmp_path / "s3", cache, cache_size=300)))
        waiter.start()
    finally:
        server.release("slow.bin")
    slow_fetch.join(10)
    waiter.join(10)
    assert results and second, "a fetch did not finish"
    assert (tmp_path / "s1" / "slow.bin").read_bytes() == (tmp_path / "s3" / "slow.bin").read_bytes() == b"s" * 150
    assert server.hits["slow.bin"] == 1
    assert cached_names(cache) == ["old.bin", "slow.bin"]
    # no longer in use: other.bin now fits by evicting both, least recently used first
    fetch_all([{"value": other, "cache": True}], tmp_path / "s4", cache, cache_size=300)
    assert cached_names(cache) == ["other.bin"] and server.hits["other.bin"] == 2


def test_an_entry_being_copied_out_is_not_evicted(server: ArtifactServer, tmp_path: Path) -> None:
    """Another executor copying a cached file holds it shared; eviction passes it over."""
    import fcntl

    first, second = server.put("first.bin", 100), server.put("second.bin", 100)
    cache = tmp_path / "cache"
    fetch_all([{"value": first, "cache": True}], tmp_path / "s1", cache, cache_size=150)
    [entry] = [p for p in cache.iterdir() if p.name.endswith("first.bin")]
    with open(entry, "rb") as reader:  # what a concurrent fetch does while it copies
        fcntl.flock(reader, fcntl.LOCK_SH)
        fetch_all([{"value": second, "cache": True}], tmp_path / "s2", cache, cache_size=150)
        assert cached_names(cache) == ["first.bin"]  # second.bin bypassed the cache
    fetch_all([{"value": second, "cache": True}], tmp_path / "s3", cache, cache_size=150)
    assert cached_names(cache) == ["second.bin"] and server.hits["second.bin"] == 2


def test_budget_comes_from_the_environment_and_zero_disables_the_cache(server: ArtifactServer, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.put("blob.bin", 2048)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DOCKYARD_FETCHER_CACHE_SIZE", "1KB")
    fetch_all([{"value": url, "cache": True}], tmp_path / "s1", cache)
    assert cached_names(cache) == []  # 2 KB do not fit in 1 KB
    monkeypatch.setenv("DOCKYARD_FETCHER_CACHE_SIZE", "0")
    fetch_all([{"value": url, "cache": True}], tmp_path / "s2", cache)
    assert cached_names(cache) == []
    monkeypatch.setenv("DOCKYARD_FETCHER_CACHE_SIZE", "2KB")
    fetch_all([{"value": url, "cache": True}], tmp_path / "s3", cache)
    fetch_all([{"value": url, "cache": True}], tmp_path / "s4", cache)
    assert cached_names(cache) == ["blob.bin"] and server.hits["blob.bin"] == 3  # s4 was a hit
    monkeypatch.setenv("DOCKYARD_FETCHER_CACHE_SIZE", "lots")
    with pytest.raises(FetchError, match="DOCKYARD_FETCHER_CACHE_SIZE"):
        fetch_all([{"value": url, "cache": True}], tmp_path / "s5", cache)
