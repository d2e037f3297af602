"""What the read API answers (see SPEC.md, "The read API of link counts"): no framework and
no ASGI in between, so a request costs a dict lookup, the query's parsing and its share of one
pipelined Redis read. ``LinksAPI.respond`` takes a request's method, path and query and gives
an ``Answer`` at once, or a ``Pending`` one when it waits on Redis; the connection
(workers.readapi.protocol) writes it.

Every answer is built from header lines made once: Access-Control-Allow-Origin on each,
Cache-Control on a 200 of a count, errors as JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any, Callable
from urllib.parse import parse_qsl

from workers.links.urls import InvalidURL, normalize_key
from workers.readapi.metrics import APIMetrics
from workers.readapi.reader import UNAVAILABLE, CountReader

SHARES_PATH = "/1/links/shares.json"
# At most this many ``url`` parameters in one request (SPEC).
MAX_URLS = 100
# Parameters of any name: the URLs, the callback, a cache buster (jQuery's ``_``) and a few
# more; a query of thousands of names is refused before any is decoded.
MAX_PARAMS = MAX_URLS + 10
CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,63}")
# Seconds a client should wait before asking again when Redis is away: a restart or a
# failover takes a few.
RETRY_AFTER_SECONDS = 3
# Normalized keys of URLs asked often (a popular page's button on every page view): the
# parsing is most of a request's own cost. 10,000 entries are a few MB.
KEY_CACHE_ENTRIES = 10_000
ALLOWED = b"GET, HEAD, OPTIONS"

# Header lines, each ending in CRLF, joined once.
CORS = (b"access-control-allow-origin: *\r\n"
        b"x-content-type-options: nosniff\r\n")  # JSONP must not be sniffed as anything else
JSON = b"content-type: application/json\r\n"
JAVASCRIPT = b"content-type: text/javascript; charset=utf-8\r\n"
HTML = b"content-type: text/html; charset=utf-8\r\n"
PROMETHEUS = b"content-type: text/plain; version=0.0.4; charset=utf-8\r\n"
NO_STORE = b"cache-control: no-store\r\n"
RETRY = b"retry-after: %d\r\n" % RETRY_AFTER_SECONDS
ALLOW = b"allow: " + ALLOWED + b"\r\n"
STATUS = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


@dataclass
class Answer:
    status: int
    headers: bytes  # header lines, CRLF-terminated, without content-length
    body: bytes = b""

    def encode(self, date: bytes, head_only: bool, close: bool) -> bytes:
        """The whole answer on the wire; a HEAD's without its body (its length all the same)."""
        length = b"" if self.status == 204 else b"content-length: %d\r\n" % len(self.body)
        return b"".join((STATUS[self.status], date, self.headers, length,
                         b"connection: close\r\n" if close else b"", b"\r\n",
                         b"" if head_only else self.body))


@dataclass
class Pending:
    """An answer that waits on ``future``; ``finish`` makes it of the future once done."""

    future: asyncio.Future
    finish: Callable[[asyncio.Future], Answer]


class Refusal(Exception):
    """A request we answer with an error: the status and the message of its JSON body."""

    def __init__(self, status: int, message: str, headers: bytes = b""):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error(status: int, message: str, extra: bytes = b"") -> Answer:
    return Answer(status, CORS + JSON + NO_STORE + extra,
                  json.dumps({"error": message}).encode())


UNAVAILABLE_ANSWER = error(503, "redis is unavailable; retry shortly", RETRY)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def count_key(given: str) -> str:
    """What ``workers links count`` reads for ``given`` (a URL without a scheme reads as
    https: the key drops the scheme); InvalidURL when it cannot count."""
    return normalize_key(given)


