"""`dockyard up` is secure by default, with real processes throughout.

A default `up` generates the security bundle, authenticates every component
(agents and the scheduler towards the master too) and writes the CLI's
`client.json`, so the CLI works as before while an anonymous caller gets 401.
`--tls` serves HTTPS verified by the bundle's CA, a restart reuses every secret
and the CA, `--insecure` is the open cluster of old, and no network address is
ever served open by accident. One `up` per mode is shared by the module's tests.
"""
from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from framework.local.cluster import supervisor
from tests.support.procs import Process, dockyard, free_port, wait_for

RESOURCES = "cpus:1;mem:512;disk:100"


def request(method: str, url: str, auth: tuple[str, str] | None = None, body: Any = None,
            context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-case headers, body); HTTP errors are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    merged = {"Content-Type": "application/json"} if data is not None else {}
    if auth is not None:
        merged["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    merged.update(headers or {})
    call = urllib.request.Request(url, data=data, method=method, headers=merged)
    try:
        with urllib.request.urlopen(call, timeout=10, context=context) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


class Up:
    """One `dockyard up --agents 1` in `root/.dockyard` (where the CLI looks by default)."""

    def __init__(self, root: Path, *flags: str, scheduler: bool = True) -> None:
        self.root = root
        self.work = root / ".dockyard"
        self.flags = [*flags, *([] if scheduler else ["--no-scheduler"])]
        self.scheduler = scheduler
        self.master_port, self.agent_port, self.scheduler_port = free_port(), free_port(), free_port()
        self.process: Process | None = None
        self.starts = 0

    @property
    def client_file(self) -> Path:
        return self.work / "client.json"

    @property
    def security(self) -> Path:
        return self.work / "security"

    def settings(self) -> dict[str, str]:
        return json.loads(self.client_file.read_text())

    def auth(self) -> tuple[str, str] | None:
        settings = self.settings()
        return (settings["principal"], settings["secret"]) if "principal" in settings else None

    def context(self) -> ssl.SSLContext | None:
        ca = self.settings().get("ca")
        return ssl.create_default_context(cafile=ca) if ca else None

    def url(self, component: str) -> str:
        port = {"master": self.master_port, "agent": self.agent_port, "scheduler": self.scheduler_port}[component]
        host = "127.0.2.1" if component == "agent" else "127.0.0.1"  # the agent's own loopback address
        return f"{'https' if self.context() else 'http'}://{host}:{port}"

    def start(self) -> "Up":
        self.starts += 1
        self.process = Process(dockyard("up", "--agents", "1", "--work-dir", str(self.work),
                                        "--master-port", str(self.master_port), "--agent-port", str(self.agent_port),
                                        "--scheduler-port", str(self.scheduler_port), "--resources", RESOURCES,
                                        *self.flags),
                               self.root / f"up-{self.starts}.log", env={"COLUMNS": "200"})
        process = self.process
        try:
            wait_for(lambda: "cluster up" in process.output() or not process.alive(), 60, what="`dockyard up`")
            assert process.alive(), process.output()[-3000:]
            wait_for(self.joined, 60, what="the agent registered and the scheduler subscribed")
        except BaseException:
            self.stop()
            raise
        return self

    def joined(self) -> bool:
        """The agent (and the scheduler) authenticated to the master: both are in its state."""
        status, _, body = request("GET", self.url("master") + "/master/state", self.auth(), context=self.context())
        if status != 200:
            return False
        state = json.loads(body)
        agents = [a["hostname"] for a in state["slaves"] if a.get("active")]
        frameworks = [f["name"] for f in state["frameworks"] if f.get("active")]
        return agents == ["127.0.2.1"] and (not self.scheduler or frameworks == ["dockyard"])

    def output(self) -> str:
        return self.process.output() if self.process else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        code = self.process.stop(timeout=30)
        self.process = None
        return code


def running(root: Path, *flags: str, scheduler: bool = True) -> Iterator[Up]:
    up = Up(root, *flags, scheduler=scheduler).start()
    try:
        yield up
    finally:
        code = up.stop()
        assert code in (0, None), up.output()[-3000:]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    yield from running(Path(tmp_path_factory.mktemp("up-secure")))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    yield from running(Path(tmp_path_factory.mktemp("up-tls")), "--tls")


@pytest.fixture(scope="module")
def insecure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = Path(tmp_path_factory.mktemp("up-open"))
    # What an earlier secured `up` in this directory left: it must not point the CLI at credentials.
    (root / ".dockyard").mkdir()
    (root / ".dockyard" / "client.json").write_text(json.dumps(
        {"url": "https://127.0.0.1:1", "principal": "operator", "secret": "stale", "ca": "/nowhere/ca.pem"}))
    yield from running(root, "--insecure", scheduler=False)


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`dockyard ARGS` as a user runs it: in `cwd`, with only the settings it is given."""
    clean = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_CONFIG", "DOCKYARD_URL")}
    return subprocess.run(dockyard(*args), cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**clean, **(env or {})})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- secure by default ------------------------------------------------------------------------------

def test_up_writes_the_clients_settings_and_keeps_them_private(secure: Up) -> None:
    settings = secure.settings()
    assert settings == {"url": f"http://127.0.0.1:{secure.scheduler_port}",
                        "master": f"http://127.0.0.1:{secure.master_port}",
                        "principal": "operator", "secret": (secure.security / "operator.secret").read_text()}
    credentials = json.loads((secure.security / "credentials.json").read_text())["credentials"]
    assert {"principal": "operator", "secret": settings["secret"]} in [
        {k: c[k] for k in ("principal", "secret")} for c in credentials]
    assert mode(secure.client_file) == 0o600
    assert mode(secure.security) == 0o700
    files = list(secure.security.iterdir())
    assert {p.name for p in files} >= {"credentials.json", "users.json", "acls.json", "executor.key",
                                       "agent-agent1.json", "scheduler.secret", "operator.secret",
                                       "secrets.key", "secrets-acls.json"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    # TLS is off on loopback without --tls: the CA exists (clients may be handed it) but no server
    # certificate was issued and the clients' settings name no CA.
    assert {p.name for p in files if p.suffix == ".pem"} == {"ca.pem"}
    assert "authentication on;" in secure.output()


def test_no_secret_is_printed_or_logged(secure: Up) -> None:
    secrets = [c["secret"] for c in json.loads((secure.security / "credentials.json").read_text())["credentials"]]
    secrets.append((secure.security / "executor.key").read_text())
    secrets.append((secure.security / "secrets.key").read_text().strip())
    logs = [secure.output(), *(p.read_text(errors="replace") for p in (secure.work / "logs").glob("*.log"))]
    assert len(logs) >= 4  # up's own, the master's, the agent's, the scheduler's
    leaked = [secret[:4] + "..." for secret in secrets if any(secret in log for log in logs)]
    assert not leaked


@pytest.mark.parametrize("component, method, path, challenge", [
    ("master", "GET", "/master/state", 'Basic realm="mesos-master-readonly"'),
    ("master", "POST", "/api/v1", 'Basic realm="mesos-master-readwrite"'),
    ("master", "POST", "/api/v1/scheduler", 'Basic realm="mesos-master-scheduler"'),
    ("master", "POST", "/internal/agent", 'Basic realm="dockyard-master-agents"'),
    ("agent", "GET", "/state", 'Basic realm="mesos-agent-readonly"'),
    ("agent", "POST", "/api/v1/executor", 'Bearer realm="mesos-agent-executor"'),
    ("scheduler", "GET", "/v2/apps", 'Basic realm="Mesosphere"'),
    ("scheduler", "POST", "/v1/jobs", 'Basic realm="Mesosphere"'),
])
def test_anonymous_callers_get_401(secure: Up, component: str, method: str, path: str, challenge: str) -> None:
    status, headers, _ = request(method, secure.url(component) + path, body={} if method == "POST" else None)
    assert (status, headers.get("www-authenticate")) == (401, challenge)
    assert request("GET", secure.url(component) + "/health")[0] == 200  # probes stay open


def test_the_client_settings_are_let_in(secure: Up) -> None:
    for component, path in (("master", "/master/state"), ("agent", "/state"), ("scheduler", "/v2/apps")):
        status, _, body = request("GET", secure.url(component) + path, secure.auth())
        assert status == 200, (component, body[:200])
    wrong = (secure.auth() or ("", ""))[0], "not-the-secret"
    assert request("GET", secure.url("scheduler") + "/v2/apps", wrong)[0] == 401


def test_the_cli_works_unchanged(secure: Up, tmp_path: Path) -> None:
    """In the directory `up` ran in, the CLI needs no flag; elsewhere --config or $DOCKYARD_CONFIG."""
    apps = cli(secure.root, "app", "list", "--json")
    assert apps.returncode == 0, apps.stderr
    assert json.loads(apps.stdout) == []
    status = cli(secure.root, "status", "--json")
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert [a["hostname"] for a in summary["agents"]] == ["127.0.2.1"]
    assert [f["name"] for f in summary["frameworks"]] == ["dockyard"]
    config = str(secure.client_file)
    for args, env in ((["--config", config], None), ([], {"DOCKYARD_CONFIG": config})):
        assert cli(tmp_path, "app", "list", "--json", *args, env=env).returncode == 0, (args, env)
        assert cli(tmp_path, "status", "--json", *args, env=env).returncode == 0, (args, env)
    # Without the settings, the same command is refused, and says so in one line.
    refused = cli(tmp_path, "app", "list", "--json", "--url", secure.url("scheduler"))
    assert refused.returncode == 1 and "401 Unauthorized" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


# -- TLS ------------------------------------------------------------------------------------------------

def test_tls_serves_https_verified_by_the_ca(tls: Up, tmp_path: Path) -> None:
    settings = tls.settings()
    ca = tls.security / "ca.pem"
    assert settings["ca"] == str(ca) and mode(ca) == 0o600
    assert settings["url"] == f"https://127.0.0.1:{tls.scheduler_port}"
    assert settings["master"] == f"https://127.0.0.1:{tls.master_port}"
    for component, path in (("master", "/master/state"), ("agent", "/state"), ("scheduler", "/v2/apps")):
        url = tls.url(component)
        assert url.startswith("https://")
        assert request("GET", url + "/health", context=tls.context())[0] == 200
        assert request("GET", url + path, context=tls.context())[0] == 401
        assert request("GET", url + path, tls.auth(), context=tls.context())[0] == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            request("GET", url + "/health", context=ssl.create_default_context())  # the system's CAs only
        with pytest.raises(OSError):  # plain HTTP gets no answer
            request("GET", url.replace("https://", "http://") + "/health")
    config = str(tls.client_file)
    apps = cli(tmp_path, "app", "list", "--json", env={"DOCKYARD_CONFIG": config})
    assert apps.returncode == 0 and json.loads(apps.stdout) == [], apps.stderr
    status = cli(tmp_path, "status", "--json", "--config", config)
    assert status.returncode == 0 and json.loads(status.stdout)["agents"][0]["hostname"] == "127.0.2.1", status.stderr


def test_a_restart_reuses_the_secrets_and_the_ca(tls: Up) -> None:
    before = {p.name: p.read_bytes() for p in tls.security.iterdir()}
    settings, context = tls.settings(), tls.context()
    assert {"ca.pem", "ca.key", "cluster.pem", "cluster.key"} <= set(before)
    assert tls.stop() == 0
    tls.start()
    assert {p.name: p.read_bytes() for p in tls.security.iterdir()} == before
    assert tls.settings() == settings
    # A client set up before the restart (its CA, its credentials) goes on working.
    assert request("GET", tls.url("master") + "/master/state", (settings["principal"], settings["secret"]),
                   context=context)[0] == 200


# -- --insecure and network addresses -----------------------------------------------------------------------

def test_insecure_is_the_open_cluster(insecure: Up) -> None:
    assert insecure.settings() == {"url": f"http://127.0.0.1:{insecure.scheduler_port}",
                                   "master": f"http://127.0.0.1:{insecure.master_port}"}
    assert not insecure.security.exists()
    assert "security is off (--insecure)" in insecure.output()
    assert request("GET", insecure.url("master") + "/master/state")[0] == 200
    assert request("POST", insecure.url("master") + "/api/v1", body={"type": "GET_HEALTH"})[0] == 200
    assert request("GET", insecure.url("agent") + "/state")[0] == 200


def test_tls_and_insecure_together_are_refused(tmp_path: Path) -> None:
    done = cli(tmp_path, "up", "--tls", "--insecure", "--work-dir", str(tmp_path / "w"))
    assert done.returncode == 2 and "--tls and --insecure contradict each other" in done.stderr, done.stderr
    assert not (tmp_path / "w").exists()


def test_a_network_address_is_never_served_open(tmp_path: Path) -> None:
    """On an address other than loopback `up` turns TLS on by itself; its children, given no
    security, refuse to serve such an address unless told --insecure."""
    work = tmp_path / "net"
    security = supervisor.prepare_security(work, "0.0.0.0", 1, tls=False, insecure=False)
    assert security.cert is not None
    ports = [free_port() for _ in range(3)]
    children = supervisor.plan(1, work, "0.0.0.0", *ports, True, RESOURCES, security=security)
    for child in children:
        assert "--tls-cert" in child.argv and child.url.startswith("https://"), child.argv
        assert any(flag.startswith("--authenticate") or flag == "--http-users" for flag in child.argv), child.argv
    settings = json.loads(supervisor.write_client_settings(work, "0.0.0.0", ports[0], ports[2], security).read_text())
    assert settings["url"].startswith("https://127.0.0.1:") and settings["ca"] == str(work / "security" / "ca.pem")

    open_children = supervisor.plan(1, work, "0.0.0.0", *ports, True, RESOURCES, security=supervisor.Security())
    for child in open_children:
        assert "--insecure" in child.argv, child.argv
        argv = [arg for arg in child.argv if arg != "--insecure"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (child.name, done.returncode, done.stderr[-2000:])
        assert "--insecure" in done.stderr and "Traceback" not in done.stderr, (child.name, done.stderr)


def test_insecure_settings_are_written_into_a_work_dir_that_does_not_exist_yet(tmp_path: Path) -> None:
    """Only the security bundle used to create the work dir: `up --insecure` with a fresh one crashed."""
    work = tmp_path / "fresh" / "cluster"
    path = supervisor.write_client_settings(work, "127.0.0.1", 5050, 8080, supervisor.Security())
    assert json.loads(path.read_text()) == {"url": "http://127.0.0.1:8080", "master": "http://127.0.0.1:5050"}
