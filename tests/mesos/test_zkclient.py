"""How every process reads a zk:// URL and opens a client.

A ZooKeeper server that takes a connection and never answers must not hold our client
for a whole session timeout (a ZooKeeper that is starting does this now and then; a
leading master then stepped down although ZooKeeper was back within a second)."""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from framework.zkclient import HANDSHAKE_SECONDS, RETRY_MAX_DELAY, ZkUrl, kazoo_client, parse_zk_url


def serve(on_connect: Callable[[socket.socket], None]) -> socket.socket:
    """A loopback listener that hands every connection it accepts to `on_connect`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            on_connect(peer)

    threading.Thread(target=accept, daemon=True).start()
    return listener


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP peer that accepts connections, reads what comes and never answers."""
    held: list[socket.socket] = []
    listener = serve(held.append)
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


def test_the_pause_between_rounds_of_attempts_stops_growing_at_the_cap() -> None:
    """kazoo's own pause doubles towards an hour (0.1, 0.2, ... 6.4, 12.8 s: after a 30 s
    ZooKeeper outage a client came back 8.8 s after ZooKeeper). Against a server that
    hangs up at once, ours tries again at least every RETRY_MAX_DELAY (+40% jitter)."""
    attempts: list[float] = []

    def hang_up(peer: socket.socket) -> None:
        attempts.append(time.monotonic())
        peer.close()

    listener = serve(hang_up)
    client = kazoo_client(f"127.0.0.1:{listener.getsockname()[1]}", timeout=10.0)
    started = time.monotonic()

    def connect() -> None:
        try:
            client.start(timeout=14)
        except Exception:  # it cannot connect, and is stopped meanwhile: that is the point
            pass

    threading.Thread(target=connect, daemon=True).start()
    time.sleep(13)
    ended = time.monotonic() - started
    client.stop()
    client.close()
    listener.close()
    late = [t - started for t in attempts if t - started > 5]  # the pause has reached its cap by now
    marks = [5.0, *late, ended]
    assert max(b - a for a, b in zip(marks, marks[1:])) < RETRY_MAX_DELAY * 1.4 + 0.5, [round(t, 1) for t in late]


@pytest.mark.parametrize("url, default, expected", [
    ("zk://h1:2181,h2:2181/mesos", "/", ZkUrl("h1:2181,h2:2181", "/mesos")),
    ("zk://h:2181/a/b/", "/", ZkUrl("h:2181", "/a/b")),
    ("zk://h:2181", "/dockyard", ZkUrl("h:2181", "/dockyard")),
    ("zk://h:2181/", "/", ZkUrl("h:2181", "/")),
    ("zk://user:p@ss@h:2181/mesos", "/", ZkUrl("h:2181", "/mesos", "user:p@ss")),  # as Mesos: the last @
    ("zoo://h:2181/mesos", "/", ZkUrl("h:2181", "/mesos")),  # pymesos's spelling
])
def test_zk_urls_read_as_mesos_reads_them(url: str, default: str, expected: ZkUrl) -> None:
    assert parse_zk_url(url, default_path=default) == expected


@pytest.mark.parametrize("url", ["http://h:2181/mesos", "h:2181/mesos", "zk:///mesos", "zk://user:pw@/mesos"])
def test_what_is_no_zk_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_zk_url(url)


def test_the_urls_credentials_authenticate_the_client() -> None:
    client = parse_zk_url("zk://user:secret@10.0.0.1:2181/mesos").client(timeout=10.0)
    assert client.auth_data == {("digest", "user:secret")}
    assert not parse_zk_url("zk://10.0.0.1:2181/mesos").client(timeout=10.0).auth_data
