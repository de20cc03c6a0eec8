"""The PyPI `marathon` client (0.13.0) drives a whole app lifecycle against dockyard.

The client builds its models with fixed keyword lists, so any key dockyard adds
that Marathon does not have fails these tests with a TypeError. The scheduler is
secured as a test cluster's always is, so the client logs in with
`username`/`password` (HTTP Basic, as with Marathon's `--http_credentials`); it
also works over HTTPS verified with `verify=<CA file>`.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest
from marathon import MarathonApp, MarathonClient
from marathon.exceptions import MarathonError, MarathonHttpError, NoResponseError, NotFoundError

from framework.security.bundle import Bundle
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarathonClient]:
    workdir = Path(tmp_path_factory.mktemp("marathon-client"))
    with Cluster(workdir, agents=2, resources="cpus:4;mem:4096;disk:10000;ports:[31000-31100]").start() as cluster:
        with SchedulerProcess.start(cluster, workdir / "scheduler") as scheduler:
            operator = cluster.operator
            assert operator is not None
            yield MarathonClient(scheduler.url, username=operator.principal, password=operator.secret, timeout=10)


def deployed(client: MarathonClient, app_id: str) -> MarathonApp | None:
    app = client.get_app(app_id, embed_tasks=True)
    return app if not app.deployments else None


def test_info_leader_ping(client: MarathonClient) -> None:
    info = client.get_info()
    assert info.name == "dockyard" and info.http_config.http_port
    assert client.get_leader()["leader"].startswith("127.0.0.1:")
    pong = client.ping()
    assert "pong" in (pong.decode() if isinstance(pong, bytes) else pong)


def test_whole_lifecycle(client: MarathonClient) -> None:
    events: list = []
    attached = threading.Event()

    def listen() -> None:
        try:
            for event in client.event_stream():
                events.append(event)
                if event.event_type == "event_stream_attached":
                    attached.set()
                if event.event_type == "app_terminated_event":
                    return
        except Exception as error:  # surfaced by the assertions below
            events.append(error)
            attached.set()

    threading.Thread(target=listen, daemon=True).start()
    assert attached.wait(10)

    app = client.create_app("itest", MarathonApp(cmd="sleep 3600", mem=16, cpus=0.1, instances=3,
                                                  health_checks=[], labels={"team": "x"}))
    assert app.id == "/itest"
    final = wait_for(lambda: deployed(client, "/itest"), timeout=60, what="itest deployed")
    assert final.tasks_running == 3
    assert [a.id for a in client.list_apps(label="team==x")] == ["/itest"]
    assert len(client.list_tasks("/itest")) == 3

    client.scale_app("/itest", 4)
    wait_for(lambda: (a := deployed(client, "/itest")) and a.tasks_running == 4, timeout=60, what="scaled")

    client.update_app("/itest", MarathonApp(cmd="sleep 3601", mem=16, cpus=0.1, instances=4))
    wait_for(lambda: (a := deployed(client, "/itest")) and a.cmd == "sleep 3601"
             and a.tasks_running == 4 and {t.version for t in a.tasks} == {a.version},
             timeout=60, what="rolling update")
    assert len(client.list_versions("/itest")) >= 3

    tasks = client.list_tasks("/itest")
    assert client.kill_given_tasks([tasks[0].id], scale=True)
    wait_for(lambda: (a := deployed(client, "/itest")) and a.instances == 3 and a.tasks_running == 3,
             timeout=60, what="killed with scale")
    killed = client.kill_task("/itest", client.list_tasks("/itest")[0].id)
    assert killed.id
    wait_for(lambda: (a := deployed(client, "/itest")) and a.tasks_running == 3, timeout=30,
             what="replacement after kill")

    # A deployment that cannot finish (no agent has the memory). Constraints would do too, but
    # the client cannot encode them on Python 3.10+ (collections.Iterable, marathon 0.13.0).
    client.update_app("/itest", MarathonApp(cmd="sleep 3602", mem=100000, cpus=0.1, instances=3))
    deployments = client.list_deployments()
    assert deployments and deployments[0].affected_apps == ["/itest"]
    with pytest.raises(MarathonHttpError) as locked:
        client.update_app("/itest", MarathonApp(cmd="sleep 1", mem=16, cpus=0.1))
    assert locked.value.status_code == 409
    queue = client.list_queue(embed_last_unused_offers=True)
    assert any(q.app.id == "/itest" for q in queue)
    client.delete_deployment(deployments[0].id)  # a rollback
    try:
        wait_for(lambda: (a := deployed(client, "/itest")) and a.cmd == "sleep 3601" and a.tasks_running == 3,
                 timeout=60, what="rolled back")
    except TimeoutError:
        app = client.get_app("/itest", embed_tasks=True)
        raise AssertionError(f"{app.cmd} {app.tasks_running} {app.deployments} "
                             f"{[(t.state, t.version) for t in app.tasks]} {app.version}") from None

    client.delete_app("/itest")
    wait_for(lambda: not [a for a in client.list_apps() if a.id == "/itest"], timeout=60, what="deleted")
    with pytest.raises(NotFoundError):
        client.get_app("/itest")
    wait_for(lambda: any(getattr(e, "event_type", "") == "app_terminated_event" for e in events), timeout=10,
             what="app_terminated_event")
    assert not [e for e in events if isinstance(e, Exception)]
    kinds = {e.event_type for e in events}
    assert {"api_post_event", "status_update_event", "deployment_info", "deployment_success"} <= kinds


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Bundle]]:
    """A scheduler serving HTTPS (the cluster's CA) with the cluster bundle's users."""
    workdir = Path(tmp_path_factory.mktemp("marathon-client-secured"))
    with Cluster(workdir / "cluster", agents=1).start() as cluster:
        # TLS on the API only: the embedded master here is plain HTTP, which `http://` says.
        with SchedulerProcess.start(cluster, workdir / "scheduler", tls=True) as scheduler:
            assert cluster.bundle is not None
            yield scheduler.url, cluster.bundle


def test_username_and_password_over_https(secured: tuple[str, Bundle]) -> None:
    url, bundle = secured
    ca = str(bundle.ca_cert)
    operator = MarathonClient(url, username=bundle.operator.principal, password=bundle.operator.secret,
                              verify=ca, timeout=10)
    viewer = MarathonClient(url, username=bundle.viewer.principal, password=bundle.viewer.secret,
                            verify=ca, timeout=10)
    assert operator.ping()  # open, as Marathon answers it
    assert operator.get_info().name == "dockyard"

    events = operator.event_stream()  # the SSE session authenticates too
    assert next(iter(events)).event_type == "event_stream_attached"

    app = operator.create_app("secure-web", MarathonApp(cmd="sleep 3600", mem=16, cpus=0.1, instances=1))
    assert app.id == "/secure-web"
    final = wait_for(lambda: deployed(operator, "/secure-web"), timeout=60, what="secure-web deployed")
    assert final.tasks_running == 1
    assert [a.id for a in viewer.list_apps()] == ["/secure-web"]
    with pytest.raises(MarathonHttpError) as refused:
        viewer.scale_app("/secure-web", 2)
    assert refused.value.status_code == 403
    operator.delete_app("/secure-web")
    wait_for(lambda: not operator.list_apps(), timeout=60, what="secure-web deleted")

    with pytest.raises(MarathonHttpError) as unauthorized:
        MarathonClient(url, verify=ca, timeout=10).list_apps()
    assert unauthorized.value.status_code == 401
    wrong = MarathonClient(url, username=bundle.operator.principal, password="wrong", verify=ca, timeout=10)
    with pytest.raises(MarathonHttpError):
        wrong.list_apps()
    with pytest.raises((NoResponseError, MarathonError)):  # the system's CAs do not know ours
        MarathonClient(url, username=bundle.operator.principal, password=bundle.operator.secret,
                       timeout=10).list_apps()
