"""The CLI as a user of a secured cluster: where its settings come from, what a refusal says,
task output read from an agent that asks for credentials, and `dockyard status` over TLS.

Settings are found in this order: `--config FILE`, `$DOCKYARD_CONFIG`,
`./.dockyard/client.json` (framework/security/client.py). Every command runs as a
real `dockyard` process in its own working directory.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from framework.security import client as client_settings
from framework.security.bundle import Bundle, Identity
from tests.support.cluster import Cluster
from tests.support.procs import dockyard
from tests.support.scheduler import SchedulerProcess

JOB = {"id": "hello", "run": {"cmd": "echo hello-from-a-secured-agent", "cpus": 0.1, "mem": 32}}
OUTSIDER = Identity("ops", "not-known-to-the-agents")  # the scheduler knows it; the agents do not


def run(cwd: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 90) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_CONFIG", "DOCKYARD_URL")}
    return subprocess.run(dockyard(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})})


def settings(path: Path, identity: Identity | None, **fields: str) -> Path:
    document = dict(fields)
    if identity is not None:
        document.update(principal=identity.principal, secret=identity.secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    client_settings.write(path, document)
    return path


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bundle, SchedulerProcess]]:
    """A secured cluster (its bundle's flags) and scheduler: the agent asks for credentials on
    `/state` and `/files`, the scheduler's API for users (plus `ops`, an admin the agents do not know)."""
    workdir = Path(tmp_path_factory.mktemp("cli-secured"))
    with Cluster(workdir / "cluster", agents=1).start() as cluster:
        assert cluster.bundle is not None
        with SchedulerProcess.start(cluster, workdir / "scheduler",
                                    "--http-credentials", f"{OUTSIDER.principal}:{OUTSIDER.secret}") as scheduler:
            yield cluster.bundle, scheduler


def test_settings_are_found_in_order_and_refusals_are_one_line(secured, tmp_path: Path) -> None:  # noqa: ANN001
    bundle, scheduler = secured
    url = scheduler.url
    viewer = settings(tmp_path / "viewer.json", bundle.viewer, url=url)
    operator = settings(tmp_path / "operator.json", bundle.operator, url=url)
    empty = tmp_path / "nowhere"
    empty.mkdir()

    line = one_error_line(run(empty, "job", "list", "--url", url))
    assert line == (f"Error: the scheduler at {url} answered 401 Unauthorized to no credentials (no client "
                    f"settings found: --config FILE, $DOCKYARD_CONFIG or ./.dockyard/client.json): "
                    f"Unauthorized: no credentials"), line

    assert json.loads(run(empty, "job", "list", "--json", "--config", str(viewer)).stdout) == []
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(JOB))
    line = one_error_line(run(empty, "job", "run", str(spec), env={"DOCKYARD_CONFIG": str(viewer)}))
    assert f"answered 403 Forbidden to principal 'viewer' (credentials from {viewer})" in line
    assert "Not Authorized to perform this action!" in line

    # --config wins over the environment; ./.dockyard/client.json is the last resort.
    done = run(empty, "job", "run", str(spec), "--json", "--config", str(operator),
               env={"DOCKYARD_CONFIG": str(viewer)})
    assert done.returncode == 0, done.stderr
    local = tmp_path / "project"
    settings(local / ".dockyard" / "client.json", bundle.operator, url=url)
    listed = run(local, "app", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    assert run(local, "task", "list", "--json", env={"DOCKYARD_CONFIG": str(viewer)}).returncode == 0
    # --url still chooses the scheduler over the file's url.
    line = one_error_line(run(local, "job", "list", "--url", "http://127.0.0.1:9"))
    assert line.startswith("Error: cannot reach the scheduler at http://127.0.0.1:9"), line

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    line = one_error_line(run(empty, "job", "list", "--config", str(broken)))
    assert f"the client settings {broken} are not JSON" in line


def test_task_output_is_read_from_a_secured_agent(secured, tmp_path: Path) -> None:  # noqa: ANN001
    """The scheduler finds the sandbox (it reads the agent's /state as `dockyard`); the CLI reads
    the output with the user's credentials, and says so in one line when the agent refuses them."""
    bundle, scheduler = secured
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({**JOB, "id": "echo-secured"}))
    operator = settings(tmp_path / "operator.json", bundle.operator, url=scheduler.url)
    done = run(tmp_path, "job", "run", str(spec), "--wait", "--config", str(operator))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "hello-from-a-secured-agent" in done.stdout, (done.stdout, done.stderr[-2000:])

    runs = json.loads(run(tmp_path, "job", "runs", "echo-secured", "--json", "--config", str(operator)).stdout)
    run_id = runs[0]["id"]
    assert runs[0]["tasks"][0]["sandbox"], runs  # found by the scheduler on a secured agent
    viewer = settings(tmp_path / "viewer.json", bundle.viewer, url=scheduler.url)
    logs = run(tmp_path, "job", "logs", run_id, "--config", str(viewer))
    assert logs.returncode == 0 and "hello-from-a-secured-agent" in logs.stdout, logs.stderr

    outsider = settings(tmp_path / "outsider.json", OUTSIDER, url=scheduler.url)
    refused = run(tmp_path, "job", "logs", run_id, "--config", str(outsider))
    assert "hello-from-a-secured-agent" not in refused.stdout and "Traceback" not in refused.stderr
    assert (f"cannot read stdout: the agent at {runs[0]['tasks'][0]['agentUrl']} answered 401 Unauthorized "
            f"to principal 'ops' (credentials from {outsider})") in refused.stderr, refused.stderr


def test_status_reads_a_secured_master_over_tls(tmp_path: Path) -> None:
    with Cluster(tmp_path / "cluster", agents=0, mutual_tls=True).start() as cluster:
        bundle = cluster.bundle
        assert bundle is not None and cluster.cert is not None
        cert, key = (str(path) for path in cluster.cert)
        url = cluster.master_url
        config = settings(tmp_path / "client.json", bundle.viewer, master=url, ca=str(bundle.ca_cert),
                          cert=cert, key=key)
        done = run(tmp_path, "status", "--json", "--config", str(config))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["agents"] == []
        # --master over the file's master, with the file's credentials and CA.
        done = run(tmp_path, "status", "--json", "--master", url, env={"DOCKYARD_CONFIG": str(config)})
        assert done.returncode == 0, done.stderr

        anonymous = settings(tmp_path / "anonymous.json", None, master=url, ca=str(bundle.ca_cert),
                             cert=cert, key=key)
        line = one_error_line(run(tmp_path, "status", "--config", str(anonymous)))
        assert line.startswith(f"Error: the master at {url} answered 401 Unauthorized to no credentials "
                               f"(credentials from {anonymous})"), line
        untrusting = settings(tmp_path / "untrusting.json", bundle.viewer, master=url)
        line = one_error_line(run(tmp_path, "status", "--config", str(untrusting)))
        assert "CERTIFICATE_VERIFY_FAILED" in line, line
