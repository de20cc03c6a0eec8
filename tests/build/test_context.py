"""The build context: `.dockerignore` as Docker reads it, and the sources COPY may (not) take."""
from __future__ import annotations

import io
import os
import socket
import tarfile
from pathlib import Path

import pytest

from executor.images.dockerfile.context import Context, ContextError, Ignore, digest, unpack_archive


def test_dockerignore_follows_dockers_examples() -> None:
    # The examples of Docker's documentation (reference/dockerfile, .dockerignore file).
    ignore = Ignore(["# comment", "*/temp*", "*/*/temp*", "temp?", "**/*.go", "*.md", "!README*.md",
                     "README-secret.md", "/node_modules", "build/", "!build/keep"])
    excluded = ["somedir/temporary.txt", "somedir/temp", "somedir/subdir/temporary.txt", "tempa", "x/y/z/main.go",
                "main.go", "notes.md", "README-secret.md", "node_modules", "node_modules/pkg/index.js",
                "build/out.o"]
    kept = ["temporary.txt", "tempab", "a/b/c/temp", "README.md", "READMEfirst.md", "src/main.c",
            "build/keep", "nodes_modules"]
    assert [p for p in excluded if not ignore.excluded(p)] == []
    assert [p for p in kept if ignore.excluded(p)] == []


def make_context(root: Path) -> Context:
    (root / "app" / "sub").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print('hi')\n")
    (root / "app" / "sub" / "data.txt").write_text("data\n")
    (root / "app" / "inside").symlink_to("main.py")
    (root / "top.txt").write_text("top\n")
    (root / "secret.key").write_text("key\n")
    (root / ".dockerignore").write_text("*.key\napp/sub\n!app/sub/data.txt\n")
    return Context(root)


def test_sources_files_dirs_wildcards_and_ignored(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    [app] = context.sources(["app"], "COPY")
    assert app.is_dir and [e.name for e in app.entries] == ["", "inside", "main.py", "sub", "sub/data.txt"]
    inside = next(e for e in app.entries if e.name == "inside")
    assert inside.link == "main.py"  # copied as a link, not followed
    [followed] = context.sources(["app/inside"], "COPY")  # named itself: followed, as Docker does
    assert followed.name == "app/main.py" and not followed.is_dir
    assert [s.name for s in context.sources(["*.txt", "/app/*.py"], "COPY")] == ["top.txt", "app/main.py"]
    with pytest.raises(ContextError, match="secret.key is excluded by .dockerignore"):
        context.sources(["secret.key"], "COPY")
    with pytest.raises(ContextError, match="nothing.txt not found in the build context"):
        context.sources(["nothing.txt"], "COPY")
    with pytest.raises(ContextError, match="no file in the build context matches \\*.none"):
        context.sources(["*.none"], "COPY")


@pytest.mark.parametrize("source", ["../outside.txt", "app/../../outside.txt", ".."])
def test_sources_never_leave_the_context(tmp_path: Path, source: str) -> None:
    (tmp_path / "outside.txt").write_text("host file\n")
    root = tmp_path / "ctx"
    root.mkdir()
    context = make_context(root)
    with pytest.raises(ContextError, match="outside the build context"):
        context.sources([source], "Dockerfile:3: COPY")


@pytest.mark.parametrize("target", ["/etc/passwd", "../../etc/passwd", "sub/../../.."])
def test_symlinks_pointing_out_are_refused_copied_or_followed(tmp_path: Path, target: str) -> None:
    root = tmp_path / "ctx"
    context = make_context(root)
    (root / "app" / "escape").symlink_to(target)
    with pytest.raises(ContextError, match="symlink app/escape points outside the build context"):
        context.sources(["app"], "COPY")
    with pytest.raises(ContextError, match="symlink app/escape points outside the build context"):
        context.sources(["app/escape"], "COPY")


def test_sockets_are_refused(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "app" / "control.sock"))
    try:
        with pytest.raises(ContextError, match="app/control.sock is a socket"):
            context.sources(["app"], "COPY")
    finally:
        listener.close()


def test_digest_follows_content_and_mode_not_times(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    first = digest(context.sources(["app"], "COPY"))
    os.utime(tmp_path / "app" / "main.py", (1, 1))
    assert digest(context.sources(["app"], "COPY")) == first
    (tmp_path / "app" / "main.py").chmod(0o755)
    second = digest(context.sources(["app"], "COPY"))
    assert second != first
    (tmp_path / "app" / "main.py").write_text("print('changed')\n")
    assert digest(context.sources(["app"], "COPY")) not in (first, second)


def tar_of(*entries: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in entries:
            tar.addfile(entry, io.BytesIO(b"x" * entry.size) if entry.isreg() else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("hostile, why", [
    (entry("../escape"), "path contains '..'"),
    (entry("/etc/cron.d/x"), "absolute path"),
    (entry("link", tarfile.SYMTYPE, "../../../etc"), "symlink points outside"),
    (entry("dev", tarfile.CHRTYPE), "device node"),
    (entry(".wh.passwd"), "whiteout entries"),
])
@pytest.mark.root
def test_add_refuses_hostile_archives(tmp_path: Path, hostile: tarfile.TarInfo, why: str) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "evil.tar.gz").write_bytes(tar_of(entry("fine"), hostile))
    [source] = Context(tmp_path / "ctx").sources(["evil.tar.gz"], "Dockerfile:2: ADD")
    (tmp_path / "into").mkdir()
    with pytest.raises(ContextError, match=f"Dockerfile:2: ADD: archive evil.tar.gz refused: .*{why}"):
        unpack_archive(source, tmp_path / "into", "Dockerfile:2: ADD")
