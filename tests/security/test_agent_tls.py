"""The agent on TLS, and the agent's credential with the master, with real processes.

A secured test cluster on TLS (agents authenticated, every agent realm on), a
framework over https: tasks run, which means the agent verified the master with
its CA and sent its credential on the registration stream and every call, and
each executor spoke https to the agent with its token. Plaintext and unknown
CAs are refused at the handshake. An agent whose credential the master refuses
says so in its log (who it was, what the master said) and keeps trying, slowly.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle
from framework.security.tls import Tls
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import dockyard, wait_for
from tests.support.security import call

from .agent_support import executor_info, raw_request, task_for

RESOURCES = "cpus:4;mem:4096;disk:10000;ports:[31000-31099]"


@pytest.fixture(scope="module", params=["tls", "mutual"])
def tls_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A secured cluster on TLS (the agent, with `mutual`, asks its callers for a certificate:
    the test clients present the cluster's)."""
    with Cluster(Path(tmp_path_factory.mktemp(f"tls-{request.param}")), agents=1, resources=RESOURCES,
                 tls=True, mutual_tls=request.param == "mutual").start() as running:
        yield running


def test_tasks_run_over_tls_with_every_realm_on(tls_cluster: Cluster) -> None:
    assert tls_cluster.master_url.startswith("https://")
    framework = RawFramework(tls_cluster.master_api()).start()
    try:
        warm = executor_info("tls-warm", argv=dockyard("executor"), env={"DOCKYARD_EXECUTOR_IDLE_TIMEOUT": "5"})
        framework.launch(framework.offer(), [command_task("echo over tls", task_id="tls-command"),
                                             task_for(warm, "tls-warm-1", "echo warm")])
        assert framework.wait_terminal("tls-command", timeout=30)["state"] == "TASK_FINISHED"
        assert framework.wait_terminal("tls-warm-1", timeout=30)["state"] == "TASK_FINISHED"
        assert tls_cluster.agent_api(0).get_json("/state")["id"]
        executor = tls_cluster.executor("tls-warm")
        assert "refused" not in (Path(executor["directory"]) / "stderr").read_text()
    finally:
        framework.stop()


def test_plaintext_and_unknown_cas_are_refused_at_the_handshake(tls_cluster: Cluster, tmp_path: Path) -> None:
    address = tls_cluster.agent_address(0)
    answer = raw_request(address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not answer.startswith(b"HTTP/"), answer[:100]
    stranger = Bundle(tmp_path / "stranger")
    stranger.certificate("cluster", ["127.0.0.1"])  # another CA altogether
    with pytest.raises(OSError):
        call("GET", f"https://{address}/health", context=Tls.client(ca=str(stranger.ca_cert)).client_context())
    assert tls_cluster.agent_api(0).ok()  # and it keeps serving


# -- the agent's credential -------------------------------------------------------------------

def unregistered(workdir: Path, *agent_args: str) -> Cluster:
    """A TLS master that authenticates agents (the bundle's credentials) and one TLS agent whose flags
    are only `agent_args` (`secure=False`: its credential, or the lack of one, is the subject)."""
    bundle = Bundle(workdir / "security").ensure(agents=["agent0"])
    return Cluster(workdir, agents=1, resources=RESOURCES, secure=False, tls=True, bundle=bundle,
                   master_args=["--credentials", str(bundle.credentials_file), "--authenticate-agents"],
                   agent_args=list(agent_args))


def registered(cluster: Cluster) -> bool:
    return any(s.get("hostname") == "agent0" for s in cluster.active_agents())


def test_a_refused_credential_is_logged_and_retried_slowly(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"principal": "agent-agent0", "secret": "not-the-secret"}))
    with unregistered(tmp_path / "c", "--credential", str(wrong), "--log-level", "debug") as cluster:
        cluster.start_master()
        agent = cluster.start_agent(0, wait=False)
        refusal = "refused REGISTER from this agent (principal 'agent-agent0') with 401: 401 Unauthorized."
        wait_for(lambda: refusal in agent.output(), 20, what="the refusal in the agent's log")
        threading.Event().wait(5.0)
        assert agent.alive() and not registered(cluster)
        lines = [line for line in agent.output().splitlines() if "refused REGISTER" in line]
        assert sum(" WARNING " in line for line in lines) == 1  # said once a minute, not once a try
        assert 3 <= len(lines) <= 9, lines  # backing off (0.1, 0.2, 0.4 ... s), not a tight loop
        assert "not-the-secret" not in agent.output() and "Traceback" not in agent.output()


def test_an_agent_without_a_credential_is_told_to_give_one(tmp_path: Path) -> None:
    with unregistered(tmp_path / "c") as cluster:
        cluster.start_master()
        agent = cluster.start_agent(0, wait=False)
        wait_for(lambda: "(no credential: see --credential) with 401" in agent.output(), 20,
                 what="the refusal in the agent's log")
        assert agent.alive()
