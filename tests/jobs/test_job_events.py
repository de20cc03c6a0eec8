"""The jobs event stream (`GET /v1/events`) and `dockyard job run --wait` following it.

Real processes: the package's cluster and scheduler, the `dockyard` CLI as a
child process, and a small HTTP proxy between them that counts the CLI's calls
and can break its event stream.
"""
from __future__ import annotations

import http.client
import http.server
import json
import queue
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.procs import dockyard
from tests.support.security import Endpoint

SMALL = {"cpus": 0.1, "mem": 32}


class CountingProxy:
    """Forwards every call to the scheduler and records (method, path); streams answers as they come.

    With `cut_events`, a `/v1/events` stream is closed right after its first record."""

    def __init__(self, target: str, cut_events: bool = False) -> None:
        self.target = urllib.parse.urlparse(target)
        self.cut_events = cut_events
        self.calls: list[tuple[str, str]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the answer ends when the connection closes

            def _forward(self) -> None:
                proxy.calls.append((self.command, self.path.split("?")[0]))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.end_headers()
                events = self.path.startswith("/v1/events")
                try:
                    while True:
                        chunk = answer.read1(65536) if events else answer.read()
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if events and proxy.cut_events and b"\n\n" in chunk:
                            break  # the stream breaks after its first record
                        if not events:
                            break
                except (OSError, http.client.HTTPException):  # either side went away
                    pass
                finally:
                    upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.calls if m == method and p.startswith(prefix))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(scheduler) -> Iterator[CountingProxy]:
    counting = CountingProxy(scheduler.url)
    yield counting
    counting.close()


