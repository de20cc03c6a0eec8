"""What every REST command shares: the scheduler client, its options, reading spec files, output.

The commands are REST clients of a running scheduler (`--url` or `$DOCKYARD_URL`), as
the user of the client settings (framework/security/client.py): `--config FILE`, else
`$DOCKYARD_CONFIG`, else `./.dockyard/client.json`. Every mistake a user can make here
(a wrong path, a file that does not parse, a scheduler that does not answer, a
refusal) ends as one or two lines saying what to do next, never as a traceback.
"""
from __future__ import annotations

import difflib
import json
import re
import ssl
import sys
from pathlib import Path
from typing import Any, Callable

import click
import httpx

from framework.errors import SecurityError
from framework.security import client as client_settings
from framework.security.client import ClientConfig
from framework.tables import console as make_console

DEFAULT_URL = "http://127.0.0.1:8080"
console = make_console(highlight=False)
err_console = make_console(stderr=True, highlight=False, soft_wrap=True)  # lines stay whole in logs
WARNING_TEXT = re.compile(r'^\s*\d{3}\s+\S+\s+"(?P<text>(?:[^"\\]|\\.)*)"')


def server_message(response: httpx.Response) -> str:
    """What a server said: Marathon's `{"message": ...}` (with its details), else the text."""
    try:
        payload = response.json()
    except ValueError:
        return _first_line(response.text)
    if not isinstance(payload, dict):
        return _first_line(response.text)
    message = str(payload.get("message", response.text))
    for detail in payload.get("details") or []:
        if isinstance(detail, dict):
            message += f"\n  {detail.get('path')}: {'; '.join(detail.get('errors', []))}"
    return message


def _first_line(text: str, limit: int = 200) -> str:
    """A non-JSON answer (an HTML error page, a proxy's text) shortened to one line."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."


def unreachable(url: str, error: Exception) -> click.ClickException:
    reason = str(error) or type(error).__name__
    return click.ClickException(f"cannot reach the scheduler at {url}: {reason} (is it running? `dockyard up` "
                                f"starts one; --url or $DOCKYARD_URL names another)")


class ServerError(click.ClickException):
    """The scheduler answered with an error; `status` lets a command say it in its own words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Api:
    """A REST client of the scheduler, as the user of the client settings (credentials, CA).

    `warnings` holds what the last answer warned about (its `Warning` headers and the
    `warnings` list of its body), for the command to print."""

    def __init__(self, settings: ClientConfig | str) -> None:
        self.settings = settings if isinstance(settings, ClientConfig) else ClientConfig().with_url(settings)
        self.url = self.settings.url.rstrip("/")
        # Dockyard-Detail: runs with their exit codes, sandboxes and reasons (scheduler/api/metronome.py)
        self.client = httpx.Client(timeout=30, headers={"Dockyard-Detail": "true"}, **self.settings.httpx_options())
        self.warnings: list[str] = []

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None, *,
             content: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        """JSON `body` (or raw `content`) to `path`; the answer's JSON, else one ClickException."""
        try:
            response = self.client.request(method, self.url + path, json=body, params=params, content=content,
                                           headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, OSError) as error:
            raise unreachable(self.url, error) from None
        return self.answer(response)

    def answer(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx answer; any other answer becomes one ClickException."""
        self.warnings = answer_warnings(response)
        status = response.status_code
        if status in (401, 403):
            raise ServerError(status, self.settings.refusal(status, f"the scheduler at {self.url}",
                                                            server_message(response)))
        if status == 409:
            raise ServerError(status, self.conflict(response))
        if status >= 400:
            raise ServerError(status, f"{status}: {server_message(response)}")
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise click.ClickException(
                f"{self.url} answered {response.request.url.path} with something other than JSON "
                f"({_first_line(response.text, 80) or 'an empty page'})\n"
                f"is it a dockyard scheduler? --url names the scheduler's REST API, e.g. {DEFAULT_URL}") from None

    def conflict(self, response: httpx.Response) -> str:
        """A 409 in this CLI's words: the deployments that hold the app, and the option that overrides them."""
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        held = [d.get("id") for d in (payload.get("deployments") or []) if isinstance(d, dict)] \
            if isinstance(payload, dict) else []
        if not held:
            return f"409: {server_message(response)}"
        return (f"409: the app is locked by deployment {', '.join(held)}, still in progress\n"
                f"run the command again with --force to override it, see it with `dockyard app deployment list`, "
                f"or stop it with `dockyard app deployment cancel {held[0]}`")

    def files_client(self, timeout: float = 10.0) -> httpx.Client:
        """A client for the agents' `/files` API: the same credentials and CA."""
        return httpx.Client(timeout=timeout, **self.settings.httpx_options())


def answer_warnings(response: httpx.Response) -> list[str]:
    """What an answer warns about: RFC 7234 `Warning: 199 agent "text"` headers, and a
    `warnings` list in a JSON object body (the scheduler sends both for unknown fields)."""
    found = []
    for header in response.headers.get_list("warning"):
        match = WARNING_TEXT.match(header)
        found.append(match.group("text").replace('\\"', '"') if match else header.strip())
    if "json" in response.headers.get("content-type", "") and response.content.strip():
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("warnings"), list):
            found += [str(w) for w in payload["warnings"]]
    return list(dict.fromkeys(found))


