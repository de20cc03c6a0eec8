"""The election (framework/election.py) in-process against the real ZooKeeper, as the schedulers and
the masters contend (fast; the process tests use it too)."""
from __future__ import annotations

import json
import re
import threading
import uuid

import pytest

from framework.election import Election
from framework.errors import LeadershipError
from framework.mesos.detector import LEADER_PREFIX, MasterDetector, parse_master_info
from framework.zkclient import parse_zk_url
from scheduler.leader import SchedulerElection, current_leader
from tests.support.procs import free_port, wait_for
from tests.support.zookeeper import ZooKeeper, expire_session


def candidate(url: str, address: str) -> tuple[SchedulerElection, threading.Event, list[str]]:
    elected = threading.Event()
    lost: list[str] = []
    election = SchedulerElection(url, address, on_elected=elected.set, on_lost=lost.append, fast_takeover=False)
    return election, elected, lost


def test_lowest_member_leads_and_the_next_takes_over(zk: ZooKeeper) -> None:
    url = zk.url(f"/election-{uuid.uuid4().hex[:6]}")
    first, first_elected, first_lost = candidate(url, "127.0.0.1:1001")
    second, second_elected, _ = candidate(url, "127.0.0.1:1002")
    try:
        first.start()
        assert first_elected.wait(10) and first.is_leader
        second.start()
        wait_for(lambda: second.leader_address() == "127.0.0.1:1001", timeout=10, what="the follower's view")
        assert not second.is_leader and not second_elected.is_set()
        assert current_leader(url) == "127.0.0.1:1001"
        first.close()  # graceful: the node goes at once
        assert second_elected.wait(10) and second.is_leader
        assert current_leader(url) == "127.0.0.1:1002"
        assert first_lost == []  # leaving on purpose is not losing
    finally:
        first.close()
        second.close()


def test_a_leader_whose_node_vanishes_is_told_it_lost(zk: ZooKeeper) -> None:
    url = zk.url(f"/election-{uuid.uuid4().hex[:6]}")
    leader, elected, lost = candidate(url, "127.0.0.1:1003")
    try:
        leader.start()
        assert elected.wait(10)
        node = f"{leader.path}/{leader.members()[0].node}"
        leader.client.delete(node)  # as an operator (or a successor's take-over) would
        wait_for(lambda: lost, timeout=10, what="the loss callback")
        assert not leader.is_leader and "no longer the first" in lost[0]
    finally:
        leader.close()


def test_abdication_calls_the_loss_callback(zk: ZooKeeper) -> None:
    url = zk.url(f"/election-{uuid.uuid4().hex[:6]}")
    leader, elected, lost = candidate(url, "127.0.0.1:1004")
    try:
        leader.start()
        assert elected.wait(10)
        leader.abdicate()
        assert lost == ["abdicated"] and current_leader(url) is None
    finally:
        leader.close()


def test_fast_takeover_removes_a_dead_leaders_node(zk: ZooKeeper) -> None:
    """Nothing listens on the leader's advertised port: the successor takes its node away."""
    url = zk.url(f"/election-{uuid.uuid4().hex[:6]}")
    dead = SchedulerElection(url, f"127.0.0.1:{free_port()}", on_lost=lambda reason: None, fast_takeover=False)
    successor_elected = threading.Event()
    successor = SchedulerElection(url, "127.0.0.1:1005", on_elected=successor_elected.set,
                         on_lost=lambda reason: None)
    try:
        dead.start()
        wait_for(dead.wait_elected, timeout=10, what="the soon-dead leader elected")
        successor.start()
        assert successor_elected.wait(15)
        assert current_leader(url) == "127.0.0.1:1005"
    finally:
        dead.close()
        successor.close()


def test_reading_the_leader(zk: ZooKeeper) -> None:
    assert current_leader(zk.url(f"/nobody-{uuid.uuid4().hex[:6]}")) is None
    with pytest.raises(LeadershipError):
        current_leader(f"zk://127.0.0.1:{free_port()}/dockyard", timeout=1)


def test_a_leader_whose_session_expires_steps_down_and_the_next_leads(zk: ZooKeeper) -> None:
    """The leader hears it lost (its owner then stops acting: the scheduler exits to be
    restarted as a follower), and the follower, whose session is intact, takes over."""
    url = zk.url(f"/election-{uuid.uuid4().hex[:6]}")
    first, first_elected, first_lost = candidate(url, "127.0.0.1:1006")
    second, second_elected, second_lost = candidate(url, "127.0.0.1:1007")
    try:
        first.start()
        assert first_elected.wait(10)
        second.start()
        wait_for(lambda: second.leader_address() == "127.0.0.1:1006", timeout=10, what="the follower's view")
        expire_session(first.client, zk.hosts)
        wait_for(lambda: first_lost, timeout=15, what="the expired leader told it lost")
        assert not first.is_leader
        assert second_elected.wait(15) and second.is_leader
        assert current_leader(url) == "127.0.0.1:1007" and second_lost == []
    finally:
        first.close()
        second.close()


def test_a_follower_whose_session_expires_stands_in_line_again(zk: ZooKeeper) -> None:
    """A follower's node goes with its session; it must re-enter the election, or nobody
    would take over when the leader dies."""
    url = zk.url(f"/election-{uuid.uuid4().hex[:6]}")
    first, first_elected, _ = candidate(url, "127.0.0.1:1008")
    second, second_elected, second_lost = candidate(url, "127.0.0.1:1009")
    try:
        first.start()
        assert first_elected.wait(10)
        second.start()
        wait_for(lambda: len(first.members()) == 2, timeout=10, what="two members")
        old_node = next(m.node for m in first.members() if m.data.address == "127.0.0.1:1009")
        expire_session(second.client, zk.hosts)
        wait_for(lambda: [m.data.address for m in first.members()] == ["127.0.0.1:1008", "127.0.0.1:1009"]
                 and old_node not in [m.node for m in first.members()], timeout=20,
                 what="the follower back in line with a new node")
        assert first.is_leader and not second.is_leader and second_lost == []
        first.close()
        assert second_elected.wait(15) and second.is_leader
    finally:
        first.close()
        second.close()


def test_masters_contend_as_mesos_masters_do_and_a_follower_whose_node_goes_joins_again(zk: ZooKeeper) -> None:
    """The masters' candidacies are `json.info_` members a Mesos detector follows; a standby
    whose node is deleted (not its session) stands in line again, as a Mesos master re-contends."""
    url = parse_zk_url(zk.url(f"/mesos-{uuid.uuid4().hex[:6]}"))

    def master(port: int) -> Election:
        info = {"id": f"m{port}", "address": {"ip": "127.0.0.1", "port": port}}
        return Election(url, LEADER_PREFIX, json.dumps(info).encode(), parse_master_info,
                        on_lost=lambda reason: None)

    first, second = master(5101), master(5102)
    detector = MasterDetector(f"zk://{url.servers}{url.path}")
    try:
        first.start()
        assert first.wait_elected(10)
        second.start()
        assert detector.wait(10) == "127.0.0.1:5101"
        node = second.node
        assert node is not None and re.fullmatch(r"json\.info_\d{10}", node)
        first.client.delete(f"{url.path}/{node}")
        wait_for(lambda: second.node != node and [m.node for m in first.members()] == [first.node, second.node],
                 timeout=10, what="the standby back in line with a new node")
        first.close()
        assert second.wait_elected(10)
        assert detector.wait_change("127.0.0.1:5101", 10) == "127.0.0.1:5102"
    finally:
        detector.close()
        first.close()
        second.close()
