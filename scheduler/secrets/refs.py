"""Where an app or a job uses its secrets, and who is asking.

An app (Marathon) or a job run (Metronome) names its secrets once, `secrets:
{"pw": {"source": "db/password"}}`, and uses them by name: an environment
variable `{"secret": "pw"}`, or a volume `{"containerPath": "...", "secret": "pw"}`.
`SecretUse` is one such use with its source resolved; a TaskRequest carries
these, never a value (the core resolves them when it builds the launch).
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass(frozen=True, slots=True)
class SecretUse:
    name: str                # the spec's own name for it ("pw")
    source: str              # its path in the secret store ("db/password")
    env: str | None = None   # delivered as this environment variable...
    path: str | None = None  # ...or as a file at this container path (relative: in the sandbox)


def normalise_source(source: str) -> str:
    """Marathon writes `db/password`, Metronome's examples `/db/password`: one path."""
    return source.strip().strip("/")


def sources(spec: Any) -> dict[str, str]:
    """name -> store path of every secret an app or a job run defines (used or not)."""
    return {name: normalise_source(item.source) for name, item in (spec.secrets or {}).items()}


def _env_uses(env: dict[str, Any], defined: dict[str, str]) -> list[SecretUse]:
    uses = []
    for variable, value in env.items():
        name = getattr(value, "secret", None)
        if name is not None and name in defined:
            uses.append(SecretUse(name, defined[name], env=variable))
    return uses


def app_uses(app: Any) -> list[SecretUse]:
    """The uses of a Marathon AppDefinition (scheduler/services/specs.py)."""
    defined = sources(app)
    uses = _env_uses(app.env, defined)
    for volume in (app.container.volumes if app.container is not None else []):
        if volume.secret is not None and volume.secret in defined:
            uses.append(SecretUse(volume.secret, defined[volume.secret], path=volume.containerPath))
    return uses


def job_uses(run: Any) -> list[SecretUse]:
    """The uses of a Metronome job's `run` (scheduler/jobs/specs.py)."""
    defined = sources(run)
    uses = _env_uses(run.env, defined)
    for volume in run.volumes:
        if volume.secret is not None and volume.secret in defined:
            uses.append(SecretUse(volume.secret, defined[volume.secret], path=volume.container_path))
    return uses


_PRINCIPAL: contextvars.ContextVar[str | None] = contextvars.ContextVar("dockyard_principal", default=None)


def acting_principal() -> str | None:
    """The API caller this change is made for (None: unauthenticated, or not from the API)."""
    return _PRINCIPAL.get()


@contextmanager
def acting_as(principal: str | None) -> Iterator[None]:
    """Run a request's work as `principal`: the secrets it references are checked against it.

    A context variable, so it follows the request into the worker thread that runs the
    manager's call (Starlette copies the context there)."""
    token = _PRINCIPAL.set(principal)
    try:
        yield
    finally:
        _PRINCIPAL.reset(token)
