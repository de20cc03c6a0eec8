"""Apps to frontends, backends, routes and servers; slots; runtime commands; the rendered
configuration, checked by the real `haproxy -c`."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from scheduler.router.model import (DRAIN, READY, ModelSettings, Server, build, lay_out, runtime_commands,
                                    servers_only, slot_count)
from scheduler.router.render import RenderSettings, UnsafeValue, render


def task(task_id: str, port: int, state: str = "TASK_RUNNING", ip: str = "127.0.0.1", **extra) -> dict:
    return {"id": task_id, "state": state, "host": "agent0", "ipAddresses": [{"ipAddress": ip}],
            "ports": [port, port + 1], **extra}


def web(tasks: list[dict], labels: dict | None = None, **extra) -> dict:
    return {"id": "/shop/web", "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.example",
                                          **(labels or {})},
            "portDefinitions": [{"port": 10101}, {"port": 10102}], "tasks": tasks, **extra}


def test_each_app_port_of_the_group_is_a_frontend_with_its_backend():
    model = build([web([task("a", 31000), task("b", 31010)]),
                   {"id": "/other", "labels": {"HAPROXY_GROUP": "internal"}, "portDefinitions": [{"port": 10200}],
                    "tasks": [task("c", 31020)]},
                   {"id": "/unlabelled", "portDefinitions": [{"port": 10300}], "tasks": [task("d", 31030)]}])
    assert [(f.name, f.port, f.mode) for f in model.frontends] == [("shop_web_0", 10101, "http"),
                                                                    ("shop_web_1", 10102, "tcp")]
    assert [s.endpoint for s in model.backend("shop_web_0").servers] == [("127.0.0.1", 31000), ("127.0.0.1", 31010)]
    assert [s.port for s in model.backend("shop_web_1").servers] == [31001, 31011]
    assert [(r.backend, r.vhosts) for r in model.routes] == [("shop_web_0", ("web.example",))]
    everything = build([{"id": "/unlabelled", "portDefinitions": [{"port": 10300}], "tasks": []}],
                       ModelSettings(group="*"))
    assert [f.port for f in everything.frontends] == [10300]


def test_only_running_healthy_ready_instances_serve():
    checks = {"healthChecks": [{"protocol": "HTTP", "portIndex": 0}], "readinessChecks": [{"name": "r"}],
              "readinessCheckResults": [{"taskId": "unready", "ready": False}]}
    tasks = [task("ok", 31000, healthCheckResults=[{"alive": True}]),
             task("staging", 31010, state="TASK_STAGING"),
             task("killing", 31020, state="TASK_KILLING", healthCheckResults=[{"alive": True}]),
             task("sick", 31030, healthCheckResults=[{"alive": False}]),
             task("unchecked", 31040, healthCheckResults=[]),
             task("unready", 31050, healthCheckResults=[{"alive": True}]),
             task("unreachable", 31060, state="TASK_UNREACHABLE", healthCheckResults=[{"alive": True}]),
             task("draining", 31070, healthCheckResults=[{"alive": True}], draining=True)]
    model = build([web(tasks, **checks)])
    servers = {s.task_id: s.state for s in model.backend("shop_web_0").servers}
    assert servers == {"ok": READY, "unreachable": READY, "draining": DRAIN}
    assert model.unready == 1


def test_a_restarted_scheduler_that_knows_no_health_yet_does_not_empty_a_backend():
    """After a failover the scheduler answers empty healthCheckResults until the executors
    report again, and runs readiness checks anew: instances that served keep serving."""
    checks = {"healthChecks": [{"protocol": "HTTP", "portIndex": 0}], "readinessChecks": [{"name": "r"}]}
    before = build([web([task("old", 31000, healthCheckResults=[{"alive": True}])], **checks)])
    assert before.seen.alive == {"old"} and before.seen.ready == {"old"}
    restarted = [task("old", 31000, healthCheckResults=[]), task("new", 31010, healthCheckResults=[])]
    after = build([web(restarted, readinessCheckResults=[{"taskId": "old", "ready": False}], **checks)],
                  seen=before.seen)
    assert [s.task_id for s in after.backend("shop_web_0").servers] == ["old"]
    assert after.seen.alive == {"old"}
    # a result that says unhealthy wins over memory
    sick = build([web([task("old", 31000, healthCheckResults=[{"alive": False}])], **checks)], seen=after.seen)
    assert sick.backend("shop_web_0").servers == () and sick.seen.alive == frozenset()


def test_the_task_address_comes_from_ip_addresses_else_its_host_resolved():
    no_ip = {"id": "x", "state": "TASK_RUNNING", "host": "agent7", "ports": [31000]}
    model = build([web([no_ip])], resolve=lambda host: {"agent7": "10.1.2.3"}.get(host))
    assert model.backend("shop_web_0").servers[0].address == "10.1.2.3"
    unresolved = build([web([no_ip])])
    assert unresolved.backend("shop_web_0").servers == () and "no address" in unresolved.problems[0]


def test_port_and_route_clashes_leave_the_later_app_out_with_a_reason():
    clash = {"id": "/zzz", "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_PORT": "10101",
                                      "HAPROXY_0_VHOST": "web.example"},
             "portDefinitions": [{"port": 0}], "tasks": []}
    model = build([web([]), clash], ModelSettings(http_port=80, reserved_ports={80: "HTTP port"}))
    assert [f.name for f in model.frontends] == ["shop_web_0", "shop_web_1"]
    assert model.backend("zzz_0") is None
    assert any("port 10101 is /shop/web's" in p for p in model.problems)
    assert any("host and path are /shop/web's" in p for p in model.problems)
    own = build([{**clash, "id": "/own", "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_PORT": "80"}}],
                ModelSettings(reserved_ports={80: "HTTP port"}))
    assert own.frontends == () and "the router's HTTP port" in own.problems[0]


def test_a_bad_label_leaves_its_port_out_and_says_why():
    model = build([web([task("a", 31000)], {"HAPROXY_0_VHOST": "evil\n  server x 1.2.3.4:22"})])
    assert [f.name for f in model.frontends] == ["shop_web_1"]
    assert "HAPROXY_0_VHOST" in model.problems[0]


def test_servers_fill_slots_and_only_server_changes_need_no_reload():
    first, reload = lay_out(build([web([task("a", 31000), task("b", 31010)])]), None)
    assert reload and slot_count(2) == 8 and len(first.slots["shop_web_0"]) == 8
    # b leaves, c arrives: c takes a slot that was empty, and is in rotation before b's slot empties
    second, reload = lay_out(build([web([task("a", 31000), task("c", 31020)])]), first)
    assert not reload
    names = {slot.server.task_id: slot.name for slot in second.slots["shop_web_0"] if slot.server}
    assert names == {"a": "s1", "c": "s3"}
    commands = runtime_commands(first, second)
    assert commands[-2:] == ["set server shop_web_0/s2 state maint", "set server shop_web_1/s2 state maint"]
    assert commands.index("set server shop_web_0/s3 addr 127.0.0.1 port 31020") < \
        commands.index("set server shop_web_0/s3 state ready")
    # a drains: one state command per port, nothing else
    third, reload = lay_out(build([web([task("a", 31000, draining=True), task("c", 31020)])]), second)
    assert not reload and runtime_commands(second, third) == [
        "set server shop_web_0/s1 state drain", "set server shop_web_1/s1 state drain"]
    assert lay_out(third.model, third) == (third, False) and runtime_commands(third, third) == []


def applied(layout, commands: list[str]) -> dict[str, tuple[str, str]]:
    """What HAProxy holds after `commands`, one at a time as it applies them: slot -> (endpoint,
    state); a slot in MAINT serves nothing, whatever address it keeps."""
    servers = {f"{backend}/{slot.name}": (f"{slot.server.address}:{slot.server.port}", slot.server.state)
               if slot.server else ("-", "maint") for backend, slots in layout.slots.items()
               for slot in slots}
    for command in commands:
        _, _, name, what, *value = command.split()
        endpoint, state = servers[name]
        servers[name] = (f"{value[0]}:{value[2]}", state) if what == "addr" else (endpoint, value[0])
    return {name: ("-", "maint") if held[1] == "maint" else held for name, held in servers.items()}


def test_a_rolling_restart_in_one_pass_never_leaves_a_backend_without_a_ready_server():
    """The old instances drain and the new ones arrive in the same pass (one debounced sync):
    after every single command some server of the backend is still ready."""
    old = [task(name, 31000 + 10 * i) for i, name in enumerate("abc")]
    new = [task(name, 31100 + 10 * i) for i, name in enumerate("def")]
    before, _ = lay_out(build([web(old)]), None)
    after, reload = lay_out(build([web([dict(t, draining=True) for t in old] + new)]), before)
    commands = runtime_commands(before, after)
    assert not reload and commands
    for count in range(len(commands) + 1):
        held = applied(before, commands[:count])
        assert any(state == READY for name, (_, state) in held.items() if name.startswith("shop_web_0/")), \
            commands[:count]
    assert applied(before, commands) == applied(after, [])
    # then the drained ones leave, and one more replaces one of the new in its slot
    last, _ = lay_out(build([web([task("d", 31100), task("e", 31110), task("g", 31200)])]), after)
    commands = runtime_commands(after, last)
    for count in range(len(commands) + 1):
        held = applied(after, commands[:count])
        assert any(state == READY for name, (_, state) in held.items() if name.startswith("shop_web_0/"))
    assert applied(after, commands) == applied(last, [])


def test_more_servers_than_slots_or_a_new_frontend_need_a_reload():
    small, _ = lay_out(build([web([task("a", 31000)])]), None, minimum=2)
    grown, reload = lay_out(build([web([task(str(i), 31000 + 10 * i) for i in range(3)])]), small, minimum=2)
    assert reload and len(grown.slots["shop_web_0"]) == 8
    relabelled, reload = lay_out(build([web([task("a", 31000)], {"HAPROXY_0_VHOST": "new.example"})]), small, 2)
    assert reload


def test_servers_only_keeps_the_running_shape():
    running, _ = lay_out(build([web([task("a", 31000)])]), None)
    wanted = build([web([task("b", 31010)], {"HAPROXY_0_VHOST": "other.example"})])
    fallback, reload = lay_out(servers_only(wanted, running), running)
    assert not reload and fallback.model.routes == running.model.routes
    assert [s.task_id for s in fallback.model.backend("shop_web_0").servers] == ["b"]


@pytest.fixture(scope="module")
def haproxy_check(tmp_path_factory: pytest.TempPathFactory):
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy is not installed (the Makefile installs Debian's haproxy)")
    directory = tmp_path_factory.mktemp("render")

    def check(text: str) -> subprocess.CompletedProcess:
        path = directory / "haproxy.cfg"
        path.write_text(text)
        return subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    return check


def test_the_rendered_configuration_is_valid_for_haproxy(haproxy_check, tmp_path):
    apps = [web([task("a", 31000), task("b", 31010, draining=True)], {"HAPROXY_0_PATH": "/api /v1"}),
            {"id": "/db", "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "tcp"},
             "portDefinitions": [{"port": 15432}], "tasks": [task("d", 31100, ip="::1")]},
            {"id": "/paths-only", "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_PATH": "/static"},
             "portDefinitions": [{"port": 0}], "tasks": []}]
    layout, _ = lay_out(build(apps), None)
    text = render(layout, RenderSettings(http_port=18080, stats_port=18090, admin_socket=str(tmp_path / "a.sock")))
    result = haproxy_check(text)
    assert result.returncode == 0, result.stderr + text
    assert "Warnings" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "server s2 127.0.0.1:31010 disabled" in text and "server s1 ::1:31100" in text
    assert "acl host_shop_web_0 req.hdr(host),field(1,:) -i web.example" in text
    assert "use_backend shop_web_0 if host_shop_web_0 path_shop_web_0" in text
    assert text.index("use_backend shop_web_0") < text.index("use_backend paths-only_0")


def test_render_refuses_a_value_that_would_change_the_structure():
    layout, _ = lay_out(build([web([task("a", 31000)])]), None)
    for evil in ("x\nlisten evil", "a b", "#", '"'):
        with pytest.raises(UnsafeValue):
            render(layout, RenderSettings(admin_socket=evil))
    bad_server = Server("t", "1.2.3.4:22\n  server evil", 1)
    model = build([web([])])
    backend = model.backend("shop_web_0")
    from dataclasses import replace
    hacked = replace(model, backends=(replace(backend, servers=(bad_server,)),) + model.backends[1:])
    with pytest.raises(UnsafeValue):
        render(lay_out(hacked, None)[0])
