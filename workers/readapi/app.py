"""What the read API answers (see SPEC.md, "The read API of link counts"), as an app with no
framework in between: a request costs a dict lookup, the query's parsing and its share of one
pipelined Redis read. ``ReadAPI.respond`` takes a request's method, path, query and headers
and gives its ``Answer``.

granian serves it through RSGI (``ReadAPI.__rsgi__``, granian's own interface: the request's
fields are read straight from hyper's, and one call hands over the whole answer), which costs
this process about a third less CPU a request than ASGI's scope dict and two ``send`` awaits
(`make bench`). ``ReadAPI.__call__`` is the same app over ASGI, for the bench's comparison
with uvicorn, which only speaks ASGI.

Every answer is built from header pairs made once: Access-Control-Allow-Origin on each,
Cache-Control on a 200 of a count, errors as JSON ``{"error": ...}``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

from workers.domain.links.urls import MAX_URL_LENGTH, InvalidURL, normalize_key
from workers.readapi.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_QUERY_BYTES
from workers.readapi.metrics import APIMetrics
from workers.readapi.reader import UNAVAILABLE, CountReader

log = logging.getLogger("workers.readapi")

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
# parsing is most of a request's own cost. Bounded in entries and in characters held, and a
# URL as given longer than a valid one (padded with spaces, which normalization strips) is
# never kept: 10,000 entries of a few hundred characters are a few MB, the most it holds.
KEY_CACHE_ENTRIES = 10_000
KEY_CACHE_CHARS = 4_000_000
ALLOWED = "GET, HEAD, OPTIONS"

# As RSGI takes them: (name, value) in str.
Headers = list[tuple[str, str]]
CORS: Headers = [("access-control-allow-origin", "*"),
                 ("x-content-type-options", "nosniff")]  # JSONP must not be sniffed
JSON = ("content-type", "application/json")
JAVASCRIPT = ("content-type", "text/javascript; charset=utf-8")
HTML = ("content-type", "text/html; charset=utf-8")
PROMETHEUS = ("content-type", "text/plain; version=0.0.4; charset=utf-8")
NO_STORE = ("cache-control", "no-store")
RETRY = ("retry-after", str(RETRY_AFTER_SECONDS))
ALLOW = ("allow", ALLOWED)
CLOSE = ("connection", "close")


@dataclass
class Answer:
    status: int
    headers: Headers  # without content-length, added as it is sent
    body: bytes = b""


class Refusal(Exception):
    """A request we answer with an error: the status and the message of its JSON body."""

    def __init__(self, status: int, message: str, headers: Headers | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


def error(status: int, message: str, *extra: tuple[str, str]) -> Answer:
    return Answer(status, [*CORS, JSON, NO_STORE, *extra],
                  json.dumps({"error": message}).encode())


UNAVAILABLE_ANSWER = error(503, "redis is unavailable; retry shortly", RETRY)
INTERNAL_ERROR = error(500, "internal error")


class KeyCache:
    """URL as given -> its normalized key, least recently used first out, bounded in entries
    and in characters held (a str of ASCII holds a byte a character)."""

    def __init__(self, entries: int = KEY_CACHE_ENTRIES, chars: int = KEY_CACHE_CHARS):
        self.entries, self.chars = entries, chars
        self.held = 0
        self._keys: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, given: object) -> bool:
        return given in self._keys

    def key(self, given: str) -> str:
        """What ``workers links count`` reads for ``given`` (a URL without a scheme reads as
        https: the key drops the scheme); InvalidURL when it cannot count."""
        key = self._keys.get(given)
        if key is not None:
            self._keys.move_to_end(given)
            return key
        key = normalize_key(given)
        if len(given) <= MAX_URL_LENGTH:
            self._keys[given] = key
            self.held += len(given) + len(key)
            while len(self._keys) > self.entries or self.held > self.chars:
                old, old_key = self._keys.popitem(last=False)
                self.held -= len(old) + len(old_key)
        return key


def parse(query: str) -> tuple[list[str], str | None]:
    """The ``url`` values and the ``callback`` of a query string; Refusal when they are bad."""
    if len(query) > MAX_QUERY_BYTES:
        raise Refusal(400, f"request line longer than {MAX_QUERY_BYTES} bytes")
    if not query.isascii():
        raise Refusal(400, "the query must be ASCII, other characters percent-encoded")
    try:
        params = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_PARAMS,
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


def check_head(headers: Headers) -> None:
    """Refusal for headers larger than a browser sends, or a body announced larger than a GET
    may carry (refused before it is read)."""
    size = 0
    for name, value in headers:
        size += len(name) + len(value)
        if name == "content-length" and value.strip().isdigit() \
                and int(value) > MAX_BODY_BYTES:
            # Closed after the answer: the server would otherwise read the unwanted body
            # through to its end, however long the client makes it.
            raise Refusal(400, f"a body of more than {MAX_BODY_BYTES} bytes (GET takes none)",
                          [CLOSE])
    if size > MAX_HEADER_BYTES:
        raise Refusal(400, f"headers longer than {MAX_HEADER_BYTES} bytes", [CLOSE])


class ReadAPI:
    def __init__(self, reader: CountReader, max_age: int):
        self.reader = reader
        self.keys = KeyCache()
        self.metrics = APIMetrics(lambda: reader.round_trips)
        self.cached = [*CORS, ("cache-control", f"public, max-age={max_age}")]
        self.routes: dict[str, Callable[[str], Awaitable[Answer]]] = {
            SHARES_PATH: self.shares, "/health": self.health, "/metrics": self.prometheus,
            "/": self.button}
        self.options = Answer(204, [*CORS, ALLOW, ("access-control-allow-methods", ALLOWED),
                                    ("access-control-allow-headers", "*"),
                                    ("access-control-max-age", "86400")])
        self.page = resources.files("workers.readapi").joinpath("button.html").read_bytes()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        """granian's RSGI: hyper sets Content-Length, and sends no body to a HEAD."""
        started = time.perf_counter()
        path = scope.path
        answer = await self.answer(scope.method, path, scope.query_string,
                                   scope.headers.items())
        protocol.response_bytes(answer.status, answer.headers, answer.body)
        self.metrics.answered(self.route_name(path), answer.status,
                              time.perf_counter() - started)

    def __rsgi_init__(self, loop: Any) -> None:
        """Nothing to start: the Redis check ran before serving."""

    def __rsgi_del__(self, loop: Any) -> None:
        """Nothing here: workers.web.server awaits ``aclose`` once the server stopped."""

    async def aclose(self) -> None:
        """Closes the Redis client's connections."""
        await self.reader.close()

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """ASGI, for the bench's uvicorn (latin-1 as ASGI's headers and query are)."""
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        answer = await self.answer(
            method, path, scope["query_string"].decode("latin-1"),
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]])
        body = answer.body
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in answer.headers]
        if answer.status != 204:
            headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        self.metrics.answered(self.route_name(path), answer.status,
                              time.perf_counter() - started)

    async def answer(self, method: str, path: str, query: str, headers: Headers) -> Answer:
        try:
            return await self.respond(method, path, query, headers)
        except Exception:  # a bug of ours: a JSON 500, never a traceback to the client
            log.exception("links_api.failed")
            return INTERNAL_ERROR

    async def lifespan(self, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Nothing to start (the Redis check ran before serving); at the stop, the Redis
        client's connections are closed."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def respond(self, method: str, path: str, query: str,
                      headers: Headers) -> Answer:
        route = self.routes.get(path)
        if route is None:
            return error(404, f"no such path: {path[:200]}")
        if method == "OPTIONS":
            return self.options
        if method not in ("GET", "HEAD"):
            return error(405, f"method {method[:20]} not allowed; GET, HEAD or OPTIONS", ALLOW)
        try:
            check_head(headers)
            return await route(query)
        except Refusal as refused:
            return error(refused.status, refused.message, *refused.headers)

    def route_name(self, path: str) -> str:
        """A path as /metrics labels it: the route, or ``unknown`` (never the client's text)."""
        return path if path in self.routes else "unknown"

    def keys_of(self, urls: list[str]) -> dict[str, str]:
        """Each distinct URL as given -> its normalized key; Refusal naming the first bad one."""
        keys = {}
        for given in dict.fromkeys(urls):
            try:
                keys[given] = self.keys.key(given)
            except InvalidURL as exc:
                raise Refusal(400, f"invalid url {given[:200]!r}: {exc}") from None
        return keys

    # -- routes ---------------------------------------------------------------------------

    async def shares(self, query: str) -> Answer:
        urls, callback = parse(query)
        keys = self.keys_of(urls)
        try:
            counts = await self.reader.request(list(keys.values()))
        except UNAVAILABLE:
            return UNAVAILABLE_ANSWER
        self.metrics.urls_read(len(counts))
        shares: Any = counts[0] if len(urls) == 1 else dict(zip(keys, counts, strict=True))
        payload = json.dumps({"shares": shares}, separators=(",", ":"))
        if callback is None:
            return Answer(200, [*self.cached, JSON], payload.encode())
        return Answer(200, [*self.cached, JAVASCRIPT], f"{callback}({payload});".encode())

    async def health(self, query: str) -> Answer:
        if await self.reader.ping():
            return Answer(200, [*CORS, NO_STORE, JSON], b'{"status":"ok"}')
        return error(503, "redis is unavailable", RETRY)

    async def prometheus(self, query: str) -> Answer:
        return Answer(200, [*CORS, NO_STORE, PROMETHEUS], self.metrics.exposition())

    async def button(self, query: str) -> Answer:
        return Answer(200, [*self.cached, HTML], self.page)


__all__ = ["Answer", "KeyCache", "ReadAPI", "UNAVAILABLE"]
