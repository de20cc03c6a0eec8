"""Bad input to any client command ends in one or two lines saying what to do next, never a
traceback: a missing file, a file that is neither JSON nor YAML, a scheduler that does not
answer, a URL that is no scheduler.

The whole matrix runs in-process through click (an exception that escapes a command is what
would reach the user as a traceback); the cases the users met run as real `dockyard` processes.
"""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from tests.support.procs import dockyard, free_port

GOOD_APP = {"id": "/errors/app", "cmd": "sleep 1", "cpus": 0.1, "mem": 32}
GOOD_JOB = {"id": "errors-job", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}
BAD_JSON = '{"id": "errors",\n  "cmd": "sleep 1"\n  "cpus": 0.1}\n'
BAD_YAML = "id: errors\ncmd: [sleep 1\n  cpus: 0.1\n"

FILE_COMMANDS = {  # name -> argv with FILE where the spec goes
    "app deploy": ["app", "deploy", "FILE"],
    "app deploy --dry-run": ["app", "deploy", "FILE", "--dry-run"],
    "job run": ["job", "run", "FILE"],
    "job run --wait": ["job", "run", "FILE", "--wait"],
    "job create": ["job", "create", "FILE"],
    "job update": ["job", "update", "FILE"],
    "secret put --from-file": ["secret", "put", "db/password", "--from-file", "FILE"],
}
REST_COMMANDS = [  # every command that calls the scheduler (files are good ones)
    ["app", "deploy", "APP"], ["app", "deploy", "APP", "--dry-run"], ["app", "list"], ["app", "show", "/a"],
    ["app", "scale", "/a", "2"], ["app", "restart", "/a"], ["app", "rollback", "/a"], ["app", "delete", "/a"],
    ["app", "deployment", "list"], ["app", "deployment", "cancel", "d1"],
    ["task", "list"], ["task", "kill", "t1"], ["task", "logs", "t1"],
    ["job", "run", "JOB"], ["job", "create", "JOB"], ["job", "update", "JOB"], ["job", "list"],
    ["job", "show", "j"], ["job", "history", "j"], ["job", "runs", "j"], ["job", "stop", "j", "r"],
    ["job", "delete", "j"], ["job", "logs", "r"],
    ["secret", "put", "db/password", "--from-file", "VALUE"], ["secret", "ls"], ["secret", "rm", "db/password"],
    ["secret", "rotate-key"],
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {"APP": tmp_path / "app.json", "JOB": tmp_path / "job.yaml", "VALUE": tmp_path / "value",
            "bad.json": tmp_path / "bad.json", "bad.yaml": tmp_path / "bad.yaml", "config": tmp_path / "client.json"}
    made["APP"].write_text(json.dumps(GOOD_APP))
    made["JOB"].write_text(json.dumps(GOOD_JOB))
    made["VALUE"].write_text("s3cret")
    made["bad.json"].write_text(BAD_JSON)
    made["bad.yaml"].write_text(BAD_YAML)
    made["config"].write_text("{}")
    return made


def invoke(args: list[str], files: dict[str, Path], url: str) -> tuple[int, str]:
    """Run the command in-process; an exception that escaped it fails the test with its traceback."""
    argv = [str(files[a]) if a in files else a for a in args] + ["--url", url, "--config", str(files["config"])]
    result = CliRunner().invoke(cli, argv, env={"DOCKYARD_URL": None, "DOCKYARD_CONFIG": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        pytest.fail(f"dockyard {' '.join(args)}: a traceback reaches the user:\n"
                    + "".join(traceback.format_exception(result.exception)))
    return result.exit_code, result.stderr


def error_lines(code: int, stderr: str, command: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1, f"{command}: exit {code}: {stderr}"
    assert 1 <= len(lines) <= 2, f"{command}: not one or two lines:\n{stderr}"
    assert "Traceback" not in stderr
    return lines


@pytest.mark.parametrize("name", FILE_COMMANDS)
def test_each_command_taking_a_file_says_what_is_wrong_with_it(name: str, files: dict[str, Path]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # the file is read before anything is sent
    argv = FILE_COMMANDS[name]
    put = name.startswith("secret")

    missing = files["APP"].with_name("app.jsn")
    code, err = invoke([str(missing) if a == "FILE" else a for a in argv], files, closed)
    lines = error_lines(code, err, f"{name} with a missing file")
    assert "no such file" in lines[0] and str(missing) in lines[0]
    if not put:  # a near miss in the same directory is named
        assert f"did you mean {files['APP']}" in lines[0], lines

    code, err = invoke([str(files["APP"].parent) if a == "FILE" else a for a in argv], files, closed)
    assert "is a directory" in error_lines(code, err, f"{name} with a directory")[0]
    if put:  # a value is any bytes: no syntax to get wrong
        return

    code, err = invoke([str(files["bad.json"]) if a == "FILE" else a for a in argv], files, closed)
    lines = error_lines(code, err, f"{name} with bad JSON")
    assert "not valid JSON" in lines[0] and "line 3" in lines[0], lines

    code, err = invoke([str(files["bad.yaml"]) if a == "FILE" else a for a in argv], files, closed)
    lines = error_lines(code, err, f"{name} with bad YAML")
    assert "not valid YAML" in lines[0] and "line" in lines[0], lines

    files["bad.yaml"].write_text("- just\n- a list\n")
    code, err = invoke([str(files["bad.yaml"]) if a == "FILE" else a for a in argv], files, closed)
    assert "not a list" in error_lines(code, err, f"{name} with a list")[0]


@pytest.fixture
def not_a_scheduler() -> Iterator[str]:
    """An HTTP server that is no scheduler: an HTML page for every request."""
    class Page(http.server.BaseHTTPRequestHandler):
        def _page(self) -> None:
            body = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _page  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("args", REST_COMMANDS, ids=" ".join)
def test_each_command_says_when_the_scheduler_cannot_be_reached(args: list[str], files: dict[str, Path],
                                                                not_a_scheduler: str) -> None:
    command = " ".join(args)
    code, err = invoke(args, files, f"http://127.0.0.1:{free_port()}")
    lines = error_lines(code, err, f"{command} with nothing listening")
    assert "cannot reach the scheduler at http://127.0.0.1:" in lines[0] and "--url" in lines[0], lines

    code, err = invoke(args, files, "http://[::1")
    assert "cannot reach the scheduler" in error_lines(code, err, f"{command} with a malformed URL")[0]

    code, err = invoke(args, files, not_a_scheduler)
    lines = error_lines(code, err, f"{command} against a web server that is no scheduler")
    assert "other than JSON" in lines[0] or "Welcome to nginx" in lines[0], lines


def test_the_users_mistakes_end_in_one_line_from_the_real_command(tmp_path: Path) -> None:
    """A mistyped path to `app deploy` and `job run` once printed a 25-line traceback."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_URL", "DOCKYARD_CONFIG")}
    (tmp_path / "web-service.json").write_text(json.dumps(GOOD_APP))
    for argv in (["app", "deploy", "web-servce.json"], ["job", "run", "hello-job.json", "--wait"]):
        done = subprocess.run(dockyard(*argv), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
        lines = error_lines(done.returncode, done.stderr, " ".join(argv))
        assert lines[0].startswith(f"Error: {argv[2]}: no such file"), lines
    done = subprocess.run(dockyard("app", "list", "--url", f"http://127.0.0.1:{free_port()}"), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=30)
    lines = error_lines(done.returncode, done.stderr, "app list with nothing listening")
    assert "`dockyard up` starts one" in lines[0], lines
