"""`dockyard scheduler | job ...` (and `app ...`, `task ...` from scheduler/cli_apps.py).

The job commands are REST clients of a running scheduler (`--url` or
`DOCKYARD_URL`); task output is read from the agent's `/files/read` API,
so `job run --wait` works from any machine that reaches the cluster.
Plain tables for people (framework/tables.py), `--json` for scripts.

Who the user is comes from the client settings (framework/security/client.py):
`--config FILE`, else `$DOCKYARD_CONFIG`, else `./.dockyard/client.json`. Their
credentials and CA go to the scheduler and to the agents; a 401 or 403 is one
line saying who we were, where that came from and what the server said.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
import httpx

from framework.errors import SecurityError
from framework.security import client as client_settings
from framework.security.client import ClientConfig
from framework.tables import console as make_console
from framework.tables import table as make_table

DEFAULT_URL = "http://127.0.0.1:8080"
FINISHED = {"SUCCESS", "FAILED"}
console = make_console(highlight=False)
err_console = make_console(stderr=True, highlight=False, soft_wrap=True)  # lines stay whole in logs


@click.group()
def cli() -> None:
    """dockyard: a Mesos framework for services and batch jobs."""


# -- dockyard scheduler -------------------------------------------------------------

LIMIT_FLAGS = (  # flag, Limits field, type, help (defaults: scheduler/limits.py)
    ("--max-request-bytes", "max_request_bytes", int, "largest request body read (413 past it)"),
    ("--max-json-depth", "max_json_depth", int, "deepest JSON nesting parsed (422 past it)"),
    ("--max-instances", "max_instances", int, "most instances of one app, and per group scaleBy"),
    ("--max-id-length", "max_id_length", int, "longest app or job id"),
    ("--max-env-vars", "max_env_vars", int, "most environment variables of one app or job"),
    ("--max-labels", "max_labels", int, "most labels of one app or job"),
    ("--max-connections", "max_connections", int, "open connections served at once (default: half the fd limit)"),
    ("--max-connections-per-client", "max_connections_per_client", int, "open connections of one client address"),
    ("--header-timeout", "header_timeout", float, "seconds a request may take to send its headers"),
    ("--body-timeout", "body_timeout", float, "seconds a request may take to send its body"),
    ("--keep-alive-timeout", "keep_alive_timeout", int, "seconds an idle connection stays open"),
    ("--event-stream-bytes", "event_stream_bytes", int, "events buffered for one slow /v2/events reader before "
                                                        "it is dropped"),
)


def limit_options(command: Callable) -> Callable:
    """The LIMIT_FLAGS, handed to the command as one `limits` (unset flags keep the defaults)."""
    import functools

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        from scheduler.limits import Limits

        given = {field: kwargs.pop(field) for _, field, _, _ in LIMIT_FLAGS}
        return command(limits=Limits().with_changes(**given), **kwargs)

    for flag, field, kind, text in reversed(LIMIT_FLAGS):
        run = click.option(flag, field, type=kind, default=None, help=text)(run)
    return run


@cli.command()
@click.option("--master", default="127.0.0.1:5050", show_default=True,
              help="HOST:PORT or zk://... (HTTPS when TLS is on), or http(s)://HOST:PORT to choose")
@click.option("--ip", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--data-dir", default=".dockyard/scheduler", show_default=True)
@click.option("--zk", default=None, help="zk://hosts/path: keep state in ZooKeeper, elect a leader")
@click.option("--name", default="dockyard", show_default=True, help="framework name")
@click.option("--executor-command", default=None, help="how agents start the warm executor")
@click.option("--warm-executor/--command-tasks", default=True, show_default=True,
              help="launch tasks through one warm dockyard executor per agent, or as plain command tasks")
@click.option("--job-history", default=50, show_default=True, type=int, help="finished runs kept per job")
@click.option("--clock-file", default=None, hidden=True, help="tests only: read 'now' from this file")
@click.option("--mesos-authentication-principal", "principal", default=None,
              help="our framework principal (FrameworkInfo.principal), as Marathon's flag")
@click.option("--mesos-authentication-secret-file", "secret_file", default=None,
              help="the principal's secret for the master (read whole: a trailing newline is part of it)")
@click.option("--http-credentials", envvar="MESOSPHERE_HTTP_CREDENTIALS", show_envvar=True, default=None,
              help="USER:PASSWORD of an admin of the REST API (Marathon's flag)")
@click.option("--http-users", default=None,
              help="Mesos credentials JSON of the API's users, each with a role: admin (default) or viewer")
@click.option("--http-realm", default="Mesosphere", show_default=True, help="realm of the 401 challenge")
@click.option("--tls-cert", default=None, help="PEM certificate: serve HTTPS and present it to peers")
@click.option("--tls-key", default=None, help="PEM key of --tls-cert")
@click.option("--tls-ca", default=None, help="PEM CA that peers' (and clients') certificates must chain to")
@click.option("--tls-require-client-cert", is_flag=True, help="mutual TLS: ask every client for a certificate")
@click.option("--insecure", is_flag=True,
              help="serve a non-loopback --ip even with authentication or TLS off")
@click.option("--allow-privileged", is_flag=True,
              help="admins may submit privileged containers, added capabilities or devices, host-path volumes")
@click.option("--mesos-user", default="nobody", show_default=True, metavar="USER",
              help="the user command tasks without their own `user` run as (FrameworkInfo.user); "
                   "tasks with an image run as the image's user")
@click.option("--acls", "acls_file", default=None, metavar="FILE",
              help="Mesos ACLs: run_tasks says which task users each API principal may ask for")
@limit_options
@click.option("--secrets-key-file", default=None, metavar="FILE",
              help="Fernet keys (first encrypts, all decrypt) of the secret store; turns secrets on (docs/secrets.md)")
@click.option("--secrets-acls", default=None, metavar="FILE",
              help="who may reference and write which secret paths (docs/secrets.md)")
def scheduler(master: str, ip: str, port: int, data_dir: str, zk: str | None, name: str,
              executor_command: str | None, warm_executor: bool, job_history: int,
              clock_file: str | None, principal: str | None, secret_file: str | None,
              http_credentials: str | None, http_users: str | None, http_realm: str, tls_cert: str | None,
              tls_key: str | None, tls_ca: str | None, tls_require_client_cert: bool, insecure: bool,
              secrets_key_file: str | None, secrets_acls: str | None, allow_privileged: bool = False,
              mesos_user: str = "nobody", acls_file: str | None = None, limits: Any = None) -> None:
    """Run the framework scheduler (REST API on --port)."""
    if not mesos_user.strip():
        raise click.BadParameter("must name a user", param_hint="--mesos-user")
    from framework.errors import SecurityError
    from scheduler.context import SchedulerConfig
    from scheduler.main import serve
    from scheduler.security import check_scheduler_binding, load_security

    try:
        security = load_security(principal=principal, secret_file=secret_file, http_credentials=http_credentials,
                                 http_users=http_users, realm=http_realm, tls_cert=tls_cert, tls_key=tls_key,
                                 tls_ca=tls_ca, require_client_cert=tls_require_client_cert, insecure=insecure,
                                 allow_privileged=allow_privileged, acls_file=acls_file)
        check_scheduler_binding(security, ip)
        from scheduler.secrets.store import check_settings

        check_settings(secrets_key_file, secrets_acls)
    except SecurityError as error:
        click.echo(f"dockyard scheduler: {error}", err=True)
        sys.exit(2)
    config = SchedulerConfig(master=master, ip=ip, port=port, data_dir=data_dir, zk=zk, name=name,
                             executor_command=executor_command, warm_executor=warm_executor,
                             job_history=job_history, clock_file=clock_file, security=security,
                             secrets_key_file=secrets_key_file, secrets_acls=secrets_acls, limits=limits,
                             mesos_user=mesos_user)
    sys.exit(serve(config))


# -- REST helpers ---------------------------------------------------------------------

def server_message(response: httpx.Response) -> str:
    """What a server said: Marathon's `{"message": ...}` (with its details), else the text."""
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()
    if not isinstance(payload, dict):
        return response.text.strip()
    message = str(payload.get("message", response.text))
    for detail in payload.get("details") or []:
        if isinstance(detail, dict):
            message += f"\n  {detail.get('path')}: {'; '.join(detail.get('errors', []))}"
    return message