def connect(url: str | None, config: str | None) -> Api:
    """The scheduler client of `--url`/`$DOCKYARD_URL` and `--config`/the settings found."""
    try:
        return Api(client_settings.load(config, url))
    except (SecurityError, OSError, ssl.SSLError) as error:
        raise click.ClickException(str(error)) from None


def client_options(command: Callable) -> Callable:
    """`--url` and `--config`: which scheduler, and as whom (the command calls `connect`)."""
    command = click.option("--config", "config", default=None, metavar="FILE",
                           help="client settings (credentials, CA) [default: $DOCKYARD_CONFIG, "
                                "else ./.dockyard/client.json]")(command)
    return click.option("--url", envvar="DOCKYARD_URL", default=None,
                        help=f"the scheduler's REST API [default: the settings' url, else {DEFAULT_URL}]")(command)


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")


def force_option(what: str) -> Callable:
    """`--force`, saying what it overrides for this command."""
    return click.option("--force", is_flag=True, help=what)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def warn(text: str) -> None:
    err_console.print(f"warning: {text}", style="yellow", markup=False)


# -- spec files ---------------------------------------------------------------------------

def load_spec(path: str, what: str = "a job spec") -> dict:
    """A JSON or YAML spec (`-` for stdin) as a dict with an `id`; `what` names it in errors."""
    document = parse_spec_text(path, read_spec_text(path))
    if not isinstance(document, dict):
        raise click.ClickException(f"{path}: {what} is an object (`id: ...` in YAML, {{\"id\": ...}} in JSON), "
                                   f"not {_kind(document)}")
    if "id" not in document:
        raise click.ClickException(f"{path}: {what} needs an 'id'")
    return document


def read_spec_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise click.ClickException(f"{path}: no such file{_nearby(file)}") from None
    except IsADirectoryError:
        raise click.ClickException(f"{path} is a directory: give the spec file in it") from None
    except PermissionError:
        raise click.ClickException(f"{path}: permission denied (run as a user who may read it)") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{path}: not UTF-8 text; a spec is a JSON or YAML file") from None
    except OSError as error:
        raise click.ClickException(f"cannot read {path}: {error.strerror or error}") from None


def _nearby(file: Path) -> str:
    """`; did you mean X?` for a near miss in the same directory (a typo), else where we looked."""
    try:
        names = [p.name for p in file.parent.iterdir()]
    except OSError:
        return f" (and no directory {file.parent})"
    close = difflib.get_close_matches(file.name, names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {file.with_name(close[0])}?"
    return f" (looked in {file.parent.resolve()})"


def parse_spec_text(path: str, text: str) -> Any:
    """JSON, else YAML; the error of the syntax the file claims (its suffix, or a leading `{`/`[`)."""
    import yaml

    try:
        return json.loads(text)
    except ValueError as error:
        json_error = error
    looks_json = path.endswith(".json") or text.lstrip().startswith(("{", "["))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        if looks_json and isinstance(json_error, json.JSONDecodeError):
            raise click.ClickException(f"{path}: not valid JSON: {json_error.msg} "
                                       f"(line {json_error.lineno}, column {json_error.colno})") from None
        raise click.ClickException(f"{path}: not valid YAML: {_yaml_problem(error)}") from None


def _yaml_problem(error: Exception) -> str:
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def _kind(value: Any) -> str:
    if value is None:
        return "an empty document"
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


def print_warnings(local: list[str], api: Api | None = None) -> None:
    """The unknown fields found here, then any further warning the scheduler answered with."""
    said = set()
    for text in [*local, *(api.warnings if api is not None else [])]:
        if text not in said:
            said.add(text)
            warn(text + " - ignored" if text.startswith("unknown field") else text)
