"""`dockyard app ...` and `dockyard task ...` against a real scheduler."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.procs import REPO, wait_for


def cli(marathon, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO / "dockyard.py"), *args, "--config", str(marathon.client_file)],
                          capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def test_deploy_list_logs_and_dry_run(marathon, tmp_path: Path) -> None:
    spec = tmp_path / "hello.yaml"
    spec.write_text("id: /cli/hello\ncmd: echo hello-from-$PORT0; sleep 600\ncpus: 0.1\nmem: 32\ninstances: 2\n")
    done = cli(marathon, "app", "deploy", str(spec))
    assert "/cli/hello: 2/2 running - deployed" in done.stderr
    apps = json.loads(cli(marathon, "app", "list", "--json").stdout)
    assert [a["tasksRunning"] for a in apps if a["id"] == "/cli/hello"] == [2]
    tasks = json.loads(cli(marathon, "task", "list", "/cli/hello", "--json").stdout)
    task = tasks[0]
    listed = cli(marathon, "task", "list", "/cli/hello").stdout.splitlines()
    assert listed[0].split() == ["ID", "APP", "STATE", "HEALTH", "HOST", "PORTS", "STARTED"]
    assert sorted(line.split()[0] for line in listed[1:]) == sorted(t["id"] for t in tasks)  # whole IDs
    wait_for(lambda: f"hello-from-{task['ports'][0]}" in cli(marathon, "task", "logs", task["id"]).stdout,
             timeout=15, what="the task's stdout")
    assert "2/2 running" in cli(marathon, "app", "show", "/cli/hello").stdout

    big = tmp_path / "big.json"
    big.write_text(json.dumps({"id": "/cli/big", "cmd": "sleep 1", "cpus": 0.1, "mem": 64, "instances": 4,
                               "constraints": [["hostname", "UNIQUE"]]}))
    plan = json.loads(cli(marathon, "app", "deploy", str(big), "--dry-run", "--json").stdout)
    assert len(plan["assignments"]) == 3 and plan["unplaced"] == 1
    assert plan["reports"]["app:/cli/big"]["filteredBy"] == {"hostname:UNIQUE": 3}
    text = cli(marathon, "app", "deploy", str(big), "--dry-run").stdout
    assert "1 not placed" in text and "hostname:UNIQUE" in text
    assert cli(marathon, "app", "show", "/cli/big", check=False).returncode != 0  # nothing launched

    cli(marathon, "app", "scale", "/cli/hello", "1")
    wait_for(lambda: marathon.app("/cli/hello")["tasksRunning"] == 1 and not marathon.app("/cli/hello")["deployments"],
             timeout=20, what="scaled to 1")
    cli(marathon, "app", "rollback", "/cli/hello")
    wait_for(lambda: marathon.app("/cli/hello")["tasksRunning"] == 2, timeout=20, what="rolled back to 2")
    cli(marathon, "app", "delete", "/cli/hello", "--force")
