"""`dockyard scheduler` with the web UI's routes in its app, for the browser tests.

The same process as `dockyard scheduler ARGS...` (same flags, same start-up, same
gate): only `build_app` is wrapped so that the UI's routes are added when the
scheduler's app does not mount them itself. Run as
`python -m tests.ui.ui_scheduler scheduler ARGS...`.
"""
from __future__ import annotations

import sys

from starlette.applications import Starlette

from scheduler import lifecycle
from scheduler.ui import ui_routes

_build_app = lifecycle.build_app


def build_app_with_ui(ctx) -> Starlette:  # noqa: ANN001 - the scheduler's Context
    app = _build_app(ctx)
    if not any(str(getattr(route, "path", "")).startswith("/ui") for route in app.router.routes):
        app.router.routes.extend(ui_routes(ctx))
    return app


def main() -> int:
    lifecycle.build_app = build_app_with_ui
    import dockyard

    return dockyard.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
