"""The ASGI application of the read API: no framework, so a request costs a dict lookup, the
query's parsing and one pipelined Redis read (see SPEC.md, "The read API of link counts").

Every answer is built here, headers included, from lists made once: Access-Control-Allow-Origin
on each, Cache-Control on a 200 of a count, errors as JSON ``{"error": ...}``.
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

from workers.readapi.metrics import APIMetrics
from workers.readapi.reader import UNAVAILABLE, CountReader
from workers.urls import InvalidURL, normalize_key

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

Headers = list[tuple[bytes, bytes]]
CORS: Headers = [(b"access-control-allow-origin", b"*"),
                 (b"x-content-type-options", b"nosniff")]  # JSONP must not be sniffed as HTML
JSON = (b"content-type", b"application/json")
JAVASCRIPT = (b"content-type", b"text/javascript; charset=utf-8")
NO_STORE = (b"cache-control", b"no-store")


class Refusal(Exception):
    """A request we answer with an error: the status and the message of its JSON body."""

    def __init__(self, status: int, message: str, headers: Headers | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


@dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes = b""


def error(status: int, message: str, extra: Headers | None = None) -> Answer:
    body = json.dumps({"error": message}).encode()
    return Answer(status, [*CORS, JSON, NO_STORE, *(extra or []),
                           (b"content-length", b"%d" % len(body))], body)


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
    """The ASGI app: ``await app(scope, receive, send)`` for each HTTP request."""

    def __init__(self, reader: CountReader, max_age: int):
        self.reader = reader
        self.metrics = APIMetrics(lambda: reader.round_trips)
        self.cached = [*CORS, (b"cache-control", b"public, max-age=%d" % max_age)]
        self.routes: dict[str, Callable[[dict[str, Any]], Awaitable[Answer]]] = {
            SHARES_PATH: self.shares, "/health": self.health, "/metrics": self.prometheus,
            "/": self.button}
        self.options = Answer(204, [*CORS, (b"allow", ALLOWED),
                                    (b"access-control-allow-methods", ALLOWED),
                                    (b"access-control-allow-headers", b"*"),
                                    (b"access-control-max-age", b"86400")])
        self.page = resources.files("workers.readapi").joinpath("button.html").read_bytes()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are refused by the protocol
            return
        started = time.perf_counter()
        answer = await self.answer(scope)
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})
        route = scope["path"] if scope["path"] in self.routes else "unknown"
        self.metrics.answered(route, answer.status, time.perf_counter() - started)

    async def answer(self, scope: dict[str, Any]) -> Answer:
        path = scope["path"]
        route = self.routes.get(path)
        if route is None:
            answer = error(404, f"no such path: {path[:200]}")
        elif scope["method"] == "OPTIONS":
            answer = self.options
        elif scope["method"] not in ("GET", "HEAD"):
            answer = error(405, f"method {scope['method'][:20]} not allowed; GET, HEAD or "
                                "OPTIONS", [(b"allow", ALLOWED)])
        else:
            try:
                answer = await route(scope)
            except Refusal as refused:
                answer = error(refused.status, refused.message, refused.headers)
        return answer

    # -- routes ---------------------------------------------------------------------------

    async def shares(self, scope: dict[str, Any]) -> Answer:
        urls, callback = parse(scope["query_string"])
        keys = keys_of(urls)
        try:
            counts = await self.reader.counts(list(keys.values()))
        except UNAVAILABLE:
            raise Refusal(503, "redis is unavailable; retry shortly",
                          [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)]) from None
        self.metrics.urls_read(len(counts))
        shares: Any = counts[0] if len(urls) == 1 else dict(zip(keys, counts, strict=True))
        payload = json.dumps({"shares": shares}, separators=(",", ":"))
        if callback is None:
            return self._ok(payload.encode(), JSON)
        return self._ok(f"{callback}({payload});".encode(), JAVASCRIPT)

    async def health(self, scope: dict[str, Any]) -> Answer:
        if await self.reader.ping():
            return self._fresh(b'{"status":"ok"}', JSON)
        raise Refusal(503, "redis is unavailable", [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)])

    async def prometheus(self, scope: dict[str, Any]) -> Answer:
        return self._fresh(self.metrics.exposition(),
                           (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"))

    async def button(self, scope: dict[str, Any]) -> Answer:
        return self._ok(self.page, (b"content-type", b"text/html; charset=utf-8"))

    def _ok(self, body: bytes, content_type: tuple[bytes, bytes]) -> Answer:
        """A 200 a CDN may keep for WORKERS_SHARES_MAX_AGE."""
        return Answer(200, [*self.cached, content_type, (b"content-length", b"%d" % len(body))],
                      body)

    def _fresh(self, body: bytes, content_type: tuple[bytes, bytes]) -> Answer:
        """A 200 nobody may keep: health and metrics are about this process, now."""
        return Answer(200, [*CORS, NO_STORE, content_type,
                            (b"content-length", b"%d" % len(body))], body)
