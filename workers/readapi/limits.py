"""The HTTP protocol of the read API: uvicorn's httptools protocol, with every part of a
request capped before it is kept, and every refusal a JSON 400 (never uvicorn's text/plain).

A share button's request is a line of a few hundred bytes and a few headers. What a client
sends beyond the caps is refused before it is buffered, so no request, however large, makes
this process hold more than the caps or ask Redis for more than 100 counters.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from workers.urls import MAX_URL_LENGTH

# The request line: a batch of 100 URLs of the longest kind (2,048 characters each), a third
# of each percent-escaped, fits; nothing a button sends comes near.
MAX_TARGET_BYTES = 100 * MAX_URL_LENGTH * 5 // 3 + 4096
# Headers together: what proxies commonly accept (nginx's 4 buffers of 8 KiB is 32 KiB); a
# browser sends 1 to 2 KiB, cookies included.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100
# Every route is read with GET: a body has no use, a small one is tolerated (some clients send
# an empty form), a larger one refused.
MAX_BODY_BYTES = 8 * 1024
# A client that has connected, or begun a request, must have sent all of its head within this
# long; a slow trickle of bytes (slowloris) cannot hold a connection open longer.
HEAD_TIMEOUT_SECONDS = 10.0


class TooLarge(Exception):
    """A part of the request is over its cap; the message says which."""


def refusal(message: str) -> bytes:
    """A whole HTTP/1.1 400 answer that closes the connection."""
    body = json.dumps({"error": message}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"access-control-allow-origin: *\r\nx-content-type-options: nosniff\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


class LimitedHttpTools(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._headers = 0
        self._body_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._in_head = False  # a request has begun and its head is not whole yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse("upgrades (websockets, h2c) are not served here")
        except httptools.HttpParserError as exc:
            # A callback's TooLarge reaches here wrapped by the parser; its cause says which.
            cause = exc.__context__ if isinstance(exc.__context__, TooLarge) else None
            self._refuse(str(cause) if cause else "malformed HTTP request")
        except TooLarge as exc:
            self._refuse(str(exc))

    # -- the parser's callbacks, each checking its cap before the part is kept ------------

    def on_message_begin(self) -> None:
        self._head_bytes = self._headers = self._body_bytes = 0
        self._in_head = True
        if self._head_timer is None:
            self._start_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_TARGET_BYTES:
            raise TooLarge(f"request line longer than {MAX_TARGET_BYTES} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        self._headers += 1
        if self._head_bytes > MAX_HEADER_BYTES:
            raise TooLarge(f"headers longer than {MAX_HEADER_BYTES} bytes")
        if self._headers > MAX_HEADERS:
            raise TooLarge(f"more than {MAX_HEADERS} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:
            raise TooLarge(f"a body of more than {MAX_BODY_BYTES} bytes (GET takes none)")
        super().on_body(body)

    # -- refusals -------------------------------------------------------------------------

    def _refuse(self, message: str) -> None:
        """A JSON 400, then the connection closed: what follows in it cannot be trusted."""
        self._refused = True
        self._stop_head_timer()
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(refusal(message))
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's answer, if any comes, goes nowhere
        self.transport.close()

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(f"no whole request within {HEAD_TIMEOUT_SECONDS:g} s")
        else:  # connected and silent (a browser's preconnect): nothing to answer
            self.transport.close()
