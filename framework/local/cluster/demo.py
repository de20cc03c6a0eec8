"""`make demo`: an embedded cluster with a sample service and a sample job, and where to look.

It starts `dockyard up --agents 2`, builds the busybox image `busybox:demo` into
the image store of each of its agents (`dockyard image build --load`, as the
README does), deploys `examples/web-container.json` through the Marathon API and
runs `examples/hello-job.json` through the Metronome API, prints where everything
listens, and keeps the cluster up until Ctrl-C. The image stays in the agents'
stores, so a later `dockyard up` in the same directory runs the container example
as it is, with no image source to configure.

`up` dies with the demo however the demo ends (lifeline.py), and output to a
pipe whose reader is gone (`make demo | tee log`, Ctrl-C) never stops the demo
from stopping the cluster.

It speaks to the scheduler over HTTP only: `framework/` imports nothing from the
scheduler, the demo included. The cluster is secured as `up` secures it; the demo
is a client like any other, with the operator's credentials from `client.json`.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from framework.errors import DockyardError
from framework.local.cluster import lifeline
from framework.local.cluster.up_record import ClusterRecord

REPO = Path(__file__).resolve().parents[3]
output = lifeline.Output()
EXAMPLES = REPO / "examples"


class DemoError(DockyardError, RuntimeError):
    """The demo could not bring something up; the message says what and where to look."""


class Client:
    """The operator's credentials (and CA, with TLS) from the `client.json` that `up` writes."""

    headers: dict[str, str] = {}
    context: ssl.SSLContext | None = None

    @classmethod
    def load(cls, path: Path) -> None:
        settings = json.loads(path.read_text())
        token = base64.b64encode(f"{settings['principal']}:{settings['secret']}".encode()).decode()
        cls.headers = {"Authorization": f"Basic {token}"}
        cls.context = ssl.create_default_context(cafile=settings["ca"]) if settings.get("ca") else None


def call(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **Client.headers})
    with urllib.request.urlopen(request, timeout=timeout, context=Client.context) as response:
        payload = response.read()
    return json.loads(payload) if payload.strip() else None


def wait(what: str, probe, timeout: float, supervisor: subprocess.Popen) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisor.poll() is not None:
            raise DemoError(f"`dockyard up` exited with {supervisor.returncode} while waiting for {what}")
        try:
            value = probe()
            if value:
                return value
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def say(text: str = "") -> None:
    output.write(lambda: print(text))


def step(text: str) -> None:
    say(f"==> {text}")


