"""The agent on TLS, and the agent's credential with the master, with real processes.

A TLS master that authenticates agents, a TLS agent with every realm on, a
framework over https: tasks run, which means the agent verified the master with
its CA and sent its credential on the registration stream and every call, and
each executor spoke https to the agent with its token. Plaintext and unknown
CAs are refused at the handshake. An agent whose credential the master refuses
says so in its log (who it was, what the master said) and keeps trying, slowly.
"""
from __future__ import annotations

import json
import ssl
import threading
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from framework.mesos import recordio
from framework.security.bundle import Bundle
from framework.security.tls import Tls
from tests.support.framework import RawFramework, command_task
from tests.support.procs import Process, dockyard, free_port, wait_for
from tests.support.security import agent_flags, call, tls_flags

from .agent_support import agent_state, executor_info, raw_request, task_for, wait_executor


class TlsFramework(RawFramework):
    """RawFramework over https, verifying the master with the cluster's CA."""

    def __init__(self, master: str, context: ssl.SSLContext, **kwargs) -> None:  # noqa: ANN003
        super().__init__(master, **kwargs)
        self.context = context
        self.client.close()
        self.client = httpx.Client(timeout=10.0, verify=context)

    def _stream(self) -> None:
        body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": self.info}}
        with httpx.Client(timeout=httpx.Timeout(10.0, read=None), verify=self.context) as client:
            with client.stream("POST", f"https://{self.master}/api/v1/scheduler", content=json.dumps(body),
                               headers={"Content-Type": "application/json", "Accept": "application/json"}) as resp:
                self.stream_id = resp.headers.get("mesos-stream-id")
                decoder = recordio.Decoder()
                for chunk in resp.iter_raw():
                    if self._stop:
                        return
                    for record in decoder.feed(chunk):
                        self._on_event(json.loads(record))

    def call(self, body: dict) -> httpx.Response:
        body = {**body, "framework_id": {"value": self.framework_id}}
        response = self.client.post(f"https://{self.master}/api/v1/scheduler", content=json.dumps(body),
                                    headers={"Content-Type": "application/json",
                                             "Mesos-Stream-Id": self.stream_id or ""})
        assert response.status_code == 202, (body["type"], response.status_code, response.text)
        return response


class TlsCluster:
    """A TLS master (agents authenticated) and one TLS agent, as processes."""

    def __init__(self, workdir: Path, bundle: Bundle, agent_args: list[str], mutual: bool = False) -> None:
        self.workdir = workdir
        self.bundle = bundle
        self.master_port, self.agent_port = free_port(), free_port()
        self.context = Tls.client(ca=str(bundle.ca_cert)).client_context()
        if mutual:  # the agent asks its callers for a certificate: we present the cluster's
            cert, key = bundle.certificate("cluster", ["127.0.0.1", "localhost"])
            self.context = Tls.client(ca=str(bundle.ca_cert), cert=str(cert), key=str(key)).client_context()
        self.master = Process(dockyard("master", "--ip", "127.0.0.1", "--port", str(self.master_port),
                                       "--work-dir", str(workdir / "master"), "--allocation-interval", "0.2",
                                       "--credentials", str(bundle.credentials_file), "--authenticate-agents",
                                       *tls_flags(bundle)), workdir / "master.log")
        self.agent: Process | None = None
        self.agent_args = agent_args

    @property
    def master_address(self) -> str:
        return f"127.0.0.1:{self.master_port}"

    @property
    def agent_address(self) -> str:
        return f"127.0.0.1:{self.agent_port}"

    def healthy(self, address: str) -> bool:
        try:
            return call("GET", f"https://{address}/health", context=self.context, timeout=2)[0] == 200
        except OSError:
            return False

    def start(self, register: bool = True) -> "TlsCluster":
        wait_for(lambda: self.healthy(self.master_address) or not self.master.alive(), 30, what="the master")
        assert self.master.alive(), self.master.output()[-3000:]
        self.agent = Process(dockyard("agent", "--master", self.master_address, "--ip", "127.0.0.1",
                                      "--port", str(self.agent_port), "--work-dir", str(self.workdir / "agent0"),
                                      "--resources", "cpus:4;mem:4096;disk:10000;ports:[31000-31099]",
                                      "--hostname", "agent0", *self.agent_args), self.workdir / "agent0.log")
        wait_for(lambda: self.healthy(self.agent_address) or not self.agent.alive(), 30,  # type: ignore[union-attr]
                 what="the agent")
        assert self.agent.alive(), self.agent.output()[-3000:]
        if register:
            wait_for(lambda: self.registered(), 30, what="the agent registered over TLS")
        return self

    def registered(self) -> bool:
        status, _, body = call("GET", f"https://{self.master_address}/master/state", context=self.context)
        return status == 200 and any(s.get("hostname") == "agent0" and s.get("active", True)
                                     for s in json.loads(body).get("slaves", []))

    def stop(self) -> None:
        for process in (self.agent, self.master):
            if process is not None:
                process.stop()
        from tests.support import leaks

        leaks.clean([self.workdir / "agent0"])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    bundle = Bundle(tmp_path_factory.mktemp("security") / "security").ensure(agents=["agent0"])
    bundle.certificate("cluster", ["127.0.0.1", "localhost"])
    return bundle


