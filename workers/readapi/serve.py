"""Start-up of ``workers links serve``: refuse a Redis that may evict, then serve the app on
workers.web.server (granian on uvloop) until a warm stop.

Why this stack (measured; docs/readapi.rst, "The read API of link counts"): a well-kept HTTP server
bounds what a client can make a process hold (the head, pipelined answers, requests in
flight), and granian's hyper does it in Rust at more requests a second than uvicorn's
httptools protocol; redis-py's asyncio connection with hiredis parses Redis's answers in C;
between them there is only the app, no framework.
"""

from __future__ import annotations

import logging
from typing import Any

from workers.adapters.redisconn import EvictionPolicyError, check_noeviction, connect
from workers.core.settings import LINKS_API_PROGRAM, Settings
from workers.domain.links.counter import LinkCounter
from workers.readapi import reader as readers
from workers.readapi.app import ReadAPI
from workers.runtime.registry import Registration
from workers.web.server import ServeError, check_bindable, serve_asgi

# Through the standard library's logging, which workers.runtime.logs renders as our JSON lines.
log = logging.getLogger("workers.readapi")


class StartupError(Exception):
    """Why the server will not start; one line naming what to fix."""


def _check_redis(client: Any) -> None:
    """Refuses a Redis that may evict: evicting an idempotency mark counts a redelivery twice
    (SPEC.md, "Redis in production"); the daemons' own check, and its one-line reason."""
    try:
        check_noeviction(client)
    except EvictionPolicyError as exc:
        raise StartupError(str(exc)) from None


def build_app(settings: Settings) -> ReadAPI:
    """The app on a client of its own; the counter layout is LinkCounter's, so the API reads
    the very (hash, field) the daemons write."""
    layout = LinkCounter(connect(settings.redis_url), settings.link_buckets)
    _check_redis(layout.client)
    return ReadAPI(readers.CountReader(readers.connect(settings.redis_url), layout.slot),
                    settings.shares_max_age)


def serve(settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT, or the parent process dies; then finishes the answers
    in flight and exits."""
    api = build_app(settings)
    host, port = settings.links_api_host, settings.links_api_port
    try:
        check_bindable(host, port)
    except ServeError as exc:
        raise StartupError(str(exc)) from None
    log.info("links_api.listening", extra={"url": f"http://{host}:{port}/"})
    # In the fleet's registry while it serves (docs/operations.rst, "The fleet across hosts").
    registration = Registration(settings.redis_url, settings.host_name,
                                LINKS_API_PROGRAM).start()
    try:
        reason = serve_asgi(api, host, port)
    except ServeError as exc:
        raise StartupError(str(exc)) from None
    finally:
        registration.stop()
    log.info("links_api.stopped", extra={"reason": reason})
