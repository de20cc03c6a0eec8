"""The README's session, run as written against a real `dockyard up`.

The commands are read from the README itself: the `up` line of its session, then
every command between `<!-- session -->` and `<!-- /session -->` (the `$ ` lines of
console blocks, every line of sh blocks), in order, each in bash from a directory
laid out like a checkout (`.venv`, `examples`, and the cluster's `.dockyard`).
Each must exit 0. Only the ports differ from what a reader types: the cluster
listens on free ports and gives its tasks ports from a block no other test
cluster uses (31000-32767 is everyone's default), so `:5050`, `:8080` and the
service's `:31000` are rewritten to the ones this cluster uses. Where the README shows what a command
prints, the lines that do not vary from run to run are checked too.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path

from framework.local.cluster.preflight import is_free
from tests.local.test_up import consecutive_free_ports
from tests.support.procs import REPO, Process, free_port, port_open, wait_for

README = REPO / "README.md"


def task_ports() -> str:
    """A block of 200 ports below the ephemeral range, away from 31000-32767, that binds now."""
    for _ in range(50):
        begin = random.randrange(20000, 30000, 200)
        if all(is_free("127.0.0.1", port) for port in range(begin, begin + 200, 20)):
            return f"ports:[{begin}-{begin + 199}]"
    raise RuntimeError("no free block of task ports")


def up_command(readme: str) -> str:
    """The `up` line the session starts from."""
    section = readme.split("## A session", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the session's first block starts the cluster"
    return block.group(1).strip()


def session(readme: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows for it) between the session markers."""
    text = readme.split("<!-- session -->", 1)[1].split("<!-- /session -->", 1)[0]
    commands: list[tuple[str, list[str]]] = []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        for line in body.splitlines():
            assert not line.rstrip().endswith("\\"), f"continued lines are not run as written: {line}"
            if language == "console" and line.startswith("$ "):
                commands.append((line[2:], []))
            elif language == "console" and commands and line.strip():
                commands[-1][1].append(line)
            elif language == "sh" and line.strip() and not line.startswith("#"):
                commands.append((line, []))
    return commands


def last_line(shown: list[str]) -> re.Pattern | None:
    """What the last output line the README shows must match (`…` stands for anything), unless it
    varies from run to run (times, dates, run ids, digests, the kernel)."""
    if not shown:
        return None
    line = shown[-1].strip()
    if re.search(r"\d{4}-\d\d-\d\d|\d\d:\d\d|\d{8,}|[0-9a-f]{8,}|Linux ", line):
        return None
    return re.compile(".*?".join(re.escape(part) for part in line.split("…")))


def test_the_readme_session_runs_as_written(tmp_path: Path) -> None:
    readme = README.read_text()
    here = tmp_path / "dockyard"  # as the README's paths name the checkout
    here.mkdir()
    for name in (".venv", "examples"):
        (here / name).symlink_to(REPO / name)
    master, scheduler, agent = free_port(), free_port(), consecutive_free_ports(2)
    ports = {"5050": str(master), "8080": str(scheduler)}

    start = up_command(readme)
    assert start == ".venv/bin/dockyard up --agents 2"
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("DOCKYARD_", "PYTEST"))}
    up = Process(["bash", "-c", f"exec {start} --master-port {master} --agent-port {agent} "
                                f"--scheduler-port {scheduler} --resources '{task_ports()}'"],
                 tmp_path / "up.log", env={"COLUMNS": "200"}, cwd=here)
    try:
        wait_for(lambda: "cluster up" in up.output(), timeout=90, what="`dockyard up` to say the cluster is up")
        for name, address in (("master", f"127.0.0.1:{master}"), ("agent1", f"127.0.2.1:{agent}"),
                              ("agent2", f"127.0.2.2:{agent + 1}"), ("scheduler", f"127.0.0.1:{scheduler}")):
            assert address in up.output(), f"up prints where the {name} listens"

        assignments: list[str] = []
        commands = session(readme)
        assert commands[-1][0] == ".venv/bin/dockyard down", "the session ends by stopping the cluster"
        for command, shown in commands:
            for written, real in ports.items():
                command = re.sub(rf"(localhost|127\.0\.[02]\.1):{written}\b", rf"\g<1>:{real}", command)
                shown = [line.replace(f":{written}", f":{real}") for line in shown]
            done = subprocess.run(["bash", "-c", "\n".join([*assignments, command])], cwd=here,
                                  capture_output=True, text=True, timeout=300,
                                  env={**environment, "COLUMNS": "200"})
            said = done.stdout + done.stderr
            assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{said[-3000:]}"
            expected = last_line(shown)
            assert expected is None or expected.search(said), f"`{command}` did not print {shown[-1]!r}:\n{said}"
            if command.startswith("curl") and "$AUTH" in command:
                json.loads(done.stdout)  # an answer, not a refusal page
            if re.fullmatch(r"\w+=.*", command):
                assignments.append(command)
            if command.startswith(".venv/bin/dockyard task list"):
                listed = subprocess.run([str(here / ".venv/bin/dockyard"), "task", "list", "--json"], cwd=here,
                                        capture_output=True, text=True, timeout=60, env=environment)
                on_agent1 = [t for t in json.loads(listed.stdout) if t["host"] == "127.0.2.1"]
                ports["31000"] = str(on_agent1[0]["ports"][0])  # the README's example port, on agent1
            if command.startswith(".venv/bin/dockyard image ls"):
                assert re.search(r"agent1 +docker.io/library/busybox:demo", said), said
                assert re.search(r"agent2 +docker.io/library/busybox:demo", said), said
        assert up.popen.wait(60) == 0, up.output()[-3000:]
        for port, host in ((master, "127.0.0.1"), (agent, "127.0.2.1"), (agent + 1, "127.0.2.2"),
                           (scheduler, "127.0.0.1")):
            assert not port_open(port, host), f"port {port} still served after `dockyard down`"
    finally:
        up.stop(timeout=30)