@pytest.fixture(scope="module", params=["tls", "mutual"])
def tls_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                bundle: Bundle) -> Iterator[TlsCluster]:
    mutual = request.param == "mutual"
    args = agent_flags(bundle, "agent0") + tls_flags(bundle, mutual=mutual)
    cluster = TlsCluster(Path(tmp_path_factory.mktemp(f"tls-{request.param}")), bundle, args, mutual=mutual)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def test_tasks_run_over_tls_with_every_realm_on(tls_cluster: TlsCluster, bundle: Bundle) -> None:
    framework = TlsFramework(tls_cluster.master_address, tls_cluster.context).start()
    try:
        warm = executor_info("tls-warm", argv=dockyard("executor"), env={"DOCKYARD_EXECUTOR_IDLE_TIMEOUT": "5"})
        framework.launch(framework.offer(), [command_task("echo over tls", task_id="tls-command"),
                                             task_for(warm, "tls-warm-1", "echo warm")])
        assert framework.wait_terminal("tls-command", timeout=30)["state"] == "TASK_FINISHED"
        assert framework.wait_terminal("tls-warm-1", timeout=30)["state"] == "TASK_FINISHED"
        state = agent_state(tls_cluster.agent_address, bundle.operator, "https", tls_cluster.context)
        assert state["id"]
        executor = wait_executor(tls_cluster.agent_address, bundle.operator, "tls-warm",
                                 scheme="https", context=tls_cluster.context)
        assert "refused" not in (Path(executor["directory"]) / "stderr").read_text()
    finally:
        framework.stop()


def test_plaintext_and_unknown_cas_are_refused_at_the_handshake(tls_cluster: TlsCluster, tmp_path: Path) -> None:
    answer = raw_request(tls_cluster.agent_address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not answer.startswith(b"HTTP/"), answer[:100]
    stranger = Bundle(tmp_path / "stranger")
    stranger.certificate("cluster", ["127.0.0.1"])  # another CA altogether
    with pytest.raises(OSError):
        call("GET", f"https://{tls_cluster.agent_address}/health",
             context=Tls.client(ca=str(stranger.ca_cert)).client_context())
    assert tls_cluster.healthy(tls_cluster.agent_address)  # and it keeps serving


# -- the agent's credential -------------------------------------------------------------------

def test_a_refused_credential_is_logged_and_retried_slowly(tmp_path: Path, bundle: Bundle) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"principal": "agent-agent0", "secret": "not-the-secret"}))
    args = ["--credential", str(wrong), "--log-level", "debug", *tls_flags(bundle)]
    cluster = TlsCluster(tmp_path, bundle, args)
    try:
        cluster.start(register=False)
        assert cluster.agent is not None
        refusal = "refused REGISTER from this agent (principal 'agent-agent0') with 401: 401 Unauthorized."
        wait_for(lambda: refusal in cluster.agent.output(), 20, what="the refusal in the agent's log")
        threading.Event().wait(5.0)
        assert cluster.agent.alive() and not cluster.registered()
        lines = [line for line in cluster.agent.output().splitlines() if "refused REGISTER" in line]
        assert sum(" WARNING " in line for line in lines) == 1  # said once a minute, not once a try
        assert 3 <= len(lines) <= 9, lines  # backing off (0.1, 0.2, 0.4 ... s), not a tight loop
        assert "not-the-secret" not in cluster.agent.output() and "Traceback" not in cluster.agent.output()
    finally:
        cluster.stop()


def test_an_agent_without_a_credential_is_told_to_give_one(tmp_path: Path, bundle: Bundle) -> None:
    cluster = TlsCluster(tmp_path, bundle, tls_flags(bundle))
    try:
        cluster.start(register=False)
        assert cluster.agent is not None
        wait_for(lambda: "(no credential: see --credential) with 401" in cluster.agent.output(), 20,
                 what="the refusal in the agent's log")
        assert cluster.agent.alive()
    finally:
        cluster.stop()
