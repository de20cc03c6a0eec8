"""The UI's route table: every path made through the gate with its access level.

READ (viewers and admins): every page, the live stream, the log follow, downloads, the
static files, and the dry-run preview (it changes nothing, as `POST /dockyard/v1/plan`).
WRITE (admins): every form that changes something; a viewer's post is refused by the
gate (403) before it is read. Nothing is OPEN: even `/`, which sends a browser to `/ui/`,
asks for credentials first (the browser's prompt), as every page does.
"""
from __future__ import annotations

import functools
import logging
import mimetypes
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from framework.security.gate import Access, route
from scheduler.ui import actions, pages
from scheduler.ui.render import SECURITY_HEADERS, STATIC
from scheduler.ui.stream import recent_events, ui_events

log = logging.getLogger(__name__)
READ, WRITE = Access.READ, Access.WRITE
Handler = Callable[..., Awaitable[Response]]
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


def _served(handler: Handler, ctx: Any) -> Callable[[Request], Awaitable[Response]]:
    """`handler(request, ctx)` as an endpoint; a failure is a page saying so, logged once."""
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, ctx)
        except Exception as error:  # shown, never swallowed: the page says what failed
            log.exception("%s %s failed", request.method, request.url.path)
            return pages.message(request, ctx, 500, "Something failed", f"{type(error).__name__}: {error}")

    return endpoint


async def static(request: Request, ctx: Any) -> Response:
    """The UI's own files (styles, scripts and their licences), from the package."""
    name = request.path_params["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return pages.message(request, ctx, 404, "Not found", "No such file")
    kind = STATIC_TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind,
                        headers={**SECURITY_HEADERS, "Cache-Control": "private, max-age=86400, immutable"})


async def events(request: Request, ctx: Any) -> Response:
    return ui_events(request, ctx)


TABLE: tuple[tuple[str, Handler, str, Access], ...] = (
    ("/", pages.browser_root, "GET", READ),
    ("/ui", pages.ui_root, "GET", READ),
    ("/ui/", pages.overview, "GET", READ),
    ("/ui/events", events, "GET", READ),
    ("/ui/static/{name}", static, "GET", READ),
    ("/ui/apps", pages.apps, "GET", READ),
    ("/ui/apps/{app_id:path}", pages.app, "GET", READ),
    ("/ui/apps/{app_id:path}", actions.app_action, "POST", WRITE),
    ("/ui/new/app", pages.new_app, "GET", READ),
    ("/ui/new/app", actions.create_app, "POST", WRITE),
    ("/ui/new/app/preview", actions.preview_app, "POST", READ),
    ("/ui/tasks/{task_id}", pages.task, "GET", READ),
    ("/ui/tasks/{task_id}/log", pages.task_log, "GET", READ),
    ("/ui/tasks/{task_id}/download", pages.task_download, "GET", READ),
    ("/ui/jobs", pages.jobs, "GET", READ),
    ("/ui/jobs/{job_id}", pages.job, "GET", READ),
    ("/ui/jobs/{job_id}", actions.job_action, "POST", WRITE),
    ("/ui/new/job", pages.new_job, "GET", READ),
    ("/ui/new/job", actions.create_job, "POST", WRITE),
    ("/ui/deployments", pages.deployments, "GET", READ),
    ("/ui/deployments/{deployment_id}", actions.deployment_action, "POST", WRITE),
    ("/ui/agents", pages.agents, "GET", READ),
    ("/ui/agents/{agent_id}", pages.agent, "GET", READ),
)


def ui_routes(ctx: Any) -> list[Route]:
    """The UI's routes, to add to the scheduler's app as they are (not wrapped in another
    Starlette app: the UI calls the API through `request.app` and its gate). Also starts
    the recorder of the latest events the overview lists."""
    recent_events(ctx)
    merged: dict[str, dict[str, tuple[Handler, Access]]] = {}
    for path, handler, method, access in TABLE:
        merged.setdefault(path, {})[method] = (handler, access)
    made = []
    for path, methods in merged.items():
        if len(methods) == 1:
            method, (handler, access) = next(iter(methods.items()))
            made.append(route(path, _served(handler, ctx), methods=[method], access=access,
                              name=f"ui_{handler.__name__}"))
            continue
        made.append(route(path, _by_method({m: _served(h, ctx) for m, (h, _) in methods.items()}),
                          methods=list(methods), access={m: a for m, (_, a) in methods.items()},
                          name="ui_" + "_".join(h.__name__ for h, _ in methods.values())))
    return made


def _by_method(endpoints: dict[str, Callable[[Request], Awaitable[Response]]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return endpoint