def parse(query: bytes) -> tuple[list[str], str | None]:
    """The ``url`` values and the ``callback`` of a query string; Refusal when they are bad."""
    try:
        text = query.decode("ascii")
    except UnicodeDecodeError:
        raise Refusal(400, "the query must be ASCII, other characters percent-encoded") from None
    try:
        params = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARAMS,
                           errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, f"more than {MAX_PARAMS} parameters, or one not UTF-8") from None
    urls = [value for name, value in params if name == "url"]
    callbacks = [value for name, value in params if name == "callback"]
    callback = callbacks[-1] if callbacks else None
    if callback is not None and not CALLBACK.fullmatch(callback):
        raise Refusal(400, "callback must match ^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")
    if not urls:
        raise Refusal(400, "url is required: /1/links/shares.json?url=URL")
    if len(urls) > MAX_URLS:
        raise Refusal(400, f"at most {MAX_URLS} url parameters, not {len(urls)}")
    return urls, callback


def keys_of(urls: list[str]) -> dict[str, str]:
    """Each distinct URL as given -> its normalized key; Refusal naming the first bad one."""
    keys = {}
    for given in dict.fromkeys(urls):
        try:
            keys[given] = count_key(given)
        except InvalidURL as exc:
            raise Refusal(400, f"invalid url {given[:200]!r}: {exc}") from None
    return keys


class LinksAPI:
    def __init__(self, reader: CountReader, max_age: int):
        self.reader = reader
        self.metrics = APIMetrics(lambda: reader.round_trips)
        self.cached = CORS + b"cache-control: public, max-age=%d\r\n" % max_age
        self.routes: dict[str, Callable[[bytes], Answer | Pending]] = {
            SHARES_PATH: self.shares, "/health": self.health, "/metrics": self.prometheus,
            "/": self.button}
        self.options = Answer(204, CORS + ALLOW + b"access-control-allow-methods: " + ALLOWED
                              + b"\r\naccess-control-allow-headers: *\r\n"
                              b"access-control-max-age: 86400\r\n")
        self.page = resources.files("workers.readapi").joinpath("button.html").read_bytes()

    def respond(self, method: str, path: str, query: bytes) -> Answer | Pending:
        route = self.routes.get(path)
        if route is None:
            return error(404, f"no such path: {path[:200]}")
        if method == "OPTIONS":
            return self.options
        if method not in ("GET", "HEAD"):
            return error(405, f"method {method[:20]} not allowed; GET, HEAD or OPTIONS", ALLOW)
        try:
            return route(query)
        except Refusal as refused:
            return error(refused.status, refused.message, refused.headers)

    def route_name(self, path: str) -> str:
        """A path as /metrics labels it: the route, or ``unknown`` (never the client's text)."""
        return path if path in self.routes else "unknown"

    # -- routes ---------------------------------------------------------------------------

    def shares(self, query: bytes) -> Pending:
        urls, callback = parse(query)
        keys = keys_of(urls)

        def finish(read: asyncio.Future) -> Answer:
            if read.exception() is not None:
                return UNAVAILABLE_ANSWER
            counts = read.result()
            self.metrics.urls_read(len(counts))
            shares: Any = counts[0] if len(urls) == 1 else dict(zip(keys, counts, strict=True))
            payload = json.dumps({"shares": shares}, separators=(",", ":"))
            if callback is None:
                return Answer(200, self.cached + JSON, payload.encode())
            return Answer(200, self.cached + JAVASCRIPT, f"{callback}({payload});".encode())

        return Pending(self.reader.request(list(keys.values())), finish)

    def health(self, query: bytes) -> Pending:
        def finish(ping: asyncio.Future) -> Answer:
            if ping.result():
                return Answer(200, CORS + NO_STORE + JSON, b'{"status":"ok"}')
            return error(503, "redis is unavailable", RETRY)

        return Pending(asyncio.ensure_future(self.reader.ping()), finish)

    def prometheus(self, query: bytes) -> Answer:
        return Answer(200, CORS + NO_STORE + PROMETHEUS, self.metrics.exposition())

    def button(self, query: bytes) -> Answer:
        return Answer(200, self.cached + HTML, self.page)


__all__ = ["Answer", "LinksAPI", "Pending", "UNAVAILABLE"]
