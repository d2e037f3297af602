"""Start-up of ``workers console``: refuse to start without a users file, build the app, serve
it on the read API's server (workers.web.server: granian, its limits, warm stop and parent
watch) until SIGTERM, registered in the fleet's registry meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from workers.adapters.redisconn import Client, connect
from workers.console import api, history, pages, tasks
from workers.console.access import AccessError, Users
from workers.console.app import Console, SecurityHeaders, health, metrics, refused
from workers.core.settings import Settings
from workers.runtime import logs
from workers.runtime.registry import Registration
from workers.web.server import Limits, ServeError, serve_asgi

# A warm stop waits this long for open answers: a page's event stream never ends by itself.
LIMITS = Limits(graceful_s=5.0)
PROGRAM = "console"


def build(settings: Settings, users: Users, redis: Client | None = None,
          sqs: Any = None) -> Starlette:
    """The app; ``users`` must be readable (the console refuses to start otherwise)."""
    users.check_readable()
    console = Console(settings, redis or connect(settings.redis_url), users, sqs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        background = asyncio.create_task(_background(console))
        yield
        background.cancel()

    static = str(resources.files("workers.console") / "static")
    routes = [*api.routes, *pages.routes, Route("/health", health), Route("/metrics", metrics),
              Mount("/static", StaticFiles(directory=static), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: refused},
                    middleware=[Middleware(SecurityHeaders)])
    app.state.console = console
    return app


async def _background(console: Console) -> None:
    """Resumes replay tasks left by a killed console, and writes the minute's history point
    when no other console has."""
    log = logs.get(program="console")
    while True:
        try:
            await run_in_threadpool(console.tasks.adopt)
            minute = history.current_minute()
            if await run_in_threadpool(console.history.claim, minute):
                rows = await console.snapshots.latest()
                await run_in_threadpool(console.history.record, minute, rows)
        except Exception as exc:  # Redis or SQS away: try again at the next round
            log.warning("console.background_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(tasks.ADOPT_SECONDS)


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