class Api:
    """A REST client of the scheduler, as the user of the client settings (credentials, CA)."""

    def __init__(self, settings: ClientConfig | str) -> None:
        self.settings = settings if isinstance(settings, ClientConfig) else ClientConfig().with_url(settings)
        self.url = self.settings.url.rstrip("/")
        self.client = httpx.Client(timeout=30, **self.settings.httpx_options())

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        try:
            response = self.client.request(method, self.url + path, json=body, params=params)
        except httpx.HTTPError as error:
            raise click.ClickException(f"cannot reach the scheduler at {self.url}: {error}") from None
        if response.status_code in (401, 403):
            raise click.ClickException(self.settings.refusal(
                response.status_code, f"the scheduler at {self.url}", server_message(response)))
        if response.status_code >= 400:
            raise click.ClickException(f"{response.status_code}: {server_message(response)}")
        return response.json() if response.content.strip() else None

    def files_client(self, timeout: float = 10.0) -> httpx.Client:
        """A client for the agents' `/files` API: the same credentials and CA."""
        return httpx.Client(timeout=timeout, **self.settings.httpx_options())


def connect(url: str | None, config: str | None) -> Api:
    """The scheduler client of `--url`/`$DOCKYARD_URL` and `--config`/the settings found."""
    try:
        return Api(client_settings.load(config, url))
    except SecurityError as error:
        raise click.ClickException(str(error)) from None


