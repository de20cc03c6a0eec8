"""Readiness probes run on workers: a slow endpoint holds its own probe, nothing else."""
from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from scheduler.services.readiness import Probe, ReadinessProber, probe
from tests.support.procs import wait_for


@pytest.fixture
def endpoints():
    """An HTTP server answering 200 on /ok and 503 elsewhere, and a port that accepts and never answers."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes connections; nobody ever reads or answers
    yield server.server_address[1], silent.getsockname()[1]
    server.shutdown()
    server.server_close()
    silent.close()


def test_probe_reads_status_codes(endpoints):
    port, silent = endpoints
    assert probe(Probe(f"http://127.0.0.1:{port}/ok", 5))[0] is True
    assert probe(Probe(f"http://127.0.0.1:{port}/no", 5)) == (False, "HTTP 503")
    assert probe(Probe(f"http://127.0.0.1:{port}/no", 5, (200, 503)))[0] is True
    started = time.monotonic()
    ready, detail = probe(Probe(f"http://127.0.0.1:{silent}/", 0.5))
    assert not ready and "timed out" in detail and time.monotonic() - started < 5


def test_a_hanging_endpoint_does_not_delay_other_probes(endpoints):
    port, silent = endpoints
    landed = threading.Event()
    prober = ReadinessProber(on_result=landed.set)
    try:
        assert prober.submit("slow", Probe(f"http://127.0.0.1:{silent}/", 30))
        assert not prober.submit("slow", Probe(f"http://127.0.0.1:{silent}/", 30))  # one in flight per task
        started = time.monotonic()
        assert prober.submit("quick", Probe(f"http://127.0.0.1:{port}/ok", 30))
        result = wait_for(lambda: prober.take("quick"), timeout=10, what="the quick probe's result")
        assert result[0] is True and time.monotonic() - started < 10
        assert landed.is_set() and prober.busy("slow") and prober.take("slow") is None
        assert prober.take("quick") is None  # a result is taken once
    finally:
        prober.stop()


def test_results_of_ended_tasks_are_dropped(endpoints):
    port, _ = endpoints
    prober = ReadinessProber()
    try:
        prober.submit("a", Probe(f"http://127.0.0.1:{port}/ok", 5))
        prober.submit("b", Probe(f"http://127.0.0.1:{port}/ok", 5))
        wait_for(lambda: not prober.busy("a") and not prober.busy("b"), timeout=10, what="both probes done")
        prober.retain({"b"})
        assert prober.take("a") is None and prober.take("b")[0] is True
    finally:
        prober.stop()
