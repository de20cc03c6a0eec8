"""The scheduler's web UI at `/ui/` (docs/ui.md).

Server-rendered pages (Jinja2, autoescaped) over the scheduler's own domain, read in
process; changes made as the scheduler's own REST calls, in process, as the person
clicking; live updates from one merged event stream per page; htmx (vendored under
`static/`, with its licence) swaps the refreshed parts. Nothing is built at install
time and the browser fetches nothing from anywhere else.

    app.router.routes.extend(ui_routes(ctx))    # in scheduler/api/app.py's build_app
"""
from scheduler.ui.routes import ui_routes

__all__ = ["ui_routes"]
