"""The router's HAProxy half against a real HAProxy: servers changed through the runtime API
without a reload, seamless reloads, refused configurations kept aside, adoption by a new router."""
from __future__ import annotations

import socket

import pytest

from scheduler.router.haproxy import HAProxy, InvalidConfig
from scheduler.router.model import build
from scheduler.router.router import Router
from scheduler.router.settings import RouterSettings
from scheduler.router.runtime import show_proc
from scheduler.router.status import router_status
from tests.router.conftest import free_ports
from tests.router.load import SteadyLoad, get
from tests.support.procs import wait_for


def app(servers: list, port: int, vhost: str | None = "web.test", app_id: str = "/web", **labels: str) -> dict:
    return {"id": app_id, "labels": {"HAPROXY_GROUP": "external", **({"HAPROXY_0_VHOST": vhost} if vhost else {}),
                                     **labels},
            "portDefinitions": [{"port": port}],
            "tasks": [{"id": f"{app_id}.{s.name}", "state": "TASK_RUNNING", "host": "localhost",
                       "ipAddresses": [{"ipAddress": "127.0.0.1"}], "ports": [s.server_address[1]]}
                      for s in servers]}


@pytest.fixture
def ports() -> tuple[int, int, int]:
    """(service port, shared HTTP port, another service port)."""
    return tuple(free_ports(3))  # type: ignore[return-value]


def router_on(haproxy: HAProxy, http_port: int, **settings) -> Router:
    return Router(RouterSettings(http_port=http_port, **settings), client=None, haproxy=haproxy)  # type: ignore[arg-type]


def answers(port: int, count: int, host: str | None = None) -> set[str]:
    return {get(port, host=host)[1] for _ in range(count)}


def test_servers_come_and_go_through_the_runtime_api_without_a_reload(haproxy, http_servers, ports):
    service, http_port, _ = ports
    one, two, three = http_servers
    router = router_on(haproxy, http_port)
    assert router.apply(build([app([one, two], service)])) == "started"
    assert answers(service, 6) == {"one", "two"}
    assert answers(http_port, 6, host="web.test") == {"one", "two"}
    assert get(http_port, host="nobody.test")[0] == 404
    reloads = show_proc(haproxy.master_socket).reloads

    assert router.apply(build([app([one, three], service)])) == "runtime"
    assert answers(service, 6) == {"one", "three"}
    assert router.apply(build([app([one, two, three], service)])) == "runtime"
    assert answers(service, 9) == {"one", "two", "three"}
    assert router.apply(build([app([], service)])) == "runtime"
    assert get(service)[0] == 503  # no server left: HAProxy answers, nobody is refused
    assert router.apply(build([app([], service)])) == "unchanged"
    assert show_proc(haproxy.master_socket).reloads == reloads

    # more instances than slots: a reload, and every instance serves
    assert router_on(haproxy, http_port, server_slots=1).apply(build([app(http_servers, service)])) == "reloaded"


def test_a_new_frontend_reloads_without_refusing_a_connection(haproxy, http_servers, ports):
    service, http_port, other = ports
    router = router_on(haproxy, http_port)
    router.apply(build([app(http_servers[:2], service)]))
    with SteadyLoad(service, rate=200) as load:
        for index in range(4):
            apps = [app(http_servers[:2], service)] + [app(http_servers[2:], other, vhost=f"v{index}.test",
                                                           app_id="/other")] * ((index + 1) % 2)
            assert router.apply(build(apps)) == "reloaded"
            wait_for(lambda: load.total > 40 * (index + 1), timeout=10, what="requests during the reloads")
    assert not load.failures, load.failures[:5]
    assert {body for _, body in load.answers} == {"one", "two"}
    assert show_proc(haproxy.master_socket).reloads == 4


def test_an_invalid_configuration_is_kept_aside_and_the_running_one_stays(haproxy, http_servers, ports):
    service, http_port, _ = ports
    router = router_on(haproxy, http_port)
    router.apply(build([app(http_servers[:1], service)]))
    running = haproxy.config.read_text()
    with pytest.raises(InvalidConfig) as refused:
        haproxy.apply(running + "\nbackend broken\n  server s1 127.0.0.1:99999\n")
    assert refused.value.kept_at == haproxy.rejected and "broken" in haproxy.rejected.read_text()
    assert "99999" in str(refused.value)
    assert haproxy.config.read_text() == running
    assert answers(service, 3) == {"one"}


