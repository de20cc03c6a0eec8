"""A ZooKeeper server that takes a connection and never answers must not hold our client
for a whole session timeout (a ZooKeeper that is starting does this now and then; a
leading master then stepped down although ZooKeeper was back within a second)."""
from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest
from kazoo.client import KazooClient

from framework.zkclient import HANDSHAKE_SECONDS, RETRY_MAX_DELAY, kazoo_client


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP peer that accepts connections, reads what comes and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            held.append(peer)

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for peer in held:
        peer.close()


def connect_seconds(client: KazooClient) -> float:
    started = time.monotonic()
    try:
        client.start(timeout=30)
        return time.monotonic() - started
    finally:
        client.stop()
        client.close()


def test_a_silent_server_costs_one_short_attempt_not_a_session_timeout(zk, silent_server: str) -> None:  # noqa: ANN001
    hosts = f"{silent_server},{zk.hosts}"  # the silent one first, every time
    ours = connect_seconds(kazoo_client(hosts, timeout=12.0, randomize_hosts=False))
    assert ours < 2 * HANDSHAKE_SECONDS + 1.0, ours
    # kazoo on its own waits a session timeout split between the hosts listed: 6 s here
    plain = connect_seconds(KazooClient(hosts=hosts, timeout=12.0, randomize_hosts=False))
    assert plain > 5.0, plain


def test_hosts_keep_their_chroot_and_every_server() -> None:
    client = kazoo_client("10.0.0.1:2181,10.0.0.2:2181/dockyard", timeout=10.0)
    assert client.chroot == "/dockyard"
    assert sorted(set(client.hosts)) == [("10.0.0.1", 2181), ("10.0.0.2", 2181)]
    assert len(client.hosts) == 2 * 3  # 10 s / 2 s per attempt, spread over two servers


def test_after_a_long_outage_clients_are_back_within_seconds_of_zookeeper(tmp_path) -> None:  # noqa: ANN001
    """kazoo's own back-off doubles towards an hour: after 30 s of ZooKeeper down its next
    attempt may come ~20 s later (measured: 8.8 s). Ours pauses at most RETRY_MAX_DELAY."""
    from kazoo.protocol.states import KazooState

    from tests.support.zookeeper import ZooKeeper

    server = ZooKeeper(tmp_path / "zk").start()
    client = kazoo_client(server.hosts, timeout=10.0)
    try:
        client.start(timeout=30)
        connected = threading.Event()
        client.add_listener(lambda state: connected.set() if state == KazooState.CONNECTED else connected.clear())
        server.stop()
        time.sleep(30)  # rounds of refused attempts, the pause growing between them
        server.start()
        back = time.monotonic()
        assert connected.wait(30)
        print(f"back {time.monotonic() - back:.1f} s after ZooKeeper")
        assert time.monotonic() - back < RETRY_MAX_DELAY * 1.5 + HANDSHAKE_SECONDS, time.monotonic() - back
    finally:
        client.stop()
        client.close()
        server.stop()
