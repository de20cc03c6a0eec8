"""The image store against a real registry (docker-registry) and a real client (skopeo)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import subprocess
import threading
from pathlib import Path

import pytest

from executor.images.registry import Credentials
from executor.images.store import ImageStore
from framework.errors import ImagePullError
from tests.support import images, registry

pytestmark = pytest.mark.root  # layer extraction chowns and makes whiteout devices


def push_image(reg: registry.Registry, image: images.BuiltImage, tmp: Path, name: str, tag: str,
               creds: str | None = None) -> str:
    layout = image.write_oci_layout(tmp / f"layout-{name.replace('/', '-')}-{tag}", tag)
    ref = f"{reg.host}/{name}:{tag}"
    images.skopeo_copy(f"oci:{layout}:{tag}", f"docker://{ref}", creds=creds)
    return ref


def test_pull_stores_verified_blobs_and_unpacks_each_layer_once(busybox: str, tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    events: list[dict] = []
    image = store.pull(busybox, progress=events.append)
    assert image.name == busybox
    for descriptor in [image.manifest["config"], *image.layers]:
        data = store.blob_path(descriptor["digest"]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor["digest"]
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [busybox]
    _, dirs = store.prepare(busybox)
    assert (dirs[0] / "bin" / "busybox").is_file() and (dirs[1] / "etc" / "marker").read_text() == "layer two\n"
    assert {"resolved", "downloading", "verified", "extracted", "done"} <= {e["status"] for e in events}
    # a second pull of the same content transfers only the manifest
    again = ImageStore(tmp_path)
    again.pull(busybox)
    assert again.last_client.bytes_received < 2000
    assert list((tmp_path / "images" / "tmp").iterdir()) == []


def test_update_fetches_only_the_changed_top_layer(reg: registry.Registry, tmp_path: Path) -> None:
    base = [[images.file("data/a", os.urandom(300_000))], [images.file("data/b", os.urandom(300_000))]]
    v1 = images.busybox_image(base + [[images.file("app", "v1\n")]])
    v2 = images.busybox_image(base + [[images.file("app", "v2 with more bytes\n" * 1000)]])
    ref1 = push_image(reg, v1, tmp_path, "test/update", "v1")
    ref2 = push_image(reg, v2, tmp_path, "test/update", "v2")
    store = ImageStore(tmp_path / "work")
    store.pull(ref1)
    store.pull(ref2)
    top = v2.layer_descriptors[-1]["size"]
    config = v2.manifest["config"]["size"]
    received = store.last_client.bytes_received
    assert received <= top + config + len(v2.manifest_bytes) + 1
    assert (store.prepare(ref2)[1][-1] / "app").read_text().startswith("v2")


def test_concurrent_pulls_of_one_image_share_one_download(reg: registry.Registry, tmp_path: Path) -> None:
    image = images.busybox_image([[images.file("big", os.urandom(2_000_000))]])
    ref = push_image(reg, image, tmp_path, "test/shared", "1")
    stores = [ImageStore(tmp_path / "work") for _ in range(4)]
    results: list = [None] * 4
    barrier = threading.Barrier(4)

    def pull(number: int) -> None:
        barrier.wait()
        results[number] = stores[number].pull(ref)

    threads = [threading.Thread(target=pull, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(r is not None and r.digest == image.digest for r in results)
    downloads = [s.last_client.bytes_received for s in stores if s.last_client is not None]
    assert len(downloads) == 1 and downloads[0] >= 2_000_000


def test_corrupt_blob_is_refused_and_leaves_nothing(reg: registry.Registry, tmp_path: Path) -> None:
    image = images.busybox_image([[images.file("payload", os.urandom(50_000))]])
    ref = push_image(reg, image, tmp_path, "test/corrupt", "1")
    digest = image.layer_descriptors[-1]["digest"].split(":")[1]
    stored = reg.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / digest[:2] / digest / "data"
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))
    store = ImageStore(tmp_path / "work")
    with pytest.raises(ImagePullError, match="verification"):
        store.pull(ref)
    assert not store.blob_path(image.layer_descriptors[-1]["digest"]).exists()
    assert store.resolve(ref) is None
    assert list(store.tmp.iterdir()) == []


def test_manifest_list_picks_linux_amd64(reg: registry.Registry, tmp_path: Path) -> None:
    amd = images.busybox_image([[images.file("arch", "amd64\n")]])
    arm = images.busybox_image([[images.file("arch", "arm64\n")]], config={"Env": ["ARCH=arm64"]})
    layout = tmp_path / "multi"
    amd.write_oci_layout(layout, "amd")
    arm.write_oci_layout(layout, "arm")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.digest,
         "size": len(arm.manifest_bytes), "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.digest,
         "size": len(amd.manifest_bytes), "platform": {"os": "linux", "architecture": "amd64"}}]}
    body = json.dumps(index).encode()
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    top = json.loads((layout / "index.json").read_text())
    top["manifests"].append({"mediaType": index["mediaType"], "digest": f"sha256:{digest}", "size": len(body),
                             "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    (layout / "index.json").write_text(json.dumps(top))
    ref = f"{reg.host}/test/multi:1"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--dest-tls-verify=false",
                    f"oci:{layout}:multi", f"docker://{ref}"], check=True, capture_output=True, timeout=120)
    raw = images.skopeo_inspect(f"docker://{ref}", raw=True)
    assert raw["mediaType"] in ("application/vnd.oci.image.index.v1+json",
                                "application/vnd.docker.distribution.manifest.list.v2+json")
    store = ImageStore(tmp_path / "work")
    pulled = store.pull(ref)
    assert pulled.digest == amd.digest
    assert (store.prepare(ref)[1][-1] / "arch").read_text() == "amd64\n"


def test_push_is_read_back_by_skopeo(busybox: str, reg: registry.Registry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    image = store.pull(busybox)
    dest = f"{reg.host}/test/pushed:copy"
    assert store.push(busybox, dest) == image.digest
    info = images.skopeo_inspect(f"docker://{dest}")
    assert info["Digest"] == image.digest
    assert len(info["Layers"]) == 2
    images.skopeo_copy(f"docker://{dest}", f"oci:{tmp_path / 'back'}:copy")
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.digest


def test_load_docker_save_and_oci_archives(tmp_path: Path) -> None:
    image = images.busybox_image([[images.file("loaded", "docker\n")]], compressed=False)
    store = ImageStore(tmp_path / "work")
    assert store.load(image.write_docker_archive(tmp_path / "save.tar", "team/app:3")) == \
        ["docker.io/team/app:3"]
    assert (store.prepare("team/app:3")[1][-1] / "loaded").read_text() == "docker\n"
    oci = images.busybox_image([[images.file("loaded", "oci\n")]])
    loaded = store.load(oci.write_oci_archive(tmp_path / "oci.tar", "v1"), tag="team/oci:v1")
    assert loaded == ["docker.io/team/oci:v1"]
    assert store.image("team/oci:v1").digest == oci.digest
    assert (store.prepare("team/oci:v1")[1][-1] / "loaded").read_text() == "oci\n"
    with pytest.raises(ImagePullError):
        store.load(Path(__file__))


def test_rm_prune_and_budget_eviction(reg: registry.Registry, tmp_path: Path) -> None:
    refs = [push_image(reg, images.busybox_image([[images.file("f", os.urandom(400_000))]]), tmp_path,
                       "test/lru", str(n)) for n in range(3)]
    store = ImageStore(tmp_path / "work")
    for ref in refs:
        store.pull(ref)
    one_layer = store.image(refs[0]).layers[-1]["size"]
    before = store.usage()
    # the budget fits about two images: the least recently used one goes
    store.touch(store.image(refs[0]).digest)
    store.budget_bytes = before - one_layer
    evicted = store.enforce_budget()
    assert evicted == [refs[1]]
    assert store.usage() <= store.budget_bytes
    removed = store.remove(refs[2])
    assert removed == [refs[2]]
    assert [i.name for i in store.images()] == [refs[0]]
    assert len(list(store.layers_dir.glob("*.size"))) == 2  # busybox base + refs[0]'s top layer


@pytest.mark.skipif(registry.bcrypt_hash("x") is None, reason="no bcrypt for htpasswd in this Python")
def test_basic_auth_pull(tmp_path: Path) -> None:
    server = registry.Registry(tmp_path / "authreg", users={"alice": "s3cret"}).start()
    try:
        ref = push_image(server, images.busybox_image(), tmp_path, "private/app", "1", creds="alice:s3cret")
        with pytest.raises(ImagePullError, match="credentials|401"):
            ImageStore(tmp_path / "anon").pull(ref)
        with pytest.raises(ImagePullError, match="401"):
            ImageStore(tmp_path / "wrong").pull(ref, credentials=Credentials("alice", "nope"))
        image = ImageStore(tmp_path / "ok").pull(ref, credentials=Credentials("alice", "s3cret"))
        assert image.name == ref
    finally:
        server.stop()


def test_bearer_token_auth_pull_and_push(tmp_path: Path) -> None:
    from tests.support.token_server import SERVICE, TokenServer

    tokens = TokenServer(tmp_path / "tokens", users={"bob": "hunter2"}).start()
    server = registry.Registry(tmp_path / "tokreg", auth_config=tokens.registry_auth_config()).start()
    try:
        ref = push_image(server, images.busybox_image(), tmp_path, "team/app", "1", creds="bob:hunter2")
        with pytest.raises(ImagePullError, match="401"):
            ImageStore(tmp_path / "anon").pull(ref)
        store = ImageStore(tmp_path / "ok")
        image = store.pull(ref, credentials=Credentials("bob", "hunter2"))
        assert image.name == ref
        assert {"user": "bob", "scope": "repository:team/app:pull", "service": SERVICE} in tokens.requests
        store.push(ref, f"{server.host}/team/copy:2", credentials=Credentials("bob", "hunter2"))
        assert images.skopeo_inspect(f"docker://{server.host}/team/copy:2", creds="bob:hunter2")["Digest"] \
            == image.digest
    finally:
        server.stop()
        tokens.stop()


KILLED_PULL = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from executor.images.store import ImageStore
def progress(event):
    if event.get("status") == "downloading" and event["done"] > event["total"] // 2 and event["total"] > 1000000:
        os.kill(os.getpid(), signal.SIGKILL)  # die half-way through the big layer
ImageStore({work!r}, concurrency=1).pull({ref!r}, progress=progress)
"""