class Cli:
    """`dockyard job run FILE --wait` as a child process (credentials from `config`, the scheduler's
    client.json; `url` may be a proxy in front of it); its output lines read as they come."""

    def __init__(self, spec: Path, url: str, config: Path) -> None:
        self.started = time.monotonic()
        self.popen = subprocess.Popen(dockyard("job", "run", str(spec), "--wait", "--url", url,
                                               "--config", str(config)),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[tuple[str, str, float]] = queue.Queue()
        self.seen: list[tuple[str, str, float]] = []
        for name, pipe in (("out", self.popen.stdout), ("err", self.popen.stderr)):
            threading.Thread(target=self._pump, args=(name, pipe), daemon=True).start()

    def _pump(self, name: str, pipe) -> None:  # noqa: ANN001
        for line in pipe:
            self.lines.put((name, line.rstrip("\n"), time.monotonic() - self.started))

    def wait_line(self, needle: str, timeout: float = 30) -> tuple[str, str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(item)
            if needle in item[1]:
                return item
        raise AssertionError(f"no line with {needle!r} within {timeout}s; saw {self.seen}")

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        code = self.popen.wait(timeout)
        time.sleep(0.1)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        out = "\n".join(line for name, line, _ in self.seen if name == "out")
        err = "\n".join(line for name, line, _ in self.seen if name == "err")
        return code, out, err

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()


def write_spec(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / f"{spec['id']}.json"
    path.write_text(json.dumps(spec))
    return path


def read_events(api: Endpoint, query: str, until: tuple[str, ...], timeout: float = 30) -> list[dict]:
    """Records of `/v1/events?query` after the attached one, up to the first of type `until`."""
    connection = api.http_connection(timeout=timeout)
    connection.request("GET", f"/v1/events?{query}", headers=api.headers({"Accept": "text/event-stream"}))
    answer = connection.getresponse()
    assert answer.status == 200 and answer.getheader("Content-Type", "").startswith("text/event-stream")
    events: list[dict] = []
    try:
        while not events or events[-1]["eventType"] not in until:
            line = answer.readline().decode()  # chunked framing decoded: a record may span chunks
            if not line:
                break
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    finally:
        connection.close()
    return events


def test_jobs_event_stream_tells_a_runs_story_with_metronome_names(scheduler) -> None:
    scheduler.call("PUT", "/v1/jobs/evented", {"id": "evented", "run": {"cmd": "echo hi; exit 2", **SMALL}})
    got: list[list[dict]] = []
    reader = threading.Thread(target=lambda: got.append(read_events(
        scheduler.api, "jobId=evented", until=("job_run_finished", "job_run_failed"))))
    reader.start()
    time.sleep(0.5)  # attached before the run starts (the stream only looks forward)
    other = scheduler.call("PUT", "/v1/jobs/not-evented", {"id": "not-evented", "run": {"cmd": "true", **SMALL}})
    scheduler.call("POST", "/v1/jobs/not-evented/runs")
    run = scheduler.call("POST", "/v1/jobs/evented/runs")
    reader.join(30)
    assert got, "the event stream did not end the run"
    attached, *events = got[0]
    assert attached["eventType"] == "event_stream_attached"
    assert other["id"] == "not-evented" and all(e["jobId"] == "evented" for e in events)  # jobId filters
    assert events[0]["eventType"] == "job_run_started" and events[0]["runId"] == run["id"]
    assert events[0]["jobRun"]["tasks"][0]["status"] == "PENDING"
    updates = [e for e in events if e["eventType"] == "job_run_updated"]
    assert updates and all("tasks" not in e["jobRun"] and e["task"]["id"] for e in updates)
    final = [e for e in events if e["eventType"] in ("job_run_finished", "job_run_failed")]
    assert final and final[0]["eventType"] == "job_run_failed", events
    assert final[0]["jobRun"]["status"] == "FAILED" and final[0]["jobRun"]["tasks"][0]["exitCode"] == 2
    code, body = scheduler.status("GET", "/v1/events?event_type=status_update_event")
    assert code == 400 and "job_run_updated" in body["message"]


def test_job_run_wait_follows_the_event_stream_and_streams_output_live(scheduler, proxy: CountingProxy,
                                                                       tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"id": "live", "run": {
        "cmd": "echo first-line; sleep 4; echo second-line >&2; exit 5", **SMALL}})
    cli = Cli(spec, proxy.url, scheduler.client_file)
    try:
        cli.wait_line("first-line")
        # printed while the task still runs: the output is streamed, not dumped at the end
        [run] = scheduler.call("GET", "/v1/jobs/live/runs")
        assert run["status"] == "ACTIVE", run
        code, out, err = cli.finish()
    finally:
        cli.kill()
    assert code == 5, err
    assert "first-line" in out and "second-line" in err and "TASK_FAILED" in err and "(exit 5)" in err
    assert "event stream lost" not in err
    assert proxy.count("GET", "/v1/events") == 1
    # one look at the run after attaching, perhaps one or two for its sandbox: not a 0.2 s poll
    # (which would have asked ~25 times over the task's 4 s)
    polls = proxy.count("GET", f"/v1/jobs/live/runs/{run['id']}")
    assert polls <= 5, proxy.calls


def test_job_run_wait_falls_back_to_polling_when_the_stream_breaks(scheduler, tmp_path: Path) -> None:
    cutting = CountingProxy(scheduler.url, cut_events=True)
    spec = write_spec(tmp_path, {"id": "cut", "run": {"cmd": "echo before; sleep 2; echo after; exit 3", **SMALL}})
    cli = Cli(spec, cutting.url, scheduler.client_file)
    try:
        code, out, err = cli.finish()
    finally:
        cli.kill()
        cutting.close()
    assert "event stream lost" in err and "polling" in err
    assert code == 3, err
    assert "before" in out and "after" in out and "TASK_FAILED" in err
    [run_id] = {p.rsplit("/", 1)[1] for m, p in cutting.calls if p.startswith("/v1/jobs/cut/runs/")}
    assert cutting.count("GET", f"/v1/jobs/cut/runs/{run_id}") >= 5  # it polled instead


def test_job_run_wait_says_why_a_run_cannot_be_placed_while_it_waits(scheduler, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"id": "unplaceable", "run": {
        "cmd": "true", "cpus": 0.1, "mem": 64000, "maxLaunchDelay": 8}})
    cli = Cli(spec, scheduler.url, scheduler.client_file)
    try:
        _, line, seen_at = cli.wait_line("waiting for resources", timeout=15)
        assert "mem" in line.lower(), line
        assert seen_at < 7, "the reason came only when the run gave up"
        [run] = scheduler.call("GET", "/v1/jobs/unplaceable/runs")
        assert run["status"] == "INITIAL" and run["waiting"] in line  # said while still waiting
        code, _, err = cli.finish()
    finally:
        cli.kill()
    assert code == 1, err
    assert "FAILED" in err and "maxLaunchDelay (8s)" in err
