"""Images without Docker Hub: the agent's --docker-registry as an archive directory or a registry URL."""
from __future__ import annotations

from pathlib import Path

import pytest

from executor.images.source import RegistrySource
from executor.images.store import ImageStore
from framework.errors import ImagePullError
from tests.support import images, registry

pytestmark = pytest.mark.root  # layer extraction chowns and makes whiteout devices


def marked(text: str) -> images.BuiltImage:
    return images.busybox_image([[images.file("etc/which", text + "\n")]])


def test_source_parsing() -> None:
    assert RegistrySource.parse("") is None and RegistrySource.parse(None) is None
    assert RegistrySource.parse("/srv/images").directory == Path("/srv/images")
    assert RegistrySource.parse("file:///srv/images").directory == Path("/srv/images")
    assert RegistrySource.parse("http://10.0.0.5:5000") == RegistrySource(host="10.0.0.5:5000", insecure=True)
    assert RegistrySource.parse("https://registry.example") == RegistrySource(host="registry.example",
                                                                              insecure=False)
    assert RegistrySource.parse("registry.example:5000").host == "registry.example:5000"
    with pytest.raises(ImagePullError):
        RegistrySource.parse("ftp://host/x")
    with pytest.raises(ImagePullError):
        RegistrySource.parse("relative/dir")


def test_archive_directory_serves_unqualified_names_as_mesos_names_them(tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    marked("tagged").write_docker_archive(archives / "busybox:1.tar", "whatever:9")  # the file name decides
    marked("latest").write_docker_archive(archives / "busybox:latest.tar", "busybox:latest")
    (archives / "team").mkdir()
    marked("nested").write_oci_archive(archives / "team" / "app:2.tar", "2")
    store = ImageStore(tmp_path / "work", registry=RegistrySource.parse(str(archives)))
    events: list[dict] = []
    image = store.pull("busybox:1", progress=events.append)
    assert image.name == "docker.io/library/busybox:1"
    assert [e["status"] for e in events] == ["loading", "done"]
    assert (store.prepare("busybox:1")[1][-1] / "etc" / "which").read_text() == "tagged\n"
    assert (store.prepare("busybox")[1][-1] / "etc" / "which").read_text() == "latest\n"  # -> busybox:latest.tar
    assert (store.prepare("team/app:2")[1][-1] / "etc" / "which").read_text() == "nested\n"  # OCI archive
    with pytest.raises(ImagePullError, match=r"busybox:2\.tar"):
        store.pull("busybox:2")
    marked("outside").write_docker_archive(tmp_path / "etc:1.tar", "etc:1")  # archives/team/../../etc:1.tar
    with pytest.raises(ImagePullError, match="no archive"):
        store.pull("team/../../etc:1")  # never a path outside the directory
    assert store.resolve("whatever:9") is None


def test_registry_url_is_the_default_for_unqualified_names(reg: registry.Registry, tmp_path: Path) -> None:
    layout = marked("from-default").write_oci_layout(tmp_path / "layout", "url")
    images.skopeo_copy(f"oci:{layout}:url", f"docker://{reg.host}/tools/busybox:url")
    store = ImageStore(tmp_path / "work", registry=RegistrySource.parse(f"http://{reg.host}"))
    image = store.pull("tools/busybox:url")
    assert image.name == "docker.io/tools/busybox:url"  # the name the task used, as Mesos keys it
    assert store.last_client.host == reg.host and store.last_client.bytes_received > 1_000_000
    assert (store.prepare("tools/busybox:url")[1][-1] / "etc" / "which").read_text() == "from-default\n"
    # a name with its own host still goes there
    qualified = ImageStore(tmp_path / "other", registry=RegistrySource.parse(str(tmp_path)))
    assert qualified.pull(f"{reg.host}/tools/busybox:url").digest == image.digest
