"""A fake HTTP peer: a real threaded server (stdlib http.server) on a loopback port.

Subclasses answer in ``answer``. Every request is recorded; a test can script error answers
(``fail``), slow every answer (``delay``), make it hang, hold one answer until ``release``, or
drop a connection without answering (``answer`` raises ``Drop``). One thread per connection:
a held or slow answer never blocks another request.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# A hanging fake answers after this long at most, or at once when it is stopped.
HANG_SECONDS = 30
# How often a held answer looks whether its client has gone.
DISCONNECT_POLL_SECONDS = 0.05

Reply = tuple[int, dict[str, str], Any]


class Drop(Exception):
    """Raised by ``answer``: the connection is reset, no answer is sent."""


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    connection: socket.socket | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def client_gone(self) -> bool:
        """Whether the client closed its end (a timeout on its side)."""
        if self.connection is None:
            return False
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


@dataclass
class FakeServer:
    """A threaded HTTP server in a daemon thread; subclasses answer in ``answer``."""

    requests: list[Request] = field(default_factory=list)
    hanging: bool = False
    delay: float = 0.0  # seconds every answer takes: a slow peer
    record_requests: bool = True  # off for a long-lived one: ``requests`` would only grow
    _scripted: list[Reply] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)
    _holds: list[threading.Event] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> "FakeServer":
        """Listens on 127.0.0.1:``port`` (0: a free one)."""
        fake = self

        class Handler(_Handler):
            def reply(self, request: Request) -> Reply:
                return fake._respond(request)

        self._released.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__,
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeServer":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, status: int, headers: dict[str, str] | None = None, times: int = 1,
             message: str | None = None) -> None:
        """The next ``times`` requests get ``status`` (in the network's error shape)."""
        with self._lock:
            self._scripted.extend([(status, headers or {}, message)] * times)

    # -- held answers -----------------------------------------------------------------------

    def hold(self, request: Request, until_client_gone: bool = False) -> None:
        """Blocks this request's answer until ``release`` or ``stop`` (or, with
        ``until_client_gone``, until its client closes the connection)."""
        released = threading.Event()
        with self._lock:
            self._holds.append(released)
        try:
            while not (released.wait(DISCONNECT_POLL_SECONDS) or self._released.is_set()):
                if until_client_gone and request.client_gone():
                    return
        finally:
            with self._lock:
                if released in self._holds:
                    self._holds.remove(released)

    @property
    def held(self) -> int:
        """How many answers are held now."""
        with self._lock:
            return len(self._holds)

    def release(self) -> int:
        """Lets every held answer go; how many there were."""
        with self._lock:
            holds, self._holds = self._holds, []
        for released in holds:
            released.set()
        return len(holds)

    # -- answering --------------------------------------------------------------------------

    def passthrough(self, request: Request) -> bool:
        """Requests answered at once, untouched by ``fail``, ``delay`` and ``hanging``."""
        return False

    def _respond(self, request: Request) -> Reply:
        if self.passthrough(request):
            return self.answer(request)
        with self._lock:
            if self.record_requests:
                self.requests.append(request)
            scripted = self._scripted.pop(0) if self._scripted else None
        if self.hanging:
            self._released.wait(HANG_SECONDS)
            return 503, {}, {"message": "hung"}
        if self.delay:
            self._released.wait(self.delay)
        if scripted is not None:
            status, headers, message = scripted
            return status, headers, self.error_body(request, status, message)
        return self.answer(request)

    def answer(self, request: Request) -> Reply:
        raise NotImplementedError

    def error_body(self, request: Request, status: int, message: str | None) -> Any:
        return {"message": message or f"error {status}"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs

    def reply(self, request: Request) -> Reply:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        request = Request(self.command, url.path, parse_qsl(url.query, keep_blank_values=True),
                          dict(self.headers.items()), body, self.connection)
        try:
            status, headers, payload = self.reply(request)
        except Drop:
            self._reset()
            return
        if payload is None:
            data = b""
        else:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            # Date as the peer gives it (a network's own clock), else now, as every server.
            self.send_response_only(status)
            self.send_header("Server", self.version_string())
            given = {k.lower(): v for k, v in headers.items()}
            if "date" not in given:
                self.send_header("Date", self.date_time_string())
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout): nothing to answer
            self.close_connection = True

    def _reset(self) -> None:
        """Closes the connection with a RST: the client sees a reset, not an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass
