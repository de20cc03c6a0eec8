"""Who a task runs as, and whether the API's caller may ask for it (Mesos's `run_tasks`).

A task runs as its spec's user (an app's `user`, a job's `run.user`), else as the
framework's user: `--mesos-user`, which the scheduler subscribes with as
`FrameworkInfo.user` (Marathon's flag). It is `nobody` unless given, as Nomad's exec
driver runs tasks: Marathon would take its own user, often root. An agent runs a
command task as `CommandInfo.user`, else `FrameworkInfo.user`, as Mesos does; a task
with an image runs as the spec's user, else as the image's own (`User` in its
config), else root.

Every task is launched under the scheduler's one framework principal, so the master's
`run_tasks` check cannot tell one caller of our API from another. The scheduler
therefore asks the same question about the caller before it stores a spec: may this
principal run tasks as this user? The rules are Mesos's (`--acls FILE`,
framework/security/acls.py): the scheduler's API users are the principals and
`users` the task users. Without `--acls` every caller may ask for any user, as
Mesos without ACLs. A task with an image and no user is checked as the framework's
user, as the master checks it: the image's own user is not known before it is pulled.
"""
from __future__ import annotations

from typing import Iterable

from starlette.requests import Request

from framework.errors import Forbidden
from framework.security.gate import principal_name

FORBIDDEN = "Not Authorized to perform this action!"  # Marathon's 403 message


def task_user(spec_user: str | None, framework_user: str) -> str:
    """The user Mesos is asked to run the task as: the spec's, else the framework's."""
    return spec_user or framework_user


def refused(request: Request, user: str) -> str | None:
    """Why this request's caller may not run tasks as `user`; None when it may."""
    security = getattr(request.app.state, "security", None)
    acls = getattr(security, "acls", None)
    if acls is None:
        return None
    principal = principal_name(request)
    if acls.authorized("run_tasks", principal, user):
        return None
    who = f"Principal '{principal}'" if principal else "An unauthenticated caller"
    return f"{who} may not run tasks as user '{user}' (run_tasks in the scheduler's --acls)"


def check_run_as(request: Request, users: Iterable[tuple[str, str]]) -> None:
    """403 naming each (path, user) the caller may not run tasks as; the spec is not stored."""
    details = [{"path": path, "errors": [why]} for path, user in users if (why := refused(request, user))]
    if details:
        raise Forbidden(f"{FORBIDDEN} {details[0]['errors'][0]}", details)