def run(work_dir: Path, agents: int, master_port: int, agent_port: int, scheduler_port: int,
        hold: bool) -> int:
    scheduler = f"http://127.0.0.1:{scheduler_port}"
    master = f"http://127.0.0.1:{master_port}"
    log_path = work_dir / "up.log"
    work_dir.mkdir(parents=True, exist_ok=True)
    step(f"starting an embedded cluster: 1 master, {agents} agents, the scheduler (log: {log_path})")
    log = open(log_path, "ab")
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("DOCKYARD_WORK_DIR", None)  # the image build below is for this cluster's agents
    supervisor = subprocess.Popen(
        [sys.executable, str(REPO / "dockyard.py"), "up", "--agents", str(agents),
         "--work-dir", str(work_dir), "--master-port", str(master_port),
         "--agent-port", str(agent_port), "--scheduler-port", str(scheduler_port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment,
        preexec_fn=lifeline.die_with_parent(),
    )
    try:
        client_file = work_dir / "client.json"
        wait("the cluster's record", lambda: _recorded_by(work_dir, supervisor.pid) and client_file.exists(),
             60, supervisor)
        Client.load(client_file)
        wait("the master", lambda: call("GET", f"{master}/health") is None or True, 60, supervisor)
        wait(f"{agents} agents to register",
             lambda: len(call("GET", f"{master}/state")["slaves"]) >= agents, 60, supervisor)
        step("building the image busybox:demo from Debian's busybox-static into each agent's store")
        subprocess.run([sys.executable, str(REPO / "dockyard.py"), "image", "build", "--busybox",
                        "--tag", "busybox:demo", "--load"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={**environment, "DOCKYARD_CONFIG": str(client_file)})
        wait("the scheduler", lambda: call("GET", f"{scheduler}/v2/info", timeout=2), 60, supervisor)

        service = json.loads((EXAMPLES / "web-container.json").read_text())
        step(f"deploying the service {service['id']}: {service['instances']} instances of "
             f"{service['container']['docker']['image']} with HTTP health checks")
        call("PUT", f"{scheduler}/v2/apps/{service['id'].lstrip('/')}?force=true", service)
        job = json.loads((EXAMPLES / "hello-job.json").read_text())
        step(f"submitting the job {job['id']} and starting a run")
        call("PUT", f"{scheduler}/v1/jobs/{job['id']}", job)
        run_info = call("POST", f"{scheduler}/v1/jobs/{job['id']}/runs")

        app = wait("the service to be healthy", lambda: _healthy(scheduler, service), 90, supervisor)
        finished = wait("the job run to finish", lambda: _run_done(scheduler, job["id"], run_info["id"]),
                        60, supervisor)
        say()
        say(f"  master      {master}/state          (operator API: POST {master}/api/v1)")
        say(f"  scheduler   {scheduler}/v2/apps     (Marathon API) and {scheduler}/v1/jobs (Metronome API)")
        for task in app["tasks"]:
            addresses = task.get("ipAddresses") or [{"ipAddress": task["host"]}]
            url = f"http://{addresses[0]['ipAddress']}:{task['ports'][0]}/"
            with urllib.request.urlopen(url, timeout=5) as response:
                answer = response.read().decode(errors="replace").strip()
            say(f"  service     {url}   (on {task['host']}) says: {answer}")
        say(f"  job run     {job['id']} {run_info['id']}: {finished['status']}")
        say()
        say(f"  credentials {client_file}: the CLI reads it when run in {work_dir.parent} (else give")
        say(f"              --config {client_file}); curl: -u \"operator:$(cat "
            f"{work_dir / 'security' / 'operator.secret'})\"")
        say("  try:  .venv/bin/dockyard status")
        say("        .venv/bin/dockyard app list")
        say("        .venv/bin/dockyard image ls")
        say(f"        .venv/bin/dockyard job runs {job['id']}")
        say(f"        .venv/bin/dockyard job logs {job['id']} {run_info['id']}")
        say("  stop:  Ctrl-C here, or .venv/bin/dockyard down from another terminal")
        say()
        if not hold:
            return 0
        step("the cluster stays up; press Ctrl-C to stop it")
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGHUP, _interrupt)
        while supervisor.poll() is None and not output.lost:  # nobody reading any more: stop
            time.sleep(0.5)
        return supervisor.returncode or 0
    except KeyboardInterrupt:
        return 0
    except (DemoError, subprocess.CalledProcessError) as error:
        log.flush()
        said = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
        message = f"demo failed: {error}\n{said}\n(see {log_path})"
        output.write(lambda: print(message, file=sys.stderr))
        return 1
    finally:
        step("stopping the cluster")
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGTERM)
            try:
                supervisor.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.pid, signal.SIGKILL)
        log.close()


def _interrupt(signum: int, frame: object) -> None:
    """Treat SIGTERM and SIGHUP like Ctrl-C, so the cluster is stopped the same way."""
    raise KeyboardInterrupt


def _recorded_by(work_dir: Path, pid: int) -> bool:
    """This `up` (not one before it in the same work dir) has written its cluster.json."""
    record = ClusterRecord.load(work_dir)
    return record is not None and record.up.pid == pid


def _healthy(scheduler: str, service: dict) -> dict | None:
    app = call("GET", f"{scheduler}/v2/apps/{service['id'].lstrip('/')}?embed=app.tasks")["app"]
    return app if app.get("tasksHealthy", 0) >= service["instances"] else None


def _run_done(scheduler: str, job_id: str, run_id: str) -> dict | None:
    runs = call("GET", f"{scheduler}/v1/jobs/{job_id}?embed=history")["history"]
    for finished in runs.get("successfulFinishedRuns", []) + runs.get("failedFinishedRuns", []):
        if finished["id"] == run_id:
            return {"status": "SUCCESS" if finished in runs.get("successfulFinishedRuns", []) else "FAILED"}
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # `up`'s default work dir, so the CLI finds the cluster's client.json there (./.dockyard/client.json).
    parser.add_argument("--work-dir", type=Path, default=REPO / ".dockyard")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--master-port", type=int, default=5050)
    parser.add_argument("--agent-port", type=int, default=5051, help="agent1's port; agent2 gets +1 ...")
    parser.add_argument("--scheduler-port", type=int, default=8080)
    parser.add_argument("--no-hold", action="store_true", help="stop once the demo has been shown")
    args = parser.parse_args(argv)
    return run(args.work_dir, args.agents, args.master_port, args.agent_port, args.scheduler_port,
               hold=not args.no_hold)


if __name__ == "__main__":
    sys.exit(main())
