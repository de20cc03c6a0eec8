"""`--build DIR` of `app deploy` and `job run`: build the directory's Dockerfile into an image,
then deploy the image it made, pinned by digest (a new digest is a new version: a rolling
upgrade).

The build runs as `dockyard image build --json` in its own process (the scheduler's package
never imports the executor's), with the same client settings, so under `dockyard up` the image
lands in every agent's store (executor/images/dockerfile/, docs/images.md); its progress goes
to this terminal's stderr as it happens.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from framework.local.agent.model import dockyard_argv
from framework.security import client as client_settings


def image_tag(owner_id: str) -> str:
    """`/shop/web` -> `shop/web:latest`: a reference name made of the app's or job's id."""
    name = owner_id.strip("/").lower().replace(".", "-") or "app"
    return f"{name}:latest"


def build(directory: str, tag: str, config: str | None, push: bool) -> str:
    """Build `directory` as `tag` and return the pinned reference (`name@sha256:...`)."""
    if not Path(directory).is_dir():
        raise click.ClickException(f"{directory}: no such directory to build (it needs a Dockerfile)")
    found = client_settings.find(config)
    env = {**os.environ, **({"DOCKYARD_CONFIG": str(found)} if found is not None else {})}
    argv = dockyard_argv("image", "build", "--json", "-t", tag, *(["--push"] if push else []), directory)
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    except ValueError:
        result = {}
    if done.returncode != 0 or "reference" not in result:
        why = result.get("error") or f"`dockyard image build` exited with {done.returncode}"
        raise click.ClickException(f"the build of {directory} failed: {why}")
    return str(result["reference"])


def with_app_image(spec: dict[str, Any], reference: str) -> dict[str, Any]:
    """The app definition running `reference` (its container's image replaced, or a MESOS
    container made for it)."""
    container = dict(spec.get("container") or {"type": "MESOS"})
    container["docker"] = {**(container.get("docker") or {}), "image": reference}
    return {**spec, "container": container}


def with_job_image(spec: dict[str, Any], reference: str) -> dict[str, Any]:
    """The job spec whose runs use `reference` (Metronome's `run.docker.image`)."""
    run = dict(spec.get("run") or {})
    run["docker"] = {**(run.get("docker") or {}), "image": reference}
    return {**spec, "run": run}
