"""Service ports, agent addresses and drains across a leader failover: two schedulers with
`--zk` (tests/faults/harness.py), the leader killed with SIGKILL. The new leader gives the
apps the ports they had, assigns the next ones after them, gives each task its agent's IP
at once, and takes a router's report through the follower that forwards it."""
from __future__ import annotations

from pathlib import Path

from tests.faults.harness import Deployment
from tests.support.procs import wait_for
from tests.support.zookeeper import ZooKeeper


def ports(app: dict) -> list[int]:
    return [p["port"] for p in app["portDefinitions"]]


def test_a_new_leader_keeps_the_ports_and_addresses_and_takes_router_reports(zk: ZooKeeper, tmp_path: Path) -> None:
    with Deployment(tmp_path, zk, agents=1) as d:
        old = d.wait_leader()
        status, created = d.api("POST", "/v2/apps", {"id": "/kept", "cmd": "sleep 600", "cpus": 0.05, "mem": 16,
                                                     "portDefinitions": [{"port": 0}, {"port": 0}]}, via=old)
        assert status == 201, created
        given = ports(created)
        wait_for(lambda: d.api("GET", "/v2/apps/kept", via=old)[1]["app"]["tasksRunning"] == 1, timeout=60,
                 what="/kept running")

        d.kill_scheduler(old.index)
        new = d.wait_leader(other_than=old.index, timeout=60)
        status, body = d.api("GET", "/v2/apps/kept", via=new)
        assert status == 200 and ports(body["app"]) == given
        assert [t["ipAddresses"] for t in body["app"]["tasks"]] == [[{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]]
        status, second = d.api("POST", "/v2/apps", {"id": "/second", "cmd": "sleep 600", "cpus": 0.05, "mem": 16,
                                                    "instances": 0, "portDefinitions": [{"port": 0}]}, via=new)
        assert status == 201 and ports(second) == [max(given) + 1], second
        status, clash = d.api("POST", "/v2/apps", {"id": "/clash", "cmd": "sleep 600", "instances": 0,
                                                   "portDefinitions": [{"port": given[0]}]}, via=new)
        assert status == 422 and "/kept" in clash["details"][0]["errors"][0], clash

        d.start_scheduler(old.index)  # back, as a follower that forwards to the new leader
        follower = d.scheds[old.index]
        report = {"id": "test:router", "group": "external", "serving": [], "nextReportWithin": 0}
        assert d.api("POST", "/dockyard/v1/routers", report, via=follower) == (200, {"draining": []})