def test_pull_killed_half_way_leaves_nothing_corrupt(reg: registry.Registry, tmp_path: Path) -> None:
    from executor import cleanup
    from tests.support.procs import REPO

    image = images.busybox_image([[images.file("big", os.urandom(8_000_000))]])
    ref = push_image(reg, image, tmp_path, "test/killed", "1")
    work = tmp_path / "work"
    script = KILLED_PULL.format(repo=str(REPO), work=str(work), ref=ref)
    result = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == -9
    store = ImageStore(work)
    big = image.layer_descriptors[-1]["digest"]
    assert not store.has_blob(big) and store.resolve(ref) is None
    for blob in store.blobs.iterdir():  # whatever did land is complete and verified
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    cleanup.run(work)
    assert list(store.tmp.iterdir()) == []
    assert store.pull(ref).digest == image.digest


def test_pull_docker_schema2_media_types(reg: registry.Registry, tmp_path: Path) -> None:
    image = images.busybox_image([[images.file("fmt", "v2s2\n")]])
    layout = image.write_oci_layout(tmp_path / "layout", "1")
    ref = f"{reg.host}/test/schema2:1"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--format", "v2s2", "--dest-tls-verify=false",
                    f"oci:{layout}:1", f"docker://{ref}"], check=True, capture_output=True, timeout=120)
    assert images.skopeo_inspect(f"docker://{ref}", raw=True)["mediaType"] == \
        "application/vnd.docker.distribution.manifest.v2+json"
    store = ImageStore(tmp_path / "work")
    pulled = store.pull(ref)
    assert pulled.manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert (store.prepare(ref)[1][-1] / "fmt").read_text() == "v2s2\n"


