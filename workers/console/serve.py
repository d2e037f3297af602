"""Start-up of ``workers console``: refuse to start without a users file, build the app, serve
it with uvicorn until SIGTERM (uvicorn's warm stop: finish the answers in flight).

``serve_asgi`` is the one place that knows the ASGI server; the read API's shared serving
module replaces it at merge."""

from __future__ import annotations

import json
from typing import Any

import uvicorn

from workers.console.access import AccessError, Users
from workers.console.app import build
from workers.settings import Settings

# uvicorn waits this long for open answers (a stream never ends by itself) at a warm stop.
GRACEFUL_SECONDS = 5


class StartupError(Exception):
    """Why the console will not start; one line naming what to fix."""


def serve(settings: Settings) -> None:
    if not settings.console_users:
        raise StartupError("WORKERS_CONSOLE_USERS is not set: the console needs a users file "
                           "(`workers console adduser NAME --role operator` writes one)")
    users = Users(settings.console_users)
    try:
        app = build(settings, users)
    except AccessError as exc:
        raise StartupError(str(exc)) from None
    print(json.dumps({"event": "console.listening",
                      "url": f"http://{settings.console_host}:{settings.console_port}/"}),
          flush=True)
    serve_asgi(app, settings.console_host, settings.console_port)


def serve_asgi(app: Any, host: str, port: int) -> None:
    """Serves an ASGI app on host:port until SIGTERM or SIGINT."""
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SECONDS, lifespan="on")
