"""`dockyard image build`: from a Dockerfile (pushed, read by skopeo and umoci, run by dockyard),
and from directories and busybox-static; written, loaded and run for real."""
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
from tests.support import images
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


# -- Dockerfile builds ---------------------------------------------------------------

WEB_DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
WORKDIR /srv
COPY lib/ ./lib/
COPY start.sh ./
ENV GREETING=hello
LABEL org.example.app=web
EXPOSE 8080
CMD ["/srv/start.sh"]
"""


def web_context(root: Path, version: str = "v1") -> Path:
    (root / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
    if not (root / "rootfs" / "bin" / "busybox").exists():
        os.link(build.BUSYBOX, root / "rootfs" / "bin" / "busybox")
    (root / "lib").mkdir(exist_ok=True)
    (root / "lib" / "words.txt").write_text("from the lib layer\n")
    (root / "start.sh").write_text(f"#!/bin/sh\necho \"$GREETING {version}\"; cat /srv/lib/words.txt\n")
    (root / "start.sh").chmod(0o755)
    (root / "Dockerfile").write_text(WEB_DOCKERFILE)
    return root


def run_image(work: Path, tmp_path: Path, name: str) -> str:
    """Run the image's own command as a task's container, with dockyard's launcher; its stdout."""
    from executor.containers.launcher import ContainerLauncher
    from executor.launcher import LaunchSpec

    sandbox = tmp_path / f"sandbox-{len(list(tmp_path.glob('sandbox-*')))}"
    sandbox.mkdir()
    spec = LaunchSpec(task_id="built", command={"shell": False}, env={}, sandbox=sandbox,
                      resources={"cpus": 1, "mem": 64}, work_dir=work,
                      container={"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": name}}}})
    container = ContainerLauncher().launch(spec)
    try:
        exit_info = container.wait(30)
        assert exit_info is not None and exit_info.exit_code == 0, (sandbox / "stderr").read_text()
    finally:
        container.destroy()
    return (sandbox / "stdout").read_text()


def test_dockerfile_build_pushed_read_by_skopeo_and_umoci_and_run(tmp_path: Path, reg) -> None:
    context = web_context(tmp_path / "context")
    work = tmp_path / "work"
    name = f"{reg.host}/test/web:1"
    built = run_build("--work-dir", str(work), "-t", name, "--push", "--json", str(context))
    assert built.returncode == 0, built.stderr
    result = json.loads(built.stdout)
    assert result["reference"] == f"{name}@{result['digest']}" and result["layers_written"] == 6
    assert result["pushed"][0]["bytes_sent"] >= result["size"]
    # skopeo reads it from the registry: the same manifest, the config as built
    assert images.skopeo_inspect(f"docker://{name}")["Digest"] == result["digest"]
    config = images.skopeo_inspect(f"docker://{name}", raw=False)
    assert "GREETING=hello" in config["Env"] and config["Labels"] == {"org.example.app": "web"}
    # umoci unpacks it into a runtime bundle, files and process as the Dockerfile says
    images.skopeo_copy(f"docker://{name}", f"oci:{tmp_path / 'layout'}:web")
    unpacked = subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'layout'}:web", str(tmp_path / "bundle")],
                              capture_output=True, text=True, timeout=120)
    assert unpacked.returncode == 0, unpacked.stderr
    bundle = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert bundle["process"]["args"] == ["/srv/start.sh"] and bundle["process"]["cwd"] == "/srv"
    assert (tmp_path / "bundle" / "rootfs" / "srv" / "lib" / "words.txt").read_text() == "from the lib layer\n"
    assert os.readlink(tmp_path / "bundle" / "rootfs" / "bin" / "sh") == "/bin/busybox"
    # dockyard runs it, by the pinned reference the build printed
    assert run_image(work, tmp_path, result["reference"]) == "hello v1\nfrom the lib layer\n"

    # one changed file in the last COPY: only that layer is built and pushed again
    web_context(context, "v2")
    again = json.loads(run_build("--work-dir", str(work), "-t", name, "--push", "--json", str(context)).stdout)
    assert again["layers_written"] == 1 and [s["cached"] for s in again["steps"] if s["layer"]] == [True] * 5 + [False]
    last = again["steps"][6]
    assert last["instruction"] == "COPY start.sh ./" and not last["cached"]
    assert again["pushed"][0]["bytes_sent"] <= last["size"] * 1.05 + 4096  # that layer, a config, a manifest
    assert run_image(work, tmp_path, again["reference"]) == "hello v2\nfrom the lib layer\n"


