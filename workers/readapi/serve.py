"""Start-up of ``workers links serve``: refuse a Redis that may evict, bind the port so several
processes can share it, and serve the app on uvloop until a warm stop.

Why this stack (measured; README.rst, "The read API of link counts"): uvloop's event loop and
httptools' parser are C (the two uvicorn is fastest with), redis-py's asyncio connection with
hiredis parses Redis's answers in C, and between them there is only workers.readapi.protocol and
the app: no ASGI server's per-request scope, task and header checks, no framework.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from typing import Any

import uvloop

from workers.links.counter import LinkCounter
from workers.peers.redisconn import EvictionPolicyError, check_noeviction, connect
from workers.peers.registry import Registration
from workers.readapi import reader as readers
from workers.readapi.app import LinksAPI
from workers.readapi.protocol import Clock, Connection, sweep
from workers.settings import LINKS_API_PROGRAM, Settings

# Connections waiting to be accepted: a burst of new connections from a CDN's edges must not
# be refused while the loop is busy (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096
# supervisord's SIGTERM: answers in flight finish within this, then the process exits.
GRACEFUL_SECONDS = 10


class StartupError(Exception):
    """Why the server will not start; one line naming what to fix."""


def _check_redis(client: Any) -> None:
    """Refuses a Redis that may evict: evicting an idempotency mark counts a redelivery twice
    (SPEC.md, "Redis in production"); the daemons' own check, and its one-line reason."""
    try:
        check_noeviction(client)
    except EvictionPolicyError as exc:
        raise StartupError(str(exc)) from None


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
    """Serves until SIGTERM or SIGINT, then finishes the answers in flight and exits."""
    api = build_app(settings)
    sock = listening_socket(settings.links_api_host, settings.links_api_port)
    host, port = sock.getsockname()[:2]
    print(json.dumps({"event": "links_api.listening", "url": f"http://{host}:{port}/"}),
          flush=True)
    # In the fleet's registry while it serves (README.rst, "The fleet across hosts").
    registration = Registration(settings.redis_url, settings.host_name,
                                LINKS_API_PROGRAM).start()
    try:
        uvloop.run(_serve(api, sock))
    finally:
        registration.stop()


async def _serve(api: LinksAPI, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    live: set[Connection] = set()
    clock = Clock()
    server = await loop.create_server(lambda: Connection(api, live, clock), sock=sock,
                                      backlog=LISTEN_BACKLOG)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = loop.create_task(sweep(live))
    await stop.wait()
    # A warm stop: accept no more (the other processes on the port take new connections),
    # close idle connections, let the others finish their answers, then go.
    server.close()
    for connection in list(live):
        connection.shut()
    deadline = loop.time() + GRACEFUL_SECONDS
    while live and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for connection in list(live):
        connection.transport.abort()
    sweeper.cancel()
    await api.reader.close()
