"""Each daemon's HTTP endpoint: Prometheus ``/metrics`` and a ``/health`` that says whether the
daemon has polled SQS recently (a daemon stuck anywhere stops polling)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workers import QUEUES
from workers.settings import LONG_POLL_SECONDS

# A healthy daemon polls at least once per long poll; allow for a slow batch and a pause.
STALE_AFTER_SECONDS = 3 * LONG_POLL_SECONDS
# Each queue's processes get their own block of ports: post-sent base+0.., analytics base+100..
PORTS_PER_QUEUE = 100


def port_for(base: int, queue: str, process_num: int) -> int:
    """The port of one process: distinct across queues and supervisord's numprocs."""
    return base + PORTS_PER_QUEUE * QUEUES.index(queue) + process_num


def serve(port: int, last_poll: Callable[[], float]) -> ThreadingHTTPServer:
    """Serves on 127.0.0.1:``port`` from a daemon thread until the process exits."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/health":
                age = time.time() - last_poll()
                ok = age <= STALE_AFTER_SECONDS
                body = json.dumps({"status": "ok" if ok else "stale",
                                   "seconds_since_poll": round(age, 1)}).encode()
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:  # scrapes are not worth a log line
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
