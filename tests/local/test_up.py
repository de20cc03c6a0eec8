"""`dockyard up` and `dockyard status` as a user runs them: real processes throughout."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.support.framework import RawFramework, command_task
from tests.support.procs import Process, dockyard, free_port, port_open, wait_for, worker_ports
from tests.support.security import Endpoint


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports (agents take port, port+1, ...)."""
    for _ in range(50):
        base = free_port()
        if base + count >= 65000:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no consecutive free ports")


def processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "--port" in argv[:-1]:
                found.append((int(entry.name), argv))
    return found


def master_of(work: Path) -> Endpoint:
    """The master `dockyard up` (secured by default) says is there, as the user its client.json names."""
    return Endpoint.from_client_file(work / "client.json", "master")


def registered(work: Path, count: int) -> dict | None:
    """The master's state once `count` agents registered (None before, also while up is starting)."""
    if not (work / "client.json").exists():
        return None
    state = master_of(work).get_json("/master/state")
    return state if len(state["slaves"]) == count else None


def test_up_runs_a_cluster_reports_deaths_and_stops_everything(tmp_path: Path) -> None:
    master_port = free_port()
    agent_port = consecutive_free_ports(2)
    up = Process(dockyard("up", "--agents", "2", "--no-scheduler", "--work-dir", str(tmp_path / "up"),
                          "--master-port", str(master_port), "--agent-port", str(agent_port),
                          "--resources", worker_ports("cpus:2;mem:2048;disk:1000;ports:[31000-31100]")),
                 tmp_path / "up.log", env={"COLUMNS": "200"})
    master = f"127.0.0.1:{master_port}"
    work = tmp_path / "up"
    try:
        state = wait_for(lambda: registered(work, 2), 30, what="two agents registered")
        # each agent on an address of its own, which is its hostname: $HOST and Marathon's `host`
        # reach its tasks with no DNS, and hostname:UNIQUE tells the two apart
        hosts = {agent["hostname"]: agent for agent in state["slaves"]}  # type: ignore[index]
        assert set(hosts) == {"127.0.2.1", "127.0.2.2"}
        assert hosts["127.0.2.1"]["attributes"] == {"agent": "agent1"}
        assert hosts["127.0.2.2"]["port"] == agent_port + 1
        assert all(socket.gethostbyname(host) == host for host in hosts)
        wait_for(lambda: "cluster up" in up.output(), 10, what="the table of listeners")
        table = up.output()
        assert f"http://127.0.0.1:{master_port}" in table and f"http://127.0.2.2:{agent_port + 1}" in table

        assert master_of(work).identity is not None  # secured by default
        client = RawFramework(master_of(work), name="status-check").start()
        try:
            client.launch(client.offer(), [command_task("sleep 30", task_id="visible", cpus=0.5, mem=64)])
            client.wait_state("visible", "TASK_RUNNING")
            config = ["--config", str(work / "client.json")]
            result = subprocess.run(dockyard("status", "--master", master, *config, "--json"), capture_output=True,
                                    text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
            assert result.returncode == 0, result.stderr
            summary = json.loads(result.stdout)
            assert {a["hostname"] for a in summary["agents"]} == {"127.0.2.1", "127.0.2.2"}
            busy = [a for a in summary["agents"] if a["used"]["cpus"] > 0]
            assert len(busy) == 1 and busy[0]["free"]["cpus"] < 2
            assert any(f["name"] == "status-check" and f["tasks"] == 1 for f in summary["frameworks"])
            assert [t["state"] for t in summary["tasks"] if t["id"] == "visible"] == ["TASK_RUNNING"]
            tables = subprocess.run(dockyard("status", "--master", master, *config), capture_output=True, text=True,
                                    timeout=30, env={**os.environ, "COLUMNS": "80"})
            assert tables.returncode == 0 and "visible" in tables.stdout and "127.0.2.2" in tables.stdout
            for agent in summary["agents"]:  # whole, on the agent's own line: ready to copy
                assert any(agent["hostname"] in line and agent["id"] in line for line in tables.stdout.splitlines())
        finally:
            client.stop()

        # A child that dies is reported, not restarted.
        victim = next(pid for pid, argv in processes()
                      if "agent" in argv and argv[argv.index("--port") + 1] == str(agent_port + 1))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "agent2 killed by SIGKILL" in up.output(), 10, what="the death to be reported")
    finally:
        code = up.stop(timeout=20)
    assert code == 0, up.output()[-2000:]
    assert "stopping the cluster" in up.output()
    for port, host in ((master_port, "127.0.0.1"), (agent_port, "127.0.2.1")):
        assert not port_open(port, host), f"port {port} still served after `dockyard up` stopped"


def test_status_without_a_master_says_so() -> None:
    port = free_port()
    result = subprocess.run(dockyard("status", "--master", f"127.0.0.1:{port}", "--json"), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr


def test_up_stopped_by_sigterm_leaves_no_container_behind(tmp_path: Path) -> None:
    """SIGTERM to `dockyard up` with tasks running, one agent killed beforehand (its
    executors outlive it): no process, cgroup, mount or container record of the cluster is left."""
    from tests.support import leaks
    from tests.faults.harness import our_processes

    master_port = free_port()
    agent_port = consecutive_free_ports(2)
    work = tmp_path / "up"
    up = Process(dockyard("up", "--agents", "2", "--no-scheduler", "--work-dir", str(work),
                          "--master-port", str(master_port), "--agent-port", str(agent_port),
                          "--resources", worker_ports("cpus:2;mem:2048;disk:1000;ports:[31000-31100]")),
                 tmp_path / "up.log")
    client = None
    try:
        wait_for(lambda: registered(work, 2), 30, what="two agents registered")
        client = RawFramework(master_of(work), name="left-running", checkpoint=True).start()
        for agent, host in (("agent1", "127.0.2.1"), ("agent2", "127.0.2.2")):
            client.launch(client.offer(host), [command_task("sleep 600", task_id=f"on-{agent}")])
            client.wait_state(f"on-{agent}", "TASK_RUNNING")
        assert any(i.startswith("cgroup ") for i in leaks.leftovers([work / "agent1", work / "agent2"])) \
            or os.geteuid() != 0
        victim = next(pid for pid, argv in processes()
                      if "agent" in argv and argv[argv.index("--port") + 1] == str(agent_port + 1))
        os.kill(victim, signal.SIGKILL)  # agent2 dies; its executor and task run on
        wait_for(lambda: "agent2 killed by SIGKILL" in up.output(), 10, what="the death to be reported")
        assert any(env.get("MESOS_EXECUTOR_ID") == "on-agent2" for _, env in our_processes(work))
    finally:
        code = up.stop(timeout=30)  # with the framework still connected and its tasks running
        if client is not None:
            client.stop(teardown=False)
    assert code == 0, up.output()[-2000:]
    assert leaks.leftovers(leaks.work_dirs_under(work)) == []
    assert list(our_processes(work)) == []
