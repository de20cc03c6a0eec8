"""Dockerfile builds for real: runc RUN steps on overlays, layers, the cache, multi-stage, refusals."""
from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from executor.images.dockerfile import DockerfileError, RunFailed
from executor.images.dockerfile.context import ContextError
from tests.build.conftest import BASE, Builds
from tests.build.flatten import flatten
from tests.containers.conftest import traces
from tests.support.procs import dockyard, wait_for

pytestmark = pytest.mark.root  # overlay mounts, runc, cgroups

APP = "docker.io/test/app:1"


def tree(builds: Builds, name: str = APP) -> dict:
    return flatten(builds.work / "images", name)


def content(builds: Builds, path: str, name: str = APP) -> bytes:
    """A file of the image as its layers leave it (the store's unpacked layers, top one first)."""
    image = builds.store.image(name)
    for layer in reversed(image.layers):
        candidate = builds.store.layer_dir(image.layer_key(layer)) / path.lstrip("/")
        if candidate.is_file():
            return candidate.read_bytes()
    raise FileNotFoundError(path)


def test_config_instructions_and_files(builds: Builds) -> None:
    builds.write({"app/main.py": "print('hi')\n", "app/lib/util.py": "X = 1\n", "conf.ini": "[app]\n"})
    result = builds.build(
        "ARG VERSION=1.0\n"
        f"FROM {BASE}\n"
        "ARG VERSION\n"
        "ARG GREETING=hello\n"
        "ENV APP_HOME=/srv/app VERSION=$VERSION\n"
        "WORKDIR $APP_HOME\n"
        "COPY app/ ./\n"
        "COPY --chown=nobody:nogroup --chmod=0640 conf.ini /etc/app/\n"
        'RUN echo "$GREETING $VERSION" > built.txt && id -u > uid.txt\n'
        'LABEL org.example.version=$VERSION "a b"=c\n'
        "EXPOSE 8080 53/udp 9000-9002\n"
        "USER nobody\n"
        "STOPSIGNAL SIGINT\n"
        "HEALTHCHECK --interval=10s --timeout=2s --retries=2 CMD wget -q -O- localhost:8080\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        "ENTRYPOINT exec httpd\n"
        'CMD ["-f"]\n', build_args={"VERSION": "2.0"})
    config = builds.store.image(APP).config["config"]
    # ENV takes the --build-arg value; the ARGs themselves stay out of the image
    assert config["Env"][0].startswith("PATH=") and config["Env"][1:] == ["APP_HOME=/srv/app", "VERSION=2.0"]
    assert config["WorkingDir"] == "/srv/app" and config["User"] == "nobody" and config["StopSignal"] == "SIGINT"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}, "9000/tcp": {}, "9001/tcp": {}, "9002/tcp": {}}
    assert config["Labels"] == {"org.example.version": "2.0", "a b": "c"}
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- localhost:8080"], "Interval": 10 ** 10,
                                     "Timeout": 2 * 10 ** 9, "Retries": 2}
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["Entrypoint"] == ["/bin/sh", "-ec", "exec httpd"] and config["Cmd"] == ["-f"]
    files = tree(builds)
    assert files["/srv/app/main.py"][:4] == ("file", 0o644, 0, 0)
    assert files["/srv/app/lib/util.py"][0] == "file" and files["/srv/app/lib"][0] == "dir"
    assert files["/etc/app/conf.ini"][:4] == ("file", 0o640, 65534, 65534)
    assert content(builds, "/srv/app/built.txt") == b"hello 2.0\n" and content(builds, "/srv/app/uid.txt") == b"0\n"
    history = builds.store.image(APP).config["history"]
    assert sum(1 for h in history if not h.get("empty_layer")) == len(result.layers)
    assert [s.instruction for s in result.steps][:2] == ["FROM busybox:base", "ARG VERSION"]


