"""Master detection against a real ZooKeeper: masters are simulated with kazoo nodes."""
from __future__ import annotations

import json
import queue
import uuid
from typing import Iterator

import pytest
from kazoo.client import KazooClient

from framework.mesos.detector import MasterDetector, parse_master_info, static_address
from tests.support.zookeeper import expire_session


def master_info(ip: str, port: int, hostname: str = "m") -> bytes:
    return json.dumps({"id": str(uuid.uuid4()), "ip": 16777343, "port": port, "hostname": hostname,
                       "pid": f"master@{ip}:{port}", "version": "1.11.0",
                       "address": {"hostname": hostname, "ip": ip, "port": port}}).encode()


@pytest.fixture
def zk_path() -> str:
    return f"/test-detector/{uuid.uuid4().hex}"


@pytest.fixture
def kazoo(zk) -> Iterator[KazooClient]:  # noqa: ANN001 - session fixture from conftest
    client = KazooClient(hosts=zk.hosts)
    client.start(timeout=30)  # a loaded machine's JVM can be slow to take the first session
    yield client
    client.stop()
    client.close()


def contend(client: KazooClient, path: str, data: bytes) -> str:
    """Register like a Mesos master does: an ephemeral sequential json.info_ child."""
    return client.create(f"{path}/json.info_", data, ephemeral=True, sequence=True, makepath=True)


@pytest.mark.parametrize("uri, expected", [
    ("http://10.1.2.3:5055", "10.1.2.3:5055"),
    ("http://master.example", "master.example:5050"),
    ("https://m:443/", "m:443"),
    ("10.1.2.3:6000", "10.1.2.3:6000"),
    ("localhost", "localhost:5050"),
])
def test_static_uris_name_the_master_directly(uri: str, expected: str) -> None:
    assert static_address(uri) == expected
    with MasterDetector(uri) as detector:
        assert detector.leader() == expected
        assert detector.wait(0) == expected


def test_master_info_address_preference() -> None:
    assert parse_master_info(master_info("10.0.0.9", 5051))[0] == "10.0.0.9:5051"
    no_ip = {"hostname": "h", "port": 1, "address": {"hostname": "box", "port": 5052}}
    assert parse_master_info(json.dumps(no_ip))[0] == "box:5052"
    legacy = {"ip": 16777343, "port": 5053, "hostname": "h"}  # 127.0.0.1 as a network-order uint32
    assert parse_master_info(json.dumps(legacy))[0] == "127.0.0.1:5053"
    assert parse_master_info(json.dumps({"hostname": "only", "port": 5054}))[0] == "only:5054"


def test_no_path_means_no_leader_until_a_master_registers(zk, kazoo, zk_path) -> None:  # noqa: ANN001
    with MasterDetector(zk.url(zk_path)) as detector:
        assert detector.leader() is None
        assert detector.wait(0.2) is None
        contend(kazoo, zk_path, master_info("127.0.0.1", 7001))
        assert detector.wait(10) == "127.0.0.1:7001"


def test_lowest_sequence_leads_and_failover_follows(zk, kazoo, zk_path) -> None:  # noqa: ANN001
    first = contend(kazoo, zk_path, master_info("127.0.0.1", 7001))
    second = contend(kazoo, zk_path, master_info("127.0.0.2", 7002))
    changes: queue.Queue = queue.Queue()
    uri = f"zk://{zk.hosts},{zk.hosts}{zk_path}"  # several hosts are allowed
    with MasterDetector(uri) as detector:
        detector.on_change(changes.put)
        assert detector.wait(10) == "127.0.0.1:7001"
        assert detector.info()["address"]["port"] == 7001

        kazoo.delete(first)
        assert detector.wait_change("127.0.0.1:7001", 10) == "127.0.0.2:7002"
        assert changes.get(timeout=5) == "127.0.0.2:7002"

        # A newer contender does not take over while the leader lives.
        contend(kazoo, zk_path, master_info("127.0.0.3", 7003))
        kazoo.delete(second)
        assert detector.wait_change("127.0.0.2:7002", 10) == "127.0.0.3:7003"
        assert changes.get(timeout=5) == "127.0.0.3:7003"