def client_options(command: Callable) -> Callable:
    """`--url` and `--config`: which scheduler, and as whom (the command calls `connect`)."""
    command = click.option("--config", "config", default=None, metavar="FILE",
                           help="client settings (credentials, CA) [default: $DOCKYARD_CONFIG, "
                                "else ./.dockyard/client.json]")(command)
    return click.option("--url", envvar="DOCKYARD_URL", default=None,
                        help=f"the scheduler's REST API [default: the settings' url, else {DEFAULT_URL}]")(command)


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")


def load_spec(path: str, what: str = "a job spec") -> dict:
    """Read a JSON or YAML spec (`-` for stdin); `what` names it in errors."""
    import yaml

    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise click.ClickException(f"{path}: neither JSON nor YAML: {error}") from None
    if not isinstance(document, dict) or "id" not in document:
        raise click.ClickException(f"{path}: {what} is an object with an 'id'")
    return document


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


# -- reading task output from the agent -------------------------------------------------

class LogTail:
    """Follows one sandbox file through the agent's /files/read, from an offset.

    `client` carries the user's credentials and CA (`Api.files_client`); an agent that
    refuses them leaves `refusal` set (said once by `_pump`) and the tail stops.
    """

    def __init__(self, client: httpx.Client, agent_url: str, path: str,
                 settings: ClientConfig | None = None) -> None:
        self.client = client
        self.agent_url = agent_url
        self.path = path
        self.offset = 0
        self.settings = settings or ClientConfig()
        self.refusal: str | None = None
        self.reported = False

    def read(self) -> str:
        chunks: list[str] = []
        while self.refusal is None:
            try:
                response = self.client.get(f"{self.agent_url}/files/read",
                                           params={"path": self.path, "offset": self.offset,
                                                   "length": 1 << 20})
            except httpx.HTTPError:
                return "".join(chunks)
            if response.status_code in (401, 403):
                self.refusal = self.settings.refusal(response.status_code, f"the agent at {self.agent_url}",
                                                     server_message(response))
                break
            if response.status_code != 200:
                return "".join(chunks)
            data = response.json().get("data", "")
            if not data:
                return "".join(chunks)
            self.offset += len(data.encode("utf-8", errors="replace"))
            chunks.append(data)
        return "".join(chunks)


def _tails(client: httpx.Client, task: dict, cache: dict,
           settings: ClientConfig | None = None) -> list[tuple[str, LogTail]]:
    if not task.get("sandbox") or not task.get("agentUrl"):
        return []
    key = task["id"]
    if key not in cache:
        cache[key] = [(name, LogTail(client, task["agentUrl"], f"{task['sandbox']}/{name}", settings))
                      for name in ("stdout", "stderr")]
    return cache[key]