def test_entrypoint_drops_the_base_images_cmd(builds: Builds) -> None:
    builds.build(f"FROM {BASE}\nENTRYPOINT [\"/bin/echo\"]\n")
    config = builds.store.image(APP).config["config"]
    assert config["Entrypoint"] == ["/bin/echo"] and "Cmd" not in config  # the base's CMD was ["/bin/sh"]


DOCKERFILE = (f"FROM {BASE}\n"
              "COPY lib/ /opt/lib/\n"
              "RUN cat /opt/lib/*.txt > /opt/all.txt\n"
              "ENV MODE=prod\n"
              "COPY main.sh /opt/main.sh\n"
              'CMD ["/opt/main.sh"]\n')


def test_cache_reuses_steps_and_rebuilds_from_the_change(builds: Builds) -> None:
    builds.write({"lib/a.txt": "a\n", "lib/b.txt": "b\n", "main.sh": "#!/bin/sh\necho v1\n"})
    cold = builds.build(DOCKERFILE)
    assert cold.layers_written == 3 and not any(step.cached for step in cold.steps)
    before = builds.snapshot()
    again = builds.build()
    assert again.digest == cold.digest and again.layers_written == 0
    assert [s.cached for s in again.steps if s.layer] == [True, True, True]
    assert builds.snapshot() == before  # no layer, no blob, no cache entry written
    os.utime(builds.context / "main.sh", (12345, 12345))  # times are no part of the key
    assert builds.build().digest == cold.digest

    (builds.context / "main.sh").write_text("#!/bin/sh\necho v2\n")
    changed = builds.build()
    assert [(s.instruction, s.cached) for s in changed.steps if s.layer] == [
        ("COPY lib/ /opt/lib/", True), ("RUN cat /opt/lib/*.txt > /opt/all.txt", True),
        ("COPY main.sh /opt/main.sh", False)]
    new_blobs = set(builds.snapshot()["blobs"]) - set(before["blobs"])
    assert len(new_blobs) == 3  # the one new layer, the config and the manifest
    assert changed.layers[:-1] == cold.layers[:-1] and changed.layers[-1] != cold.layers[-1]

    (builds.context / "lib" / "a.txt").write_text("A\n")
    from_the_first = builds.build()
    assert [s.cached for s in from_the_first.steps if s.layer] == [False, False, False]  # the chain breaks
    assert content(builds, "/opt/all.txt") == b"A\nb\n"

    (builds.context / "main.sh").write_text("#!/bin/sh\necho v1\n")
    (builds.context / "lib" / "a.txt").write_text("a\n")
    rebuilt = builds.build(no_cache=True)  # every step run again: the same input, the same digest
    assert rebuilt.layers_written == 3 and rebuilt.digest == cold.digest


def test_run_deletions_become_whiteouts(builds: Builds) -> None:
    builds.build(f"FROM {BASE}\n"
                 "RUN mkdir -p /data/keep /data/redo && echo 1 > /data/keep/a && echo 2 > /data/redo/b && "
                 "echo x > /data/gone\n"
                 "RUN rm /data/gone && rm -rf /data/redo && mkdir /data/redo && echo 3 > /data/redo/c && "
                 "ln -s /data/keep/a /data/link\n", network="host")
    image = builds.store.image(APP)
    last = builds.store.blob_path(image.layers[-1]["digest"])
    with tarfile.open(last) as tar:
        names = tar.getnames()
    assert "data/.wh.gone" in names and "data/redo/.wh..wh..opq" in names
    files = tree(builds)
    assert "/data/gone" not in files and "/data/redo/b" not in files and files["/data/redo/c"][0] == "file"
    assert files["/data/link"] == ("symlink", 0o777, 0, 0, "/data/keep/a")
    # the runtime's mount points and host files (network host) never reach a layer
    assert not {"/proc", "/sys", "/dev", "/etc/hosts", "/etc/resolv.conf"} & set(files)