def test_leader_session_loss_fails_over_and_empty_means_no_leader(zk, kazoo, zk_path) -> None:  # noqa: ANN001
    master_a = KazooClient(hosts=zk.hosts)
    master_a.start(timeout=30)
    contend(master_a, zk_path, master_info("127.0.0.1", 7101))
    backup = contend(kazoo, zk_path, master_info("127.0.0.1", 7102))
    changes: queue.Queue = queue.Queue()
    with MasterDetector(zk.url(zk_path)) as detector:
        detector.on_change(changes.put)
        assert detector.wait(10) == "127.0.0.1:7101"
        master_a.stop()  # the leading master's session ends: its ephemeral node goes
        master_a.close()
        assert detector.wait_change("127.0.0.1:7101", 10) == "127.0.0.1:7102"
        kazoo.delete(backup)
        assert detector.wait_change("127.0.0.1:7102", 10) is None
        assert [changes.get(timeout=5), changes.get(timeout=5)] == ["127.0.0.1:7102", None]


def test_other_children_are_ignored(zk, kazoo, zk_path) -> None:  # noqa: ANN001
    kazoo.create(f"{zk_path}/log_replicas", b"", makepath=True)
    kazoo.create(f"{zk_path}/info_0000000000", b"\x08\x01binary-protobuf")  # pre-0.24 master
    kazoo.create(f"{zk_path}/json.info_garbage", b"{}")
    contend(kazoo, zk_path, master_info("127.0.0.1", 7201))
    with MasterDetector(zk.url(zk_path)) as detector:
        assert detector.wait(10) == "127.0.0.1:7201"


def test_unreadable_leader_data_falls_through_to_the_next(zk, kazoo, zk_path) -> None:  # noqa: ANN001
    contend(kazoo, zk_path, b"not json")
    contend(kazoo, zk_path, master_info("127.0.0.1", 7301))
    with MasterDetector(zk.url(zk_path)) as detector:
        assert detector.wait(10) == "127.0.0.1:7301"


def test_path_deleted_and_recreated_is_followed(zk, kazoo, zk_path) -> None:  # noqa: ANN001
    node = contend(kazoo, zk_path, master_info("127.0.0.1", 7401))
    with MasterDetector(zk.url(zk_path)) as detector:
        assert detector.wait(10) == "127.0.0.1:7401"
        kazoo.delete(node)
        kazoo.delete(zk_path)
        assert detector.wait_change("127.0.0.1:7401", 10) is None
        contend(kazoo, zk_path, master_info("127.0.0.1", 7402))
        assert detector.wait(10) == "127.0.0.1:7402"


def test_close_wakes_waiters(zk, zk_path) -> None:  # noqa: ANN001
    detector = MasterDetector(zk.url(zk_path))
    detector.close()
    assert detector.wait(5) is None


def test_unreachable_zookeeper_means_no_leader_not_an_exception() -> None:
    from tests.support.procs import free_port

    with MasterDetector(f"zk://127.0.0.1:{free_port()}/mesos", zk_timeout=0.5) as detector:
        assert detector.is_zk
        assert detector.leader() is None
        assert detector.wait(0.2) is None


def test_the_leader_is_found_again_after_the_detectors_session_expires(zk, kazoo, zk_path) -> None:  # noqa: ANN001
    """An agent frozen past its session timeout: its detector loses the leader with the
    session, and must find the same one again in the new session, although the masters'
    nodes did not change meanwhile (a watch re-armed on unchanged children stays silent)."""
    contend(kazoo, zk_path, master_info("127.0.0.1", 7401))
    changes: queue.Queue = queue.Queue()
    with MasterDetector(zk.url(zk_path)) as detector:
        assert detector.wait(10) == "127.0.0.1:7401"
        detector.on_change(changes.put)
        expire_session(detector._zk, zk.hosts)
        assert changes.get(timeout=20) is None  # the session and what it saw are gone
        assert changes.get(timeout=10) == "127.0.0.1:7401"
        assert detector.leader() == "127.0.0.1:7401"
