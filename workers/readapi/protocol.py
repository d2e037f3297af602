"""The read API's HTTP/1.1 connections: httptools (llhttp, in C) parses, and each request goes
straight to ``LinksAPI.respond``; no ASGI scope, task or per-header check in between, so the
Python a request costs is this module's few callbacks and the app's own work.

Every part of a request is checked against its cap (workers.readapi.limits) as the parser hands
it over, and a request over one, or malformed, is answered with a JSON 400 and its connection
closed. Answers go out in the order of their requests (pipelining), a HEAD's without its body.
Connections idle past KEEP_ALIVE_SECONDS, or slow to send a request's head, are closed by a
sweep once a second (``sweep``), not by a timer per request.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from collections import deque
from typing import Any, Callable

import httptools

from workers.readapi.app import Answer, LinksAPI, error
from workers.readapi.limits import (
    HEAD_TIMEOUT_SECONDS,
    KEEP_ALIVE_SECONDS,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_PIPELINED,
    MAX_TARGET_BYTES,
    TooLarge,
    refusal,
)

log = logging.getLogger("workers.readapi")
INTERNAL_ERROR = error(500, "internal error")


class Clock:
    """The Date header, made once a second rather than once an answer."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def date_line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: %s\r\n" % email.utils.formatdate(now, usegmt=True).encode()
        return self._line


class Pipelined:
    """One request's place in its connection's queue of answers."""

    __slots__ = ("answer", "head_only", "close", "started", "route")

    def __init__(self, head_only: bool, close: bool, route: str):
        self.answer: Answer | bytes | None = None  # bytes: a refusal, written as it is
        self.head_only, self.close, self.route = head_only, close, route
        self.started = time.perf_counter()


class Connection(asyncio.Protocol):
    def __init__(self, api: LinksAPI, live: set["Connection"], clock: Clock):
        self.api, self.live, self.clock = api, live, clock
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.queue: deque[Pipelined] = deque()
        self.url = b""
        self.head_bytes = self.headers = self.body_bytes = 0
        self.head_since: float | None = None  # when the head being read began
        self.begun = False  # a request's first bytes came (a silent connection is no request)
        self.idle_since = 0.0
        self.closing = False  # no more requests read: refused, told to close, or shutting down
        self.paused = False

    # -- the connection -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.live.add(self)
        self.head_since = self.idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.refuse("upgrades (websockets, h2c) are not served here")
        except httptools.HttpParserError as exc:
            # A callback's TooLarge reaches here wrapped by the parser; its cause says which.
            cause = exc.__context__ if isinstance(exc.__context__, TooLarge) else None
            self.refuse(str(cause) if cause else "malformed HTTP request")
        except TooLarge as exc:
            self.refuse(str(exc))

    def check(self, now: float) -> None:
        """The sweep's look: a head too slow to come, or a connection idle too long."""
        if self.head_since is not None and now - self.head_since > HEAD_TIMEOUT_SECONDS:
            if self.begun:
                self.refuse(f"no whole request within {HEAD_TIMEOUT_SECONDS:g} s")
            else:  # connected and silent (a browser's preconnect): nothing to answer
                self.transport.close()
        elif not self.queue and now - self.idle_since > KEEP_ALIVE_SECONDS:
            self.transport.close()

    def shut(self) -> None:
        """A warm stop: read no more; close once the answers in hand are out."""
        self.closing = True
        if self.transport.is_closing():
            return
        self.transport.pause_reading()
        if not self.queue:
            self.transport.close()

    def refuse(self, message: str) -> None:
        """A JSON 400 after the answers already owed, then the connection closed: what
        follows in it cannot be trusted."""
        self.closing = True
        self.head_since = None
        if self.transport.is_closing():
            return
        self.transport.pause_reading()
        entry = Pipelined(False, True, "refused")  # after the answers still owed, if any
        entry.answer = refusal(message)
        self.queue.append(entry)
        self._flush()

    # -- the parser's callbacks, each checking its cap before the part is kept ------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.head_bytes = self.headers = self.body_bytes = 0
        self.head_since = self.loop.time()
        self.begun = True

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_TARGET_BYTES:
            raise TooLarge(f"request line longer than {MAX_TARGET_BYTES} bytes")
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        self.headers += 1
        if self.head_bytes > MAX_HEADER_BYTES:
            raise TooLarge(f"headers longer than {MAX_HEADER_BYTES} bytes")
        if self.headers > MAX_HEADERS:
            raise TooLarge(f"more than {MAX_HEADERS} headers")
        # A body announced too large is refused before the request is answered; one sent
        # chunked is refused as it comes (on_body).
        if name.lower() == b"content-length" and value.strip().isdigit() \
                and int(value) > MAX_BODY_BYTES:
            raise TooLarge(f"a body of more than {MAX_BODY_BYTES} bytes (GET takes none)")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            raise TooLarge(f"a body of more than {MAX_BODY_BYTES} bytes (GET takes none)")

    def on_headers_complete(self) -> None:
        self.head_since = None
        self.begun = False
        method = self.parser.get_method().decode("latin-1")
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            raise TooLarge("malformed request target") from None
        path = parsed.path.decode("latin-1")
        entry = Pipelined(method == "HEAD", not self.parser.should_keep_alive(),
                          self.api.route_name(path))
        self.queue.append(entry)
        try:
            result = self.api.respond(method, path, parsed.query or b"")
        except Exception:  # a bug of ours: a JSON 500, never a traceback to the client
            log.exception("links_api.failed")
            result = INTERNAL_ERROR
        if isinstance(result, Answer):
            entry.answer = result
            self._flush()
        else:
            result.future.add_done_callback(functools.partial(self._finished, entry,
                                                              result.finish))
        if len(self.queue) >= MAX_PIPELINED and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # -- answers --------------------------------------------------------------------------

    def _finished(self, entry: Pipelined, finish: Callable[[asyncio.Future], Answer],
                  future: asyncio.Future) -> None:
        try:
            entry.answer = finish(future)
        except Exception:
            log.exception("links_api.failed")
            entry.answer = INTERNAL_ERROR
        self._flush()

    def _flush(self) -> None:
        """Writes every answer ready at the head of the queue, in order, in one write."""
        out = []
        date = self.clock.date_line()
        now = time.perf_counter()
        close = False
        while self.queue and self.queue[0].answer is not None:
            entry = self.queue.popleft()
            answer = entry.answer
            if isinstance(answer, bytes):
                out.append(answer)
                self.api.metrics.answered(entry.route, 400, now - entry.started)
            else:
                assert answer is not None
                out.append(answer.encode(date, entry.head_only, entry.close))
                self.api.metrics.answered(entry.route, answer.status, now - entry.started)
            if entry.close:
                close = True
                break
        if self.transport.is_closing():
            return
        if out:
            self.transport.write(b"".join(out))
        if close or (self.closing and not self.queue):
            self.transport.close()
            return
        self.idle_since = self.loop.time()
        if self.paused and len(self.queue) < MAX_PIPELINED:
            self.paused = False
            self.transport.resume_reading()


async def sweep(live: set[Connection], every: float = 1.0) -> None:
    """Once a second: close connections idle too long or too slow to send a request's head."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        now = loop.time()
        for connection in list(live):
            connection.check(now)
