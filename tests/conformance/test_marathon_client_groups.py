"""The PyPI `marathon` client (0.13.0) drives groups, the launch queue, task kills and `/ping`
against dockyard as against Marathon: the calls Marathon's own system tests make with it
(tests/system/marathon_common_tests.py: test_launch_group, test_launch_and_scale_group).

Before, creating Marathon's "sleep group" answered 200 with no deployment and created
nothing, and `ping()` (which asks for JSON) got text."""
from __future__ import annotations

import collections
import collections.abc
import json
from pathlib import Path
from typing import Iterator

import pytest
from marathon import MarathonApp, MarathonClient
from marathon.exceptions import MarathonHttpError
from marathon.models.group import MarathonGroup

from tests.services.test_marathon_fidelity import SLEEP_GROUP
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarathonClient]:
    workdir = Path(tmp_path_factory.mktemp("marathon-client-groups"))
    with Cluster(workdir, agents=2, resources="cpus:4;mem:4096;disk:10000;ports:[31000-31100]").start() as cluster:
        with SchedulerProcess.start(cluster, workdir / "scheduler") as scheduler, pytest.MonkeyPatch.context() as patch:
            # The client's JSON encoder of nested objects still names collections.Iterable, gone in
            # Python 3.10: the client's own bug, which a group's apps reach.
            patch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)
            operator = cluster.operator
            assert operator is not None
            yield MarathonClient(scheduler.url, username=operator.principal, password=operator.secret, timeout=10)


def settled(client: MarathonClient) -> bool:
    return not client.list_deployments()


def test_launch_and_scale_group(client: MarathonClient) -> None:
    created = client.create_group(MarathonGroup.from_json(json.loads(json.dumps(SLEEP_GROUP))))
    assert created["deploymentId"] and created["version"]
    [deployment] = client.list_deployments()
    assert deployment.id == created["deploymentId"] and len(deployment.affected_apps) == 2
    wait_for(lambda: settled(client), timeout=60, what="the group deployed")
    app1, app2 = (a["id"] for a in SLEEP_GROUP["groups"][0]["apps"])
    assert [len(client.list_tasks(a)) for a in (app1, app2)] == [1, 1]

    client.scale_group("/sleep-group/sleep", 2)
    wait_for(lambda: settled(client), timeout=60, what="the group scaled")
    assert [len(client.list_tasks(a)) for a in (app1, app2)] == [2, 2]

    # back to the version it was created at (the client's older versions/{v} form)
    client.rollback_group("/sleep-group", created["version"])
    wait_for(lambda: settled(client), timeout=60, what="the group rolled back")
    assert [client.get_app(a).instances for a in (app1, app2)] == [1, 1]

    client.delete_group("/sleep-group", force=True)
    wait_for(lambda: not client.list_apps(), timeout=60, what="the group's apps gone")


def test_kills_resets_and_ping(client: MarathonClient) -> None:
    app = client.create_app("pinned", MarathonApp(cmd="sleep 600", mem=16, cpus=0.1, instances=2))
    wait_for(lambda: settled(client) and len(client.list_tasks(app.id)) == 2, timeout=60, what="2 tasks")
    first, second = client.list_tasks(app.id)
    assert client.kill_given_tasks([first.id]) is True
    wait_for(lambda: first.id not in {t.id for t in client.list_tasks(app.id)}
             and len(client.list_tasks(app.id)) == 2, timeout=60, what="the killed task replaced")
    killed = client.kill_tasks(app.id, wipe=True)
    assert second.id in {t.id for t in killed}
    assert client.ping() == b'"pong"'  # it asks for JSON (Accept: application/json)

    crashing = client.create_app("crashing", MarathonApp(cmd="exit 1", mem=16, cpus=0.1, instances=1,
                                                           backoff_seconds=120))
    wait_for(lambda: any(q.app.id == crashing.id and q.delay.time_left_seconds > 60 for q in client.list_queue()),
             timeout=60, what="the crashing app delayed")
    client.reset_delay(crashing.id)
    assert all(q.delay.time_left_seconds == 0 for q in client.list_queue() if q.app.id == crashing.id)
    client.delete_app(crashing.id, force=True)
    client.delete_app(app.id, force=True)


def test_groups_read_back_through_the_client(client: MarathonClient) -> None:
    """`get_group` and `list_groups` build the client's MarathonGroup from every key of the answer:
    one it does not know (`enforceRole`, which Marathon 1.9+ shows) made both raise TypeError."""
    idle = {"id": "/readback/inner/idle", "cmd": "sleep 600", "cpus": 0.01, "mem": 16, "instances": 0}
    client.create_group(MarathonGroup.from_json({"id": "/readback", "groups": [
        {"id": "/readback/inner", "apps": [idle]}]}))
    wait_for(lambda: settled(client), timeout=60, what="the group deployed")
    group = client.get_group("/readback")
    assert group.id == "/readback" and [g.id for g in group.groups] == ["/readback/inner"]
    [app] = group.groups[0].apps
    assert (app.id, app.cmd, app.instances) == ("/readback/inner/idle", "sleep 600", 0)
    assert "/readback" in {g.id for g in client.list_groups()}
    client.delete_group("/readback", force=True)
    wait_for(lambda: "/readback" not in {g.id for g in client.list_groups()}, timeout=60, what="the group gone")


def test_a_one_character_cmd_is_refused_as_marathon_refuses_it(client: MarathonClient) -> None:
    """AppValidation: `cmd` must be longer than one character ("must not be an empty string")."""
    with pytest.raises(MarathonHttpError) as refused:
        client.create_app("terse", MarathonApp(cmd="x", mem=16, cpus=0.1, instances=0))
    assert refused.value.status_code == 422
    assert refused.value.error_details == [{"path": "/", "errors": ["must not be an empty string"]}]
    assert client.create_app("terse", MarathonApp(cmd="ls", mem=16, cpus=0.1, instances=0)).cmd == "ls"
    client.delete_app("terse", force=True)