def test_budget_never_evicts_an_image_a_container_uses(reg: registry.Registry, tmp_path: Path) -> None:
    from executor.containers.state import write_json

    refs = [push_image(reg, images.busybox_image([[images.file("f", os.urandom(300_000))]]), tmp_path,
                       "test/inuse", str(n)) for n in range(2)]
    store = ImageStore(tmp_path / "work")
    for ref in refs:
        store.pull(ref)
    used = store.image(refs[0])  # the oldest, so first in line for eviction
    record = tmp_path / "work" / "containers" / "dy-x"
    write_json(record / "state.json",
               {"id": "dy-x", "layers": [used.layer_key(l) for l in used.layers], "image_digest": used.digest})
    try:
        store.touch(store.image(refs[1]).digest)
        store.budget_bytes = 1  # nothing fits
        assert store.enforce_budget() == [refs[1]]
        assert [i.name for i in store.images()] == [refs[0]]
        assert all(store.layer_dir(used.layer_key(l)).is_dir() for l in used.layers)
    finally:  # a record of no real container: not a leak for the suite's leak check to clean
        shutil.rmtree(record)


PULLER = """
import json, sys
sys.path.insert(0, {repo!r})
from executor.images.store import ImageStore
store = ImageStore({work!r})
image = store.pull({ref!r})
print(json.dumps({{"digest": image.digest, "received": store.last_client.bytes_received if store.last_client else 0}}))
"""


def test_concurrent_pulls_across_processes_share_one_download(reg: registry.Registry, tmp_path: Path) -> None:
    from tests.support.procs import REPO

    image = images.busybox_image([[images.file("big", os.urandom(3_000_000))]])
    ref = push_image(reg, image, tmp_path, "test/procs", "1")
    script = PULLER.format(repo=str(REPO), work=str(tmp_path / "work"), ref=ref)
    pullers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
               for _ in range(3)]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in pullers]
    assert {r["digest"] for r in results} == {image.digest}
    assert sorted(r["received"] > 3_000_000 for r in results) == [False, False, True]
