"""`dockyard up`: a master, N agents and the scheduler on this machine, supervised.

Each component is its own process with its own log file. Nothing is restarted
behind the user's back: when a child dies the supervisor says which, how, and
where its log is, and keeps the others running. Ctrl-C or SIGTERM stops them
all (scheduler, agents, master, in that order).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import click

from framework.local.agent import dockyard_argv, kill_sandbox_processes
from framework.tables import console as make_console
from framework.tables import table as make_table

console = make_console()
STOP_TIMEOUT = 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    url: str  # where it listens
    health: str
    popen: subprocess.Popen | None = None
    reported: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                          start_new_session=True)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health, timeout=1) as response:
                return 200 <= response.status < 300
        except OSError:
            return False


# Below the kernel's ephemeral range (32768+), which clients and free_port() draw from.
PORT_RANGE = (31000, 32767)


def agent_resources(resources: str | None, index: int, agents: int) -> str:
    """Agents on one machine share its ports: give each its own slice unless ports are set.

    Two agents offering the same host ports would hand the same port to two tasks,
    and the second would fail to bind.
    """
    if resources and "ports" in resources:
        return resources
    first, last = PORT_RANGE
    size = (last - first + 1) // max(agents, 1)
    begin = first + (index - 1) * size
    ports = f"ports:[{begin}-{begin + size - 1}]"
    return f"{resources};{ports}" if resources else ports


def plan(agents: int, work_dir: Path, ip: str, master_port: int, agent_port: int, scheduler_port: int,
         scheduler: bool, resources: str | None, isolation: str | None = None) -> list[Child]:
    """The children of a cluster, in start order."""
    master = f"{ip}:{master_port}"
    children = [Child("master", dockyard_argv("master", "--ip", ip, "--port", str(master_port),
                                              "--work-dir", str(work_dir / "master")),
                      work_dir / "logs" / "master.log", f"http://{master}", f"http://{master}/health")]
    for index in range(1, agents + 1):
        port = agent_port + index - 1
        argv = dockyard_argv("agent", "--master", master, "--ip", ip, "--port", str(port),
                             "--work-dir", str(work_dir / f"agent{index}"), "--hostname", f"agent{index}",
                             "--attributes", f"agent:agent{index}")
        argv += ["--resources", agent_resources(resources, index, agents)]
        argv += ["--isolation", isolation] if isolation else []
        children.append(Child(f"agent{index}", argv, work_dir / "logs" / f"agent{index}.log",
                              f"http://{ip}:{port}", f"http://{ip}:{port}/health"))
    if scheduler:
        children.append(Child("scheduler", dockyard_argv("scheduler", "--master", master, "--ip", ip,
                                                         "--port", str(scheduler_port),
                                                         "--data-dir", str(work_dir / "scheduler")),
                              work_dir / "logs" / "scheduler.log", f"http://{ip}:{scheduler_port}",
                              f"http://{ip}:{scheduler_port}/health"))
    return children


def wait_healthy(child: Child, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            return False
        if child.healthy():
            return True
        time.sleep(0.1)
    return False


def stop_all(children: list[Child]) -> None:
    """SIGTERM every child (last started first), then SIGKILL what outlives the timeout."""
    for child in reversed(children):
        if child.alive():
            assert child.popen is not None
            try:
                os.killpg(child.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in reversed(children):
        if child.popen is None:
            continue
        try:
            child.popen.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            console.print(f"[yellow]{child.name} did not stop within {STOP_TIMEOUT:.0f}s: killing it[/]")
            try:
                os.killpg(child.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.popen.wait(5)


def clean_after_agents(children: list[Child]) -> None:
    """`dockyard executor --cleanup` for each agent that did not stop cleanly.

    An agent stopped by SIGTERM destroys its containers itself; one that was
    killed (or crashed) leaves its executors running and its tasks' containers,
    mounts and cgroups to its next start. The cluster is going away: its
    executors are killed and that clean-up runs now.
    """
    for child in children:
        if not child.name.startswith("agent") or child.popen is None or child.popen.returncode == 0:
            continue
        work_dir = child.argv[child.argv.index("--work-dir") + 1]
        kill_sandbox_processes(Path(work_dir))  # its executors (and host tasks) outlived it
        try:
            subprocess.run(dockyard_argv("executor", "--cleanup", work_dir), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            console.print(f"[yellow]clean-up after {child.name} failed: {error}[/]")


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def print_table(children: list[Child]) -> None:
    table = make_table("component", "listens on", "pid", "log", title="dockyard cluster")
    for child in children:
        table.add_row(child.name, child.url, str(child.popen.pid if child.popen else "-"), str(child.log))
    console.print(table)


class Stop(Exception):
    """SIGTERM arrived."""


def run(children: list[Child]) -> int:
    def on_term(_signum: int, _frame: object) -> None:
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    started: list[Child] = []
    try:
        for child in children:
            child.start()
            started.append(child)
            if child.name == "master" and not wait_healthy(child):
                console.print(f"[red]the master did not come up; see {child.log}[/]")
                return 1
        for child in started[1:]:
            if not wait_healthy(child):
                console.print(f"[yellow]{child.name} is not healthy yet; see {child.log}[/]")
        print_table(started)
        console.print("cluster up; Ctrl-C stops it", highlight=False)
        sys.stdout.flush()
        while True:
            for child in started:
                if not child.reported and not child.alive():
                    child.reported = True
                    assert child.popen is not None
                    console.print(f"[red]{child.name} {describe_exit(child.popen.returncode)}; "
                                  f"it is not restarted (log: {child.log})[/]")
                    sys.stdout.flush()
            if all(child.reported for child in started):
                console.print("[red]every component has exited[/]")
                return 1
            time.sleep(0.5)
    except (KeyboardInterrupt, Stop):
        console.print("stopping the cluster")
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop_all(started)
        clean_after_agents(started)


@click.command("up")
@click.option("--agents", default=2, show_default=True, type=int)
@click.option("--work-dir", default=".dockyard", show_default=True, type=click.Path(path_type=Path))
@click.option("--ip", default="127.0.0.1", show_default=True)
@click.option("--master-port", default=5050, show_default=True, type=int)
@click.option("--agent-port", default=5051, show_default=True, type=int, help="port of agent1; agent2 gets +1 ...")
@click.option("--scheduler-port", default=8080, show_default=True, type=int)
@click.option("--no-scheduler", is_flag=True, help="start the master and agents only")
@click.option("--resources", default=None, help="every agent's --resources (detected when omitted)")
@click.option("--isolation", default=None, help="every agent's --isolation (see `dockyard agent --help`)")
def up_command(agents: int, work_dir: Path, ip: str, master_port: int, agent_port: int, scheduler_port: int,
               no_scheduler: bool, resources: str | None, isolation: str | None) -> None:
    """Run a master, N agents and the scheduler on this machine until Ctrl-C."""
    work_dir = work_dir.resolve()
    scheduler = not no_scheduler
    if scheduler and importlib.util.find_spec("scheduler.cli") is None:
        console.print("[yellow]scheduler/cli.py is not there yet: starting without the scheduler[/]")
        scheduler = False
    children = plan(agents, work_dir, ip, master_port, agent_port, scheduler_port, scheduler, resources, isolation)
    sys.exit(run(children))