def test_a_configuration_haproxy_cannot_load_leaves_the_old_one_serving(haproxy, http_servers, ports):
    """A port something else holds passes `haproxy -c` but fails the reload: the new
    frontend is reported, the file put back, and the running app still follows its servers."""
    service, http_port, taken = ports
    router = router_on(haproxy, http_port)
    router.apply(build([app(http_servers[:1], service)]))
    holder = socket.socket()
    holder.bind(("127.0.0.1", taken))
    holder.listen(1)
    try:
        blocked = [app(http_servers[:2], service), app(http_servers[2:], taken, vhost="other.test", app_id="/other")]
        assert router.apply(build(blocked)) == "refused"
        assert "could not load" in router.counters.last_error
        assert "/other" in haproxy.rejected.read_text() or "other_0" in haproxy.rejected.read_text()
        assert "other_0" not in haproxy.config.read_text()
        # the running configuration still follows the servers of the apps it has
        assert answers(service, 6) == {"one", "two"}
        assert router.apply(build(blocked)) == "refused"  # not retried while nothing changes
        assert router.counters.failed_applies == 1
    finally:
        holder.close()
    assert router.apply(build(blocked + [app([], free_ports(1)[0], vhost="x.test", app_id="/x")])) == "reloaded"
    assert answers(taken, 3) == {"three"}


def test_a_new_router_adopts_the_running_haproxy(haproxy, http_servers, ports, haproxy_binary):
    service, http_port, _ = ports
    router_on(haproxy, http_port).apply(build([app(http_servers[:1], service)]))
    master = show_proc(haproxy.master_socket).master
    again = HAProxy(haproxy.work_dir, binary=haproxy_binary)
    with SteadyLoad(service, rate=200) as load:
        assert router_on(again, http_port).apply(build([app(http_servers[:2], service)])) == "reloaded"
        wait_for(lambda: load.total > 50, timeout=10, what="requests")
    assert not load.failures and show_proc(haproxy.master_socket).master == master
    assert answers(service, 6) == {"one", "two"}


def test_status_merges_haproxys_view(haproxy, http_servers, ports):
    service, http_port, _ = ports
    router = router_on(haproxy, http_port)
    router.client = type("Named", (), {"url": "http://scheduler.test"})()  # only its url is written
    router.apply(build([app(http_servers[:2], service)]))
    router.write_status()
    status = router_status(haproxy.work_dir)
    assert status["haproxy"]["running"] and status["frontends"][0]["port"] == service
    servers = status["backends"][0]["servers"]
    assert [(s["slot"], s["wanted"], s["haproxy"]) for s in servers] == [("s1", "ready", "UP"), ("s2", "ready", "UP")]
    haproxy.stop()
    assert router_status(haproxy.work_dir)["haproxy"]["running"] is False


def test_a_work_dir_too_long_for_unix_sockets_keeps_them_in_a_short_private_dir(tmp_path, haproxy_binary,
                                                                                  http_servers, ports):
    long_dir = tmp_path / ("x" * 100)
    haproxy = HAProxy(long_dir, binary=haproxy_binary)
    sockets = haproxy.master_socket.parent
    try:
        assert sockets != long_dir and len(str(haproxy.master_socket)) < 100
        assert sockets.stat().st_mode & 0o777 == 0o700
        service, http_port, _ = ports
        router_on(haproxy, http_port).apply(build([app(http_servers[:1], service)]))
        assert haproxy.running() and answers(service, 4) == {"one"}
        assert HAProxy(long_dir, binary=haproxy_binary).running()  # a new router finds the same sockets
    finally:
        haproxy.stop()
    assert not sockets.exists()  # stopping removes the private directory


def test_an_open_connection_is_served_to_its_end_by_the_old_worker_after_a_reload(haproxy, http_servers, ports):
    """A TCP connection open across a reload stays with the old worker, which exits once it
    closes (HTTP keep-alive connections idle between requests are closed instead, as HAProxy does)."""
    import http.client

    service, http_port, other = ports
    router = router_on(haproxy, http_port)
    tcp = app(http_servers[:1], service, vhost=None, HAPROXY_0_MODE="tcp")
    router.apply(build([tcp]))
    connection = http.client.HTTPConnection("127.0.0.1", service, timeout=5)
    try:
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"one"
        assert router.apply(build([tcp, app(http_servers[1:2], other, vhost="o.test", app_id="/other")])) == "reloaded"
        processes = show_proc(haproxy.master_socket)
        assert processes.old_workers and not set(processes.workers) & set(processes.old_workers)
        for _ in range(3):  # the same connection, still served through the old worker
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"one"
    finally:
        connection.close()
    wait_for(lambda: not show_proc(haproxy.master_socket).old_workers, timeout=15, what="the old worker gone")
    assert answers(other, 3) == {"two"}


def test_the_stats_page_and_metrics_ask_for_the_credentials_given(haproxy, http_servers, ports):
    service, http_port, stats = ports
    router = router_on(haproxy, http_port, stats_port=stats, stats_users=(("operator", "s3cret_X-1"),))
    assert router.apply(build([app([http_servers[0]], service)])) == "started"
    for path in ("/;csv", "/metrics"):
        assert get(stats, path)[0] == 401
        assert get(stats, path, auth=("operator", "wrong"))[0] == 401
    status, page = get(stats, "/;csv", auth=("operator", "s3cret_X-1"))
    assert status == 200 and "dockyard_stats" in page
    assert get(stats, "/metrics", auth=("operator", "s3cret_X-1"))[0] == 200
    assert haproxy.config.stat().st_mode & 0o777 == 0o600  # it holds the password
    assert answers(service, 2) == {"one"}  # the services themselves ask for nothing
