"""Serving an app: the read API (``workers links serve``, through granian's RSGI) and the
operators' console (an ASGI app) run on this, so the HTTP server, its limits, the shared port
and the warm stop are chosen once.

The server is granian (Rust: hyper parses HTTP/1.1, tokio does the I/O), embedded in this
process on uvloop, where the app and its Redis client run. The project parses no HTTP itself.
What a client cannot do to a process (SPEC.md, "The read API of link counts"), and why:

* pipeline requests and never read the answers: hyper answers one request of a connection at
  a time and reads no further while an answer waits to be written (write backpressure);
* send a head that never ends: hyper holds at most ``Limits.head_bytes`` of it, then answers
  431 or 400 and closes; a head must be whole within ``Limits.head_timeout_s``;
* open thousands of requests at once: past ``Limits.in_flight`` running in the app, the
  process accepts no more until some finish (they wait in the kernel's backlog).

Several processes (supervisord's ``numprocs``) serve one port: on Linux granian binds it with
``SO_REUSEPORT`` and the kernel spreads new connections among them. SIGTERM or SIGINT, or the
parent process dying (``Shutdown.watch_parent``, as the daemons do), is a warm stop: no new
connections, idle ones closed, answers in flight finished within ``Limits.graceful_s``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from dataclasses import dataclass
from typing import Any

import uvloop
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server

from workers.runtime.shutdown import Shutdown

# Connections waiting to be accepted: a burst of new connections from a CDN's edges must not
# be refused while the loop is busy (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096


@dataclass(frozen=True)
class Limits:
    # A request's line and headers together. hyper caps a request target at 65,534 bytes (the
    # http crate's Uri) whatever this is; 96 KiB leaves that and 32 KiB of headers room.
    head_bytes: int = 96 * 1024
    # Seconds to send a whole head once a connection is open or idle (slowloris).
    head_timeout_s: float = 10.0
    # Requests one process runs in the app at once; past it, it accepts no more connections.
    in_flight: int = 1024
    # supervisord's SIGTERM: answers in flight finish within this, then the process exits.
    graceful_s: float = 10.0


class ServeError(Exception):
    """The server could not start or stopped by itself; one line saying why."""


def serve_asgi(app: Any, host: str, port: int, *, limits: Limits = Limits()) -> str:
    """Serves ``app`` on ``host:port`` until a warm stop: through RSGI when it has
    ``__rsgi__`` (its ``aclose()`` awaited once the server stopped), else as ASGI 3, lifespan
    included. Returns why it stopped (``SIGTERM``, ``SIGINT``, ``parent.died``); ServeError
    when it cannot."""
    check_bindable(host, port)
    shutdown = Shutdown()
    shutdown.watch_parent()
    return uvloop.run(_serve(app, host, port, limits, shutdown))


def check_bindable(host: str, port: int) -> None:
    """ServeError unless ``host:port`` can be bound as granian binds it (with SO_REUSEPORT,
    so beside the other processes serving it): granian's own failure is a Rust panic."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def _serve(app: Any, host: str, port: int, limits: Limits, shutdown: Shutdown) -> str:
    loop = asyncio.get_running_loop()
    interface = Interfaces.RSGI if hasattr(app, "__rsgi__") else Interfaces.ASGI
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.request, sig.name)
    server = Server(
        app, address=host, port=port, interface=interface, http=HTTPModes.http1,
        websockets=False, backlog=LISTEN_BACKLOG, backpressure=limits.in_flight,
        http1_settings=HTTP1Settings(header_read_timeout=int(limits.head_timeout_s * 1000),
                                     keep_alive=True, max_buffer_size=limits.head_bytes),
        log_enabled=False)
    serving = asyncio.ensure_future(server.serve())
    stopped = loop.run_in_executor(None, shutdown.watch)
    await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():  # the server ended by itself: a failure supervisord should restart
        shutdown.request("server.exited")
        serving.result()
        raise ServeError("the HTTP server stopped by itself")
    server.stop()
    try:
        await asyncio.wait_for(serving, limits.graceful_s)
    except asyncio.TimeoutError:
        pass  # answers still unwritten after the grace period are dropped with the process
    if interface is Interfaces.RSGI and hasattr(app, "aclose"):
        await app.aclose()  # RSGI has no lifespan of its own
    return await stopped