def test_network_none_unless_host_is_asked(builds: Builds) -> None:
    dockerfile = f"FROM {BASE}\nRUN grep : /proc/net/dev | cut -d: -f1 | tr -d ' ' > /interfaces\n"
    builds.build(dockerfile)
    assert content(builds, "/interfaces").split() == [b"lo"]
    builds.build(dockerfile, network="host")
    assert len(content(builds, "/interfaces").split()) > 1


def test_run_has_the_builds_memory_limit(builds: Builds) -> None:
    before = builds.snapshot()
    with pytest.raises(RunFailed, match="killed: out of memory \\(the build's limit is 16 MB\\)"):
        builds.build(f"FROM {BASE}\nRUN x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${{#x}}\n",
                     memory_mb=16)
    assert builds.snapshot() == before


def test_failing_run_shows_status_and_output_and_stores_nothing(builds: Builds) -> None:
    before = builds.snapshot()
    with pytest.raises(RunFailed) as caught:
        builds.build(f"FROM {BASE}\nRUN echo about to fail && echo to stderr >&2 && exit 3\nCMD [\"x\"]\n")
    assert "Dockerfile:2: RUN echo about to fail && echo to stderr >&2 && exit 3 failed: exit status 3" \
        in str(caught.value)
    # stdout and stderr share one pipe (busybox's echo may flush stdout only at exit: any order)
    assert caught.value.status == 3 and sorted(caught.value.output.splitlines()) == ["about to fail", "to stderr"]
    assert sorted(e["line"] for e in builds.events if e["event"] == "output") == ["about to fail", "to stderr"]
    assert builds.snapshot() == before


def test_multi_stage_builds_what_the_target_needs(builds: Builds) -> None:
    dockerfile = (f"FROM {BASE} AS tools\n"
                  "RUN mkdir /out && printf '#!/bin/sh\\necho built by tools\\n' > /out/hello && chmod 755 /out/hello\n"
                  f"FROM {BASE} AS unused\n"
                  "RUN exit 7\n"
                  "FROM scratch AS final\n"
                  "COPY --from=tools /bin/sh /bin/sh\n"
                  "COPY --from=0 /out/hello /usr/local/bin/\n"
                  f"COPY --from={BASE} /etc/passwd /etc/group /etc/\n"
                  'CMD ["/usr/local/bin/hello"]\n')
    result = builds.build(dockerfile)
    assert not any("exit 7" in step.instruction for step in result.steps)
    assert len(result.layers) == 3
    files = tree(builds)
    assert set(files) == {"/bin", "/bin/sh", "/usr", "/usr/local", "/usr/local/bin", "/usr/local/bin/hello",
                          "/etc", "/etc/passwd", "/etc/group"}
    assert files["/bin/sh"][0] == "file"  # named itself, the busybox link is followed
    assert content(builds, "/usr/local/bin/hello") == b"#!/bin/sh\necho built by tools\n"
    tools = builds.build(target="tools", tags=["test/tools:1"])
    assert [s.instruction for s in tools.steps][-1].startswith("RUN mkdir /out") and tools.layers_written == 0


def archive(entries: dict[str, bytes], uid: int = 0) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, 0o600
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_add_unpacks_local_archives_and_copies_other_files(builds: Builds) -> None:
    builds.write({"site.tar.gz": archive({"site/index.html": b"<h1>hi</h1>"}, uid=1234), "plain.txt": "plain\n"})
    builds.build(f"FROM {BASE}\nADD site.tar.gz /var/www/\nADD plain.txt /var/\nCOPY site.tar.gz /var/\n")
    files = tree(builds)
    assert files["/var/www/site/index.html"][:4] == ("file", 0o600, 1234, 1234)  # the archive's owners kept
    assert files["/var/plain.txt"][0] == "file" and files["/var/site.tar.gz"][0] == "file"  # COPY never unpacks