def test_multi_stage_c_program_builds_and_runs(tmp_path: Path) -> None:
    from tests.build.toolchain import toolchain_context

    context = tmp_path / "context"
    toolchain_context(context, '#include <stdio.h>\nint main(void) { puts("hello from C"); return 0; }\n')
    (context / "Dockerfile").write_text("FROM scratch AS build\n"
                                        "COPY toolchain/ /\n"
                                        "COPY hello.c /src/\n"
                                        'RUN ["gcc", "-static", "-O2", "-o", "/hello", "/src/hello.c"]\n'
                                        "FROM scratch\n"
                                        "COPY --from=build /hello /hello\n"
                                        'CMD ["/hello"]\n')
    work = tmp_path / "work"
    built = run_build("--work-dir", str(work), "-t", "hello:c", "--quiet", str(context))
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip().startswith("sha256:") and built.stderr == ""  # --quiet: the digest alone
    image = ImageStore(work).image("hello:c")
    assert len(image.layers) == 1 and image.size < 2_000_000  # the program, not the toolchain
    assert run_image(work, tmp_path, "hello:c") == "hello from C\n"


def test_build_goes_into_every_agents_store(tmp_path: Path) -> None:
    """Without --work-dir, as `image load`: the stores of every agent of the `up` cluster found."""
    cluster = tmp_path / "cluster"
    agents = [cluster / "agent1", cluster / "agent2"]
    cluster.mkdir()
    (cluster / "client.json").write_text("{}")
    (cluster / "cluster.json").write_text(json.dumps({"up": {"name": "up", "pid": 1, "start_time": None},
                                                      "agents": [str(a) for a in agents]}))
    context = web_context(tmp_path / "context")
    env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_WORK_DIR"}
    built = subprocess.run(dockyard("image", "build", "-t", "web:1", str(context)), capture_output=True,
                           text=True, timeout=120, env={**env, "DOCKYARD_CONFIG": str(cluster / "client.json")})
    assert built.returncode == 0, built.stderr
    assert "Successfully tagged docker.io/library/web:1 (agent1, agent2)" in built.stdout
    first, second = (ImageStore(agent).image("web:1") for agent in agents)
    assert first.digest == second.digest
    assert all(ImageStore(agents[1]).layer_dir(second.layer_key(layer)).is_dir() for layer in second.layers)


def test_cli_errors_name_the_line_and_show_a_failed_runs_output(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    work = tmp_path / "work"
    (context / "Dockerfile").write_text("FROM scratch\nFETCH http://example.com\n")
    unknown = run_build("--work-dir", str(work), str(context))
    assert unknown.returncode == 1
    assert "error: Dockerfile:2: unknown instruction: FETCH" in unknown.stderr
    web_context(context)
    (context / "Dockerfile").write_text(WEB_DOCKERFILE.replace("WORKDIR /srv", "RUN echo compiling; exit 3"))
    quiet = run_build("--work-dir", str(work), "--quiet", str(context))
    assert quiet.returncode == 1 and quiet.stdout == ""
    assert "compiling" in quiet.stderr and "RUN echo compiling; exit 3 failed: exit status 3" in quiet.stderr
    as_json = run_build("--work-dir", str(work), "--json", str(context))
    failure = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and "exit status 3" in failure["error"] and failure["output"] == "compiling\n"
    assert ImageStore(work).images() == []
    mixed = run_build("--busybox", "--work-dir", str(work), str(context))
    assert mixed.returncode == 2 and "--busybox: only without a build context" in mixed.stderr
