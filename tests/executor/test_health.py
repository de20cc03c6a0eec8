"""Health checks against real sockets and processes; the clock is injected for the grace period."""
from __future__ import annotations

import http.server
import socket
import threading

import pytest

from executor.health import HealthChecker, build_check, command_check, http_check, tcp_check


@pytest.fixture
def http_server():
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], status
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_tcp_and_command_checks(http_server):
    port, status = http_server
    assert http_check(port, "/health", timeout=2)()[0]
    status["code"] = 503
    healthy, reason = http_check(port, timeout=2)()
    assert not healthy and "503" in reason
    assert tcp_check(port, timeout=2)()[0]
    with pytest.raises(OSError):
        tcp_check(closed_port(), timeout=2)()
    assert command_check("exit 0")() == (True, "command exited 0")
    healthy, reason = command_check("echo bad >&2; exit 2")()
    assert not healthy and reason == "command exited 2: bad"
    assert command_check("sleep 5", timeout=0.2)() == (False, "command timed out after 0.2s")


def test_port_index_resolves_against_the_task_ports(http_server):
    port, _ = http_server
    check = build_check({"type": "HTTP", "http": {"port": 0, "port_index": 1, "path": "/"},
                         "timeout_seconds": 2}, [1, port])
    assert check()[0]
    with pytest.raises(ValueError):
        build_check({"type": "TCP", "tcp": {"port_index": 3}}, [port])


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def checker(results, clock, **kwargs):
    reports = []
    outcomes = iter(results)

    def check():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome, "ok" if outcome else "down"
    hc = HealthChecker(check, report=lambda h, r: reports.append((h, r)), clock=clock, **kwargs)
    return hc, reports


def test_grace_period_then_consecutive_failures_kill():
    clock = FakeClock()
    hc, reports = checker([False, False, False, True, False, RuntimeError("boom"), False], clock,
                          grace_seconds=10, max_failures=3)
    hc.run_once()
    hc.run_once()
    assert hc.failures == 0 and reports == []  # failing while starting does not count
    clock.now = 11  # grace over: failures count now
    hc.run_once()
    assert hc.failures == 1 and reports == [(False, "down")]
    hc.run_once()  # success resets
    assert hc.failures == 0 and reports[-1] == (True, "ok")
    hc.run_once()
    hc.run_once()  # an exception is a failure, with its reason
    assert reports[-1] == (False, "down") and hc.last_reason == "RuntimeError: boom"
    assert hc._verdict is None
    hc.run_once()
    assert hc._verdict is not None and hc._verdict.state == "TASK_KILLED" and hc._verdict.healthy is False


def test_first_success_ends_the_grace_period_and_zero_never_kills():
    clock = FakeClock()
    hc, reports = checker([True, False, False, False, False], clock, grace_seconds=100, max_failures=0)
    for _ in range(5):
        hc.run_once()
    assert reports == [(True, "ok"), (False, "down")] and hc.failures == 4 and hc._verdict is None


def test_thread_runs_checks_on_interval(http_server):
    port, status = http_server
    reports = []
    hc = HealthChecker(http_check(port, timeout=2), report=lambda h, r: reports.append(h),
                       grace_seconds=0, interval_seconds=0.05, max_failures=2)
    assert hc.status() is None  # first poll starts the thread
    assert hc.checked.wait(5)
    status["code"] = 500
    for _ in range(200):
        if hc.status() is not None:
            break
        hc.checked.clear()
        hc.checked.wait(1)
    hc.stop()
    assert hc.status() is not None and reports[:2] == [True, False]
