"""Each daemon's HTTP endpoint: Prometheus ``/metrics`` and a ``/health`` that says whether every
lane of the daemon is still polling SQS (workers/runtime/liveness.py).

A client gets a few seconds to send its whole request, and only so many connections are served
at once: half-sent requests must not hold threads (and a daemon's memory) indefinitely.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.exposition import choose_encoder

from workers.core.events import declaration

# Each queue's processes get their own block of ports (its declared port_block): post-sent
# base+0.., analytics base+100..
PORTS_PER_QUEUE = 100
# A scrape sends its request in one packet; a client still sending after this long is gone or
# hostile, and is dropped.
REQUEST_SECONDS = 5
# Connections served at once; more are closed at once. A Prometheus or two and `workers stats`
# need a handful; each held connection is a thread.
MAX_CONNECTIONS = 16

Health = Callable[[], "tuple[bool, dict[str, Any]]"]


def port_for(base: int, queue: str, process_num: int) -> int:
    """The port of one process: distinct across queues and supervisord's numprocs."""
    return base + PORTS_PER_QUEUE * declaration(queue).port_block + process_num


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side that fails once a deadline has passed: a socket timeout alone
    restarts with every byte, so a client sending one byte every few seconds would never go."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not received in time")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    timeout = REQUEST_SECONDS  # the socket's, until the request's deadline takes over
    health: Health

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + REQUEST_SECONDS
        self.rfile.close()  # the plain reader super() made; the socket stays open
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/metrics":
            # OpenMetrics when the scraper asks for it (Prometheus does): the only exposition
            # that carries the duration histogram's exemplars (trace ids, tracing on).
            accept = self.headers.get("Accept", "")
            encode, content_type = (choose_encoder(accept) if "openmetrics" in accept
                                    else (generate_latest, CONTENT_TYPE_LATEST))
            self._send(200, encode(REGISTRY), content_type)
        elif self.path == "/health":
            ok, body = self.health()
            self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.connection.settimeout(REQUEST_SECONDS)  # a client that does not read is dropped too
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:  # scrapes (and dropped clients): no log line
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[_Handler]):
        if ":" in address[0]:  # WORKERS_METRICS_HOST=:: or another IPv6 address
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # full: refuse rather than queue
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nothing else will free the slot
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is not worth a traceback on stderr


def serve(port: int, health: Health, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serves on ``host``:``port`` from a daemon thread until the process exits."""
    handler = type("Handler", (_Handler,), {"health": staticmethod(health)})
    server = _Server((host, port), handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
