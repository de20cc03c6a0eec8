"""`dockyard agent`'s security flags: what it refuses to start with, in one line, exit status 2.

Every case is a real `dockyard agent` process that must exit before it binds
(no master is needed: the flags are read first). The agent before these flags
existed failed all of them with click's "no such option".
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from framework.security.bundle import Bundle
from tests.support.procs import REPO, dockyard, free_port, http_ok, wait_for
from tests.support.procs import Process


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(tmp_path_factory.mktemp("security") / "security").ensure(agents=["agent0"])


def start_agent(tmp_path: Path, *flags: str, ip: str = "127.0.0.1") -> subprocess.CompletedProcess:
    argv = dockyard("agent", "--master", "127.0.0.1:1", "--ip", ip, "--port", str(free_port()),
                    "--work-dir", str(tmp_path / "work"), "--resources", "cpus:1;mem:128;disk:100", *flags)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def refused(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.startswith("dockyard agent:")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_executor_authentication_needs_a_key(tmp_path: Path) -> None:
    refused(start_agent(tmp_path, "--authenticate-http-executors"),
            "--executor-secret-key", "--jwt-secret-key", "--authenticate-http-executors")


def test_authenticated_realms_need_credentials(tmp_path: Path) -> None:
    refused(start_agent(tmp_path, "--authenticate-http-readonly"), "mesos-agent-readonly", "--http-credentials")
    refused(start_agent(tmp_path, "--authenticate-http-readwrite"), "mesos-agent-readwrite")


@pytest.mark.parametrize("flag, content, words", [
    ("--http-credentials", "{not json", ["not JSON", "--http-credentials"]),
    ("--http-credentials", json.dumps({"credentials": [{"principal": "a"}]}), ["'secret'", "--http-credentials"]),
    ("--credential", json.dumps({"principal": "agent"}), ["'secret'", "--credential"]),
    ("--acls", json.dumps({"access_sandbox": []}), ["unknown ACL action", "--acls"]),
    ("--executor-secret-key", "short", ["at least 32", "--executor-secret-key"]),
    ("--jwt-secret-key", "short", ["at least 32"]),
    ("--tls-cert", "not a certificate", ["--tls-cert and --tls-key go together"]),
])
def test_bad_files_are_one_clear_line(tmp_path: Path, flag: str, content: str, words: list[str]) -> None:
    path = tmp_path / "file"
    path.write_text(content)
    refused(start_agent(tmp_path, flag, str(path)), *words)


def test_missing_files_and_unusable_certificates(tmp_path: Path, bundle: Bundle) -> None:
    refused(start_agent(tmp_path, "--credential", str(tmp_path / "absent.json")), "cannot read", "--credential")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    refused(start_agent(tmp_path, "--tls-cert", str(garbage), "--tls-key", str(garbage)), "certificate")
    refused(start_agent(tmp_path, "--tls-require-client-cert"), "--tls-cert")


def test_an_open_agent_off_loopback_is_refused_naming_the_flags(tmp_path: Path, bundle: Bundle) -> None:
    done = start_agent(tmp_path, ip="0.0.0.0")
    refused(done, "0.0.0.0", "--authenticate-http-executors", "--tls-cert", "--insecure")
    # Authenticated but without TLS: still refused, for TLS alone.
    secured = ["--http-credentials", str(bundle.credentials_file), "--authenticate-http-readonly",
               "--authenticate-http-readwrite", "--authenticate-http-executors",
               "--executor-secret-key", str(bundle.executor_key_file)]
    done = start_agent(tmp_path, *secured, ip="0.0.0.0")
    refused(done, "TLS")
    assert "authentication (" not in done.stderr


def test_insecure_serves_anyway_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    argv = dockyard("agent", "--master", "127.0.0.1:1", "--ip", "0.0.0.0", "--port", str(port),
                    "--work-dir", str(tmp_path / "work"), "--resources", "cpus:1;mem:128;disk:100", "--insecure",
                    "--no-cleanup")
    agent = Process(argv, tmp_path / "agent.log")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health") or not agent.alive(), 30, what="the agent")
        assert agent.alive(), agent.output()[-2000:]
        assert "--insecure" in agent.output()
    finally:
        agent.stop()