def _pump(tails: list[tuple[str, LogTail]]) -> None:
    for name, tail in tails:
        text = tail.read()
        if tail.refusal is not None and not tail.reported:
            tail.reported = True
            err_console.print(f"cannot read {name}: {tail.refusal}", style="yellow")
        if text:
            stream = sys.stdout if name == "stdout" else sys.stderr
            stream.write(text)
            stream.flush()


def run_exit_code(run: dict) -> int:
    """The exit code `job run --wait` ends with: the tasks' last attempts' codes."""
    latest: dict[int, dict] = {}
    for task in run.get("tasks", []):
        latest[task.get("index", 0)] = task
    codes = [t.get("exitCode") for t in latest.values()]
    nonzero = [c for c in codes if c not in (None, 0)]
    if nonzero:
        return int(nonzero[0])
    if run.get("status") == "SUCCESS":
        return 0
    return 1 if not any(c is not None for c in codes) or run.get("status") == "FAILED" else 0


LOG_INTERVAL = 0.25      # seconds between reads of a running task's output from its agent
SANDBOX_LOOKUP = 0.5     # at most this often, ask for the run when a started task's sandbox is unknown
STREAM_READ_TIMEOUT = 45.0  # the jobs stream sends a keep-alive every 15 s
MAX_STREAM_REDIRECTS = 3


