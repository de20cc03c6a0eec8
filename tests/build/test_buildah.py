"""Side by side with Debian's buildah on the same Dockerfiles: the same files, the same config.

Both builds start `FROM scratch` with busybox-static from the context (buildah has no
network here to fetch a base image), run their RUN steps under runc, and are read by
the same code (flatten.py): dockyard's from its store, buildah's from the OCI layout
`buildah push` writes.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from executor.images.dockerfile import BuildOptions, build
from executor.images.store import ImageStore
from tests.build.flatten import config, flatten

pytestmark = [pytest.mark.root, pytest.mark.skipif(shutil.which("buildah") is None,
                                                     reason="buildah is not installed (Debian package buildah)")]

# What buildah 1.28 leaves of its RUN steps' mount points in the image; dockyard keeps them
# out (workspace.py). Compared only as absent-or-empty.
BUILDAH_MOUNT_POINTS = {"/dev", "/proc", "/sys", "/run", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
EMPTY_FILE = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "User", "WorkingDir", "ExposedPorts", "Labels", "StopSignal")

SINGLE = """\
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp /var/log && chmod 1777 /tmp && \\
    echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && \\
    echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && \\
    printf 'root:x:0:\\napp:x:1000:\\n' > /etc/group && echo bye > /etc/motd && \\
    mkdir -p /var/cache/old && echo stale > /var/cache/old/file
ARG VERSION=1
ENV APP_HOME=/srv/app VERSION=$VERSION
WORKDIR $APP_HOME
COPY --chown=app:app app/ ./
COPY app/main.sh /usr/local/bin/
ADD site.tar.gz /srv/www/
RUN rm /etc/motd && rm -rf /var/cache/old && mkdir /var/cache/old && echo fresh > /var/cache/old/new && \\
    ln -s /srv/app/main.sh /usr/local/bin/start && echo "$VERSION" > version
LABEL org.example.team=blue description="a test image"
EXPOSE 8080 53/udp
USER app
RUN echo made by app > /tmp/by-app
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/start"]
CMD ["--serve"]
"""

MULTI = """\
FROM scratch AS base
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
FROM base AS build
RUN mkdir /out && printf '#!/bin/sh\\necho hi\\n' > /out/run && chmod 755 /out/run
FROM scratch
COPY --from=build /out/run /run.sh
COPY --from=base /bin/busybox /bin/sh
ENV GREETING=hi
CMD ["/run.sh"]
"""


def make_context(root: Path) -> None:
    (root / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "rootfs" / "bin" / "busybox")
    (root / "app" / "lib").mkdir(parents=True)
    (root / "app" / "main.sh").write_text("#!/bin/sh\necho main \"$@\"\n")
    (root / "app" / "main.sh").chmod(0o755)
    (root / "app" / "lib" / "data.txt").write_text("data\n")
    (root / "app" / "lib" / "scratch.tmp").write_text("ignored\n")
    (root / ".dockerignore").write_text("app/**/*.tmp\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("site/index.html", b"<h1>hello</h1>\n"), ("site/css/main.css", b"h1{}\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, 0, 0
            tar.addfile(info, io.BytesIO(data))
    (root / "site.tar.gz").write_bytes(buffer.getvalue())


def buildah(tmp_path: Path, context: Path, dockerfile: Path, layout: Path) -> None:
    storage = ["--root", str(tmp_path / "buildah" / "root"), "--runroot", str(tmp_path / "buildah" / "run"),
               "--storage-driver", "vfs"]
    env = {**os.environ, "BUILDAH_ISOLATION": "oci"}
    built = subprocess.run(["buildah", *storage, "bud", "--runtime", shutil.which("runc") or "runc",
                            "--network", "none", "--identity-label=false", "--build-arg", "VERSION=2",
                            "-f", str(dockerfile), "-t", "compared", str(context)],
                           capture_output=True, text=True, timeout=300, env=env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    pushed = subprocess.run(["buildah", *storage, "push", "compared", f"oci:{layout}:compared"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    subprocess.run(["buildah", *storage, "rmi", "--all", "--force"], capture_output=True, timeout=120, env=env)


def without_buildah_mount_points(tree: dict, ours: dict) -> dict:
    kept = {}
    for path, entry in tree.items():
        if path in BUILDAH_MOUNT_POINTS and path not in ours:
            empty = (entry[0] == "dir" and not any(p.startswith(path + "/") for p in tree)) or \
                (entry[0] == "file" and entry[4] == EMPTY_FILE)
            assert empty, f"buildah's {path} is not an empty mount point: {entry}"
            continue
        kept[path] = entry
    return kept


@pytest.mark.parametrize("dockerfile", [SINGLE, MULTI], ids=["single-stage", "multi-stage"])
def test_same_files_and_config_as_buildah(tmp_path: Path, dockerfile: str) -> None:
    context = tmp_path / "context"
    make_context(context)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    buildah(tmp_path, context, tmp_path / "Dockerfile", tmp_path / "buildah-layout")
    store = ImageStore(tmp_path / "work")
    result = build(BuildOptions(context, tmp_path / "Dockerfile", ["compared"], {"VERSION": "2"}), store)

    ours = flatten(store.root, result.tags[0])
    theirs = without_buildah_mount_points(flatten(tmp_path / "buildah-layout", "compared"), ours)
    assert {p: ours.get(p) for p in set(ours) | set(theirs) if ours.get(p) != theirs.get(p)} == {}
    assert len(ours) >= 3
    our_config = config(store.root, result.tags[0])["config"]
    their_config = config(tmp_path / "buildah-layout", "compared")["config"]
    assert {k: our_config.get(k) for k in CONFIG_FIELDS} == {k: their_config.get(k) for k in CONFIG_FIELDS}