def hostile_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.mark.parametrize("dockerfile, files, error, message", [
    (f"FROM {BASE}\nRUN echo hi > /x\nRUNX true\n", {}, DockerfileError, "Dockerfile:3: unknown instruction: RUNX"),
    (f"FROM {BASE}\nRUN echo hi > /x\nCOPY missing.txt /\n", {}, ContextError,
     "Dockerfile:3: COPY: missing.txt not found in the build context"),
    (f"FROM {BASE}\nRUN echo hi > /x\nCOPY ../secret /\n", {}, ContextError,
     "Dockerfile:3: COPY: ../secret is outside the build context"),
    (f"FROM {BASE}\nCOPY app /app\n", {"app/ok": "ok", "app/passwd@": "/etc/passwd"}, ContextError,
     "Dockerfile:2: COPY: symlink app/passwd points outside the build context (/etc/passwd)"),
    (f"FROM {BASE}\nADD evil.tar /\n", {"evil.tar": hostile_archive()}, ContextError,
     "Dockerfile:2: ADD: archive evil.tar refused: entry '../../etc/cron.d/evil': path contains '..'"),
    (f"FROM {BASE}\nADD https://example.com/app.tar.gz /\n", {}, DockerfileError,
     "Dockerfile:2: ADD: https://example.com/app.tar.gz: URLs are refused"),
    (f"FROM {BASE}\nCOPY a b /dest\n", {"a": "a", "b": "b"}, DockerfileError,
     "Dockerfile:2: COPY: with more than one source the destination must be a directory ending in /"),
    (f"FROM {BASE}\nRUN ln -s ../../../../etc/shadow /escape\n", {}, DockerfileError,
     "Dockerfile:2: RUN: what it made cannot go into an image: layer entry 'escape' refused: symlink points"),
    (f"FROM {BASE}\nUSER nosuchuser\nRUN true\n", {}, DockerfileError,
     "Dockerfile:3: RUN: user 'nosuchuser' is not in the image"),
    ("FROM scratch AS a\nCOPY --from=later /x /\nFROM scratch AS later\nFROM a\n", {}, DockerfileError,
     "Dockerfile:2: COPY: --from=later names this stage or a later one"),
])
def test_bad_input_is_refused_and_the_store_unchanged(builds: Builds, tmp_path: Path, dockerfile: str,
                                                      files: dict, error: type, message: str) -> None:
    (tmp_path / "secret").write_text("host secret\n")
    for name, data in files.items():
        if name.endswith("@"):
            (builds.context / name[:-1]).parent.mkdir(parents=True, exist_ok=True)
            (builds.context / name[:-1]).symlink_to(data)
        else:
            builds.write({name: data})
    before = builds.snapshot()
    with pytest.raises(error) as caught:
        builds.build(dockerfile)
    assert message in str(caught.value)
    assert builds.snapshot() == before


def test_a_killed_build_is_cleaned_up_like_a_killed_task(builds: Builds) -> None:
    """The build's record names its container, mounts and cgroup before they exist: the agent's
    clean-up (`dockyard executor --cleanup`) removes what a build killed mid-RUN left."""
    builds.write({"Dockerfile": f"FROM {BASE}\nRUN echo started; exec sleep 300\n"})
    log = builds.context.parent / "build.log"
    with open(log, "wb") as out:
        build = subprocess.Popen(dockyard("image", "build", "--work-dir", str(builds.work), str(builds.context)),
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "started" in log.read_text(), timeout=60, what="the RUN step to start")
        [record] = list((builds.work / "containers").glob("*/state.json"))
        assert json.loads(record.read_text())["kind"] == "build"
    finally:
        build.kill()
        build.wait()
    assert traces(builds.work, record.parent.name)  # the kill left its container behind
    cleaned = subprocess.run(dockyard("executor", "--cleanup", str(builds.work)), capture_output=True,
                             text=True, timeout=120)
    assert cleaned.returncode == 0, cleaned.stderr
    assert traces(builds.work, record.parent.name) == []