class RunEvents:
    """The scheduler's jobs event stream (`GET /v1/events`) for one run, read on its own thread.

    `next(timeout)` answers an event dict, None when nothing came within `timeout`, or
    raises `StreamBroken` once the stream has ended (or could not be opened)."""

    def __init__(self, api: Api | str, job_id: str, run_id: str) -> None:
        import queue
        import threading

        settings = api.settings if isinstance(api, Api) else ClientConfig().with_url(api)
        self.url = settings.url.rstrip("/")
        self.params = {"jobId": job_id, "runId": run_id}
        self.queue: "queue.Queue[dict | None]" = queue.Queue()
        self.attached = threading.Event()
        self.reason = ""
        # Redirects are followed by hand: httpx drops credentials on a redirect to another
        # origin, and a follower sends event streams to the leader (docs/ha.md).
        self.client = httpx.Client(timeout=httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT),
                                   **settings.httpx_options())
        self.thread = threading.Thread(target=self._read, name="job-events", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            self._follow(self.url + "/v1/events", redirects=MAX_STREAM_REDIRECTS)
            self.reason = "the scheduler closed it"
        except Exception as error:  # any failure ends the stream; the caller falls back to polling
            self.reason = str(error) or type(error).__name__
        finally:
            self.attached.set()
            self.queue.put(None)

    def _follow(self, url: str, redirects: int) -> None:
        """Read the stream at `url`, following a scheduler's 307 to its leader (never to plain
        HTTP from HTTPS: the credentials go along)."""
        with self.client.stream("GET", url, params=self.params,
                                headers={"Accept": "text/event-stream"}) as response:
            if response.status_code in (301, 302, 307, 308) and redirects > 0:
                target = response.headers.get("location", "").split("?", 1)[0]
                if url.startswith("https://") and not target.startswith("https://"):
                    raise RuntimeError(f"refusing a redirect from HTTPS to {target}")
                if not target:
                    raise RuntimeError(f"HTTP {response.status_code} without a Location")
                response.close()
                self._follow(target, redirects - 1)
                return
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    event = json.loads("\n".join(data))
                    data = []
                    if event.get("eventType") == "event_stream_attached":
                        self.attached.set()
                    else:
                        self.queue.put(event)

    def next(self, timeout: float) -> dict | None:
        import queue

        try:
            event = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            raise StreamBroken(self.reason)
        return event

    def close(self) -> None:
        self.client.close()


class StreamBroken(Exception):
    """The jobs event stream ended."""


def apply_event(run: dict, event: dict) -> dict:
    """The run after one `job_run_*` event: `jobRun` replaces its fields (and its tasks when
    the event carries them), `task` replaces or adds one task. Sandboxes already known stay."""
    known = {t["id"]: t for t in run.get("tasks", [])}

    def merged(task: dict) -> dict:
        before = known.get(task["id"], {})
        extra = {k: before[k] for k in ("sandbox", "agentUrl") if before.get(k) and not task.get(k)}
        return {**task, **extra}

    view = event.get("jobRun") or {}
    out = {k: v for k, v in run.items() if k not in ("waiting", "retryAt", "reason")}  # absent = cleared
    out.update({k: v for k, v in view.items() if k != "tasks"})
    tasks = [merged(t) for t in view["tasks"]] if "tasks" in view else list(run.get("tasks", []))
    if event.get("task"):
        task = merged(event["task"])
        ids = [t["id"] for t in tasks]
        if task["id"] in ids:
            tasks[ids.index(task["id"])] = task
        else:
            tasks.append(task)
    out["tasks"] = tasks
    return out


class RunPrinter:
    """Prints a run's task state changes and waiting reasons (stderr), and its tasks' output."""

    def __init__(self, files: httpx.Client, show_states: bool, stream_logs: bool,
                 settings: ClientConfig | None = None) -> None:
        self.files = files
        self.settings = settings
        self.show_states = show_states
        self.stream_logs = stream_logs
        self.seen: dict[str, str] = {}
        self.tails: dict[str, list] = {}
        self.waiting = ""

    def show(self, run: dict) -> None:
        for task in run.get("tasks", []):
            if self.show_states and self.seen.get(task["id"]) != task["status"]:
                self.seen[task["id"]] = task["status"]
                line = f"[{time.strftime('%H:%M:%S')}] {task['id']} {task['status']}"
                if task.get("host"):
                    line += f" on {task['host']}"
                if task.get("exitCode") is not None:
                    line += f" (exit {task['exitCode']})"
                elif task.get("message") and task["status"] not in ("TASK_RUNNING", "TASK_STARTING"):
                    line += f": {task['message']}"
                err_console.print(line, style="dim")
            if self.stream_logs:
                _pump(_tails(self.files, task, self.tails, self.settings))
        if self.show_states and run.get("waiting") and run["waiting"] != self.waiting:
            self.waiting = run["waiting"]
            err_console.print(f"waiting for resources: {self.waiting}", style="yellow")


def _lacks_sandbox(run: dict) -> bool:
    return any(t.get("agentId") and not t.get("sandbox") and t.get("status") not in ("PENDING", "TASK_STAGING")
               for t in run.get("tasks", []))


def follow_run(api: Api, job_id: str, run_id: str, as_json: bool, show_states: bool = True,
               stream_logs: bool = True, poll: float = 0.2) -> dict:
    """Show state changes and stream output until the run finishes; returns the final run.

    Follows the jobs event stream; polls the run every `poll` seconds only if the
    stream cannot be opened or breaks. Output is read from the agents every
    LOG_INTERVAL seconds while tasks run (the agent's files API does not push)."""
    events: RunEvents | None = RunEvents(api, job_id, run_id)
    events.attached.wait(10)
    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")  # after attaching: nothing is missed
    looked_up = time.monotonic()
    with api.files_client() as files:
        printer = RunPrinter(files, show_states, stream_logs, api.settings)
        try:
            while True:
                printer.show(run)
                if run.get("status") in FINISHED:
                    if stream_logs:  # the last bytes written before the task exited
                        run = _with_sandboxes(api, job_id, run_id, run, poll)
                        printer.show(run)
                    return run
                if events is None:
                    time.sleep(poll)
                    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
                    continue
                try:
                    event = events.next(LOG_INTERVAL if stream_logs else 5.0)
                except StreamBroken as broken:
                    if show_states:
                        err_console.print(f"event stream lost ({broken}); polling the run instead", style="dim")
                    events.close()
                    events = None
                    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
                    continue
                if event is not None and event.get("runId") == run_id and "jobRun" in event:
                    run = apply_event(run, event)
                if stream_logs and _lacks_sandbox(run) and time.monotonic() - looked_up >= SANDBOX_LOOKUP:
                    looked_up = time.monotonic()  # where its output is: the scheduler asks the agent
                    run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
        finally:
            if events is not None:
                events.close()


def _with_sandboxes(api: Api, job_id: str, run_id: str, run: dict, poll: float,
                    patience: float = 3.0) -> dict:
    """The finished run once every task's sandbox is known (bounded wait).

    A sub-second task can finish before the scheduler has looked up where its
    sandbox is on the agent; its output is still there, so wait briefly for the
    location instead of printing nothing.
    """
    deadline = time.monotonic() + patience
    while any(not task.get("sandbox") for task in run.get("tasks", [])) and time.monotonic() < deadline:
        time.sleep(poll)
        run = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
    return run


# -- dockyard job ... ----------------------------------------------------------------

@cli.group()
def job() -> None:
    """Batch jobs (Metronome API)."""


@job.command("run")
@click.argument("file")
@click.option("--wait", is_flag=True, help="show the task's states and output; exit with its exit code")
@client_options
@json_option
def job_run(file: str, wait: bool, url: str | None, config: str | None, as_json: bool) -> None:
    """Submit the job in FILE (JSON or YAML) and start a run."""
    api = connect(url, config)
    spec = load_spec(file)
    api.call("PUT", f"/v1/jobs/{spec['id']}", spec)
    run = api.call("POST", f"/v1/jobs/{spec['id']}/runs")
    if not wait:
        if as_json:
            emit(run)
        else:
            console.print(f"started run {run['id']} of job {spec['id']}")
        return
    if not as_json:
        err_console.print(f"run {run['id']} of job {spec['id']} submitted", style="dim")
    final = follow_run(api, spec["id"], run["id"], as_json, show_states=not as_json, stream_logs=not as_json)
    code = run_exit_code(final)
    if as_json:
        emit(final)
    else:
        style = "green" if final["status"] == "SUCCESS" else "red"
        message = f"run {final['id']} {final['status']}"
        if final.get("reason"):
            message += f": {final['reason']}"
        err_console.print(message, style=style)
    sys.exit(code)


@job.command("list")
@client_options
@json_option
def job_list(url: str | None, config: str | None, as_json: bool) -> None:
    """List jobs with their schedules and run counts."""
    jobs = connect(url, config).call("GET", "/v1/jobs", params={"embed": ["activeRuns", "historySummary"]})
    if as_json:
        emit(jobs)
        return
    table = make_table("ID", "CMD", "SCHEDULES", "ACTIVE", "SUCCESS", "FAILED", "LAST SUCCESS")
    for item in jobs:
        summary = item.get("historySummary", {})
        table.add_row(item["id"], (item["run"].get("cmd") or " ".join(item["run"].get("args") or []))[:40],
                      ", ".join(s["cron"] for s in item.get("schedules", [])) or "-",
                      str(len(item.get("activeRuns", []))), str(summary.get("successCount", 0)),
                      str(summary.get("failureCount", 0)), summary.get("lastSuccessAt") or "-")
    console.print(table)


@job.command("show")
@click.argument("job_id")
@client_options
@json_option
def job_show(job_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Show a job's spec, schedules and active runs."""
    data = connect(url, config).call("GET", f"/v1/jobs/{job_id}", params={"embed": ["activeRuns", "historySummary"]})
    if as_json:
        emit(data)
        return
    run = data["run"]
    console.print(f"[bold]{data['id']}[/bold]  {data.get('description', '')}")
    console.print(f"  cmd: {run.get('cmd') or run.get('args')}")
    console.print(f"  cpus {run['cpus']}  mem {run['mem']}  disk {run['disk']}  instances {run.get('instances', 1)}"
                  f"  restart {run['restart']['policy']}")
    for schedule in data.get("schedules", []):
        console.print(f"  schedule {schedule['id']}: {schedule['cron']} ({schedule['timezone']}), "
                      f"{schedule['concurrencyPolicy']}, {'enabled' if schedule['enabled'] else 'disabled'}, "
                      f"next {schedule.get('nextRunAt', '-')}")
    for dependency in data.get("dependencies", []):
        console.print(f"  after: {dependency['id']}")
    summary = data.get("historySummary", {})
    console.print(f"  runs: {summary.get('successCount', 0)} succeeded, {summary.get('failureCount', 0)} failed;"
                  f" {len(data.get('activeRuns', []))} active")


@job.command("history")
@click.argument("job_id")
@client_options
@json_option
def job_history(job_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Success and failure counts and the kept finished runs."""
    data = connect(url, config).call("GET", f"/v1/jobs/{job_id}", params={"embed": "history"})["history"]
    if as_json:
        emit(data)
        return
    console.print(f"successes {data['successCount']} (last {data.get('lastSuccessAt') or '-'}), "
                  f"failures {data['failureCount']} (last {data.get('lastFailureAt') or '-'})")
    table = make_table("RUN", "RESULT", "CREATED", "FINISHED")
    rows = [(r, "SUCCESS") for r in data.get("successfulFinishedRuns", [])] + \
           [(r, "FAILED") for r in data.get("failedFinishedRuns", [])]
    for item, result in sorted(rows, key=lambda x: x[0]["finishedAt"] or "", reverse=True):
        table.add_row(item["id"], result, item["createdAt"], item["finishedAt"])
    console.print(table)


@job.command("runs")
@click.argument("job_id")
@client_options
@json_option
def job_runs(job_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Active and kept runs of a job."""
    runs = connect(url, config).call("GET", f"/v1/jobs/{job_id}/runs", params={"all": "true"})
    if as_json:
        emit(runs)
        return
    table = make_table("RUN", "STATUS", "CREATED", "COMPLETED", "TASKS", "EXIT", "NOTE")
    for run in sorted(runs, key=lambda r: r["createdAt"], reverse=True):
        exits = ",".join(str(t["exitCode"]) for t in run["tasks"] if t.get("exitCode") is not None)
        table.add_row(run["id"], run["status"], run["createdAt"], run.get("completedAt") or "-",
                      str(len(run["tasks"])), exits or "-", run.get("reason") or run.get("waiting") or "")
    console.print(table)


@job.command("stop")
@click.argument("job_id")
@click.argument("run_id")
@client_options
@json_option
def job_stop(job_id: str, run_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Stop a run: its tasks are killed."""
    run = connect(url, config).call("POST", f"/v1/jobs/{job_id}/runs/{run_id}/actions/stop")
    emit(run) if as_json else console.print(f"run {run_id}: {run['status']}")


@job.command("delete")
@click.argument("job_id")
@click.option("--force", is_flag=True, help="stop its active runs too")
@client_options
def job_delete(job_id: str, force: bool, url: str | None, config: str | None) -> None:
    """Delete a job."""
    connect(url, config).call("DELETE", f"/v1/jobs/{job_id}", params={"stopCurrentJobRuns": str(force).lower()})
    console.print(f"deleted {job_id}")


@job.command("logs")
@click.argument("ids", nargs=-1, required=True)
@click.option("-f", "--follow", is_flag=True, help="keep printing until the run finishes")
@client_options
def job_logs(ids: tuple[str, ...], follow: bool, url: str | None, config: str | None) -> None:
    """Print a run's stdout and stderr: `job logs RUN` or `job logs JOB RUN`."""
    api = connect(url, config)
    if len(ids) == 1:
        run = api.call("GET", f"/v1/runs/{ids[0]}")
    elif len(ids) == 2:
        run = api.call("GET", f"/v1/jobs/{ids[0]}/runs/{ids[1]}")
    else:
        raise click.UsageError("give RUN or JOB RUN")
    if follow and run["status"] not in FINISHED:
        follow_run(api, run["jobId"], run["id"], as_json=False, show_states=False)
        return
    with api.files_client() as files:
        tails: dict[str, list] = {}
        for task in run.get("tasks", []):
            if not task.get("sandbox"):
                err_console.print(f"{task['id']}: no sandbox yet ({task['status']})", style="yellow")
                continue
            _pump(_tails(files, task, tails, api.settings))


def _register_optional() -> None:
    """Add the services engineer's `app`/`task` commands once scheduler/cli_apps.py exists."""
    try:
        from scheduler import cli_apps
    except ImportError:
        return
    register = getattr(cli_apps, "register", None)
    if callable(register):
        register(cli)
        return
    for name in ("app", "task"):
        command = getattr(cli_apps, name, None)
        if isinstance(command, click.Command):
            cli.add_command(command, name)


_register_optional()

from scheduler.secrets import cli as secrets_cli  # noqa: E402 - it builds on the helpers above

secrets_cli.register(cli)
