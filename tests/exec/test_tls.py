"""`task exec` on a cluster that speaks TLS: the master's view, the session and WAIT all over
HTTPS, verified with the cluster's CA, as the CLI's settings say."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest

from framework.mesos import attach
from framework.security.client import ClientConfig
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("tls")), agents=1, tls=True).start() as running:
        yield running


def test_exec_over_https(tls_cluster: Cluster) -> None:
    framework = RawFramework(tls_cluster.master_api()).start()
    try:
        framework.launch(framework.offer(), [command_task("sleep 600", task_id="secret-place")])
        framework.wait_state("secret-place", "TASK_RUNNING", timeout=60)
        assert tls_cluster.master_url.startswith("https://") and tls_cluster.bundle is not None
        operator = tls_cluster.operator
        settings = ClientConfig(master=tls_cluster.master_url, principal=operator.principal, secret=operator.secret,
                                ca=str(tls_cluster.bundle.ca_cert))
        out = io.BytesIO()
        assert attach.exec_task(settings, "secret-place", ["sh", "-c", "echo over-tls; exit 2"], stdout=out,
                                stderr=io.BytesIO()) == 2
        assert out.getvalue() == b"over-tls\n"
        untrusting = ClientConfig(master=tls_cluster.master_url, principal=operator.principal,
                                  secret=operator.secret)  # the system's CAs only: the cluster's is not among them
        with pytest.raises(attach.AttachError, match="cannot reach the master"):
            attach.exec_task(untrusting, "secret-place", ["true"])
    finally:
        framework.stop()
