"""Start-up of ``workers console``: refuse to start without a users file, build the app, serve
it on the read API's server (workers.web.server: granian, its limits, warm stop and parent
watch) until SIGTERM, registered in the fleet's registry meanwhile."""

from __future__ import annotations

import json

from workers.console.access import AccessError, Users
from workers.console.app import build
from workers.core.settings import Settings
from workers.runtime.registry import Registration
from workers.web.server import Limits, ServeError, serve_asgi

# A warm stop waits this long for open answers: a page's event stream never ends by itself.
LIMITS = Limits(graceful_s=5.0)
PROGRAM = "console"


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
    registration = Registration(settings.redis_url, settings.host_name, PROGRAM).start()
    try:
        serve_asgi(app, settings.console_host, settings.console_port, limits=LIMITS)
    except ServeError as exc:
        raise StartupError(str(exc)) from None
    finally:
        registration.stop()
