"""Start-up of ``workers links serve``: refuse a Redis that may evict, bind the port so several
processes can share it, and serve the app on uvicorn with uvloop and httptools.

Why this stack (measured; README.rst, "The read API"): uvicorn's httptools protocol on uvloop
parses a request in C and hands it to the app with little Python in between, redis-py's
asyncio client with hiredis parses Redis's answers in C, and the app itself has no framework.
"""

from __future__ import annotations

import json
import logging
import socket
from types import FrameType
from typing import Any

import uvicorn

from workers.links import LinkCounter, connect
from workers.readapi import reader as readers
from workers.readapi.app import LinksAPI
from workers.readapi.limits import LimitedHttpTools
from workers.settings import Settings

# Connections waiting to be accepted: a burst of new connections from a CDN's edges must not
# be refused while the loop is busy (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096
# Idle keep-alive connections close after this long: a CDN or a load balancer reuses them
# within it; a browser's idle tab does not keep one open for nothing.
KEEP_ALIVE_SECONDS = 15
# supervisord's SIGTERM: answers in flight finish within this, then the process exits.
GRACEFUL_SECONDS = 10


class WarmServer(uvicorn.Server):
    """uvicorn's server, whose warm stop on SIGTERM or SIGINT exits 0 as the daemons' does
    (uvicorn raises the signal again once it has shut down, an exit status of -15)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


class StartupError(Exception):
    """Why the server will not start; one line naming what to fix."""


def _check_redis(client: Any) -> None:
    """Refuses a Redis that may evict: evicting an idempotency mark counts a redelivery twice
    (SPEC.md, "Redis in production"). The one place the server checks its Redis at start.

    TODO(redisconn): at merge, call workers.redisconn's check here instead of the lines
    below (the same rule for the daemons and the server, one message).
    """
    info = client.info("memory")  # INFO works where managed services forbid CONFIG
    nodes = info.values() if all(isinstance(v, dict) for v in info.values()) else [info]
    for node in nodes:  # a cluster answers per node
        policy = node.get("maxmemory_policy")
        if policy != "noeviction":
            raise StartupError(f"Redis maxmemory-policy is {policy!r}; links serve needs "
                               "noeviction (set maxmemory-policy noeviction)")


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's port, bound with SO_REUSEPORT: every `links serve` process binds it, and the
    kernel spreads new connections among them (supervisord starts them like any daemon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def build_app(settings: Settings) -> LinksAPI:
    """The app on a client of its own; the counter layout is LinkCounter's, so the API reads
    the very (hash, field) the daemons write."""
    layout = LinkCounter(connect(settings.redis_url), settings.link_buckets)
    _check_redis(layout.client)
    return LinksAPI(readers.CountReader(readers.connect(settings.redis_url), layout.slot),
                    settings.shares_max_age)


def serve(settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT, then finishes the answers in flight."""
    app = build_app(settings)
    sock = listening_socket(settings.links_api_host, settings.links_api_port)
    config = uvicorn.Config(
        # No proxy headers: nothing here reads the client's address, so X-Forwarded-For is
        # neither trusted nor parsed (uvicorn's default middleware costs every request).
        app, loop="uvloop", http=LimitedHttpTools, lifespan="off", access_log=False,
        proxy_headers=False,
        log_level=logging.WARNING, server_header=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS, backlog=LISTEN_BACKLOG)
    host, port = sock.getsockname()[:2]
    print(json.dumps({"event": "links_api.listening", "url": f"http://{host}:{port}/"}),
          flush=True)
    WarmServer(config).run(sockets=[sock])
