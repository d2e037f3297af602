"""Fake HTTP peers for tests: real servers (stdlib http.server) on free loopback ports.

``FakePusher`` checks every request's signature with the app secret as Pusher's HTTP API does,
and records the events it accepted. ``FakeSocialAPIs`` serves Twitter/X v2, the Facebook Graph
API and LinkedIn's socialActions with their real response shapes, checks the bearer token, and
can be told to answer an error status (with headers), to answer slowly, or to hang.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# A hanging fake answers after this long at most, or at once when it is stopped.
HANG_SECONDS = 30

Reply = tuple[int, dict[str, str], Any]


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class FakeServer:
    """A threaded HTTP server in a daemon thread; subclasses answer in ``answer``."""

    requests: list[Request] = field(default_factory=list)
    hanging: bool = False
    delay: float = 0.0  # seconds every answer takes: a slow peer
    _scripted: list[Reply] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> "FakeServer":
        fake = self

        class Handler(_Handler):
            def reply(self, request: Request) -> Reply:
                return fake._respond(request)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__,
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

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

    def _respond(self, request: Request) -> Reply:
        with self._lock:
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
                          dict(self.headers.items()), body)
        status, headers, payload = self.reply(request)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout): nothing to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


# -- Pusher -----------------------------------------------------------------------------------

# Pusher refuses a request whose auth_timestamp is more than 600 s from its clock.
PUSHER_CLOCK_SKEW_SECONDS = 600
# ... and an event whose data is over 10 kB.
PUSHER_MAX_DATA_BYTES = 10240


@dataclass
class FakePusher(FakeServer):
    app_id: str = "4242"
    key: str = "fake-app-key"
    secret: str = "fake-app-secret-0123456789"
    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The PUSHER_* environment of a daemon that should talk to this fake."""
        return {"PUSHER_APP_ID": self.app_id, "PUSHER_KEY": self.key,
                "PUSHER_SECRET": self.secret, "PUSHER_HOST": "127.0.0.1",
                "PUSHER_PORT": str(self.port), "PUSHER_SSL": "false"}

    def answer(self, request: Request) -> Reply:
        problem = self.check(request)
        if problem:
            with self._lock:
                self.rejected.append(problem)
            return 401, {}, problem.encode()
        event = json.loads(request.body)
        if len(event["data"].encode()) > PUSHER_MAX_DATA_BYTES:
            return 413, {}, b"Payload too large"
        with self._lock:
            self.events.append({"name": event["name"], "channels": event["channels"],
                                "data": json.loads(event["data"])})
        return 200, {}, {}

    def check(self, request: Request) -> str | None:
        """Why Pusher would refuse this request (None: it is properly signed)."""
        if request.method != "POST" or request.path != f"/apps/{self.app_id}/events":
            return f"unexpected {request.method} {request.path}"
        params = dict(request.query)
        signature = params.pop("auth_signature", "")
        if params.get("auth_key") != self.key:
            return "unknown auth_key"
        if params.get("auth_version") != "1.0":
            return "auth_version must be 1.0"
        stamp = params.get("auth_timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > PUSHER_CLOCK_SKEW_SECONDS:
            return "auth_timestamp missing or too far from now"
        if params.get("body_md5") != hashlib.md5(request.body).hexdigest():
            return "body_md5 does not match the body"
        query = "&".join(f"{k.lower()}={v}" for k, v in sorted(params.items(),
                                                               key=lambda kv: kv[0].lower()))
        expected = hmac.new(self.secret.encode(), f"POST\n{request.path}\n{query}".encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            return "Invalid signature"
        return None

    def error_body(self, request: Request, status: int, message: str | None) -> Any:
        return (message or "Internal Server Error").encode()


# -- the social networks ----------------------------------------------------------------------

_FACEBOOK_PATH = re.compile(r"^/v\d+\.\d+/(?P<id>[^/]+)$")


@dataclass
class FakeSocialAPIs(FakeServer):
    """Twitter, Facebook and LinkedIn on one port: the three base URLs all point here.

    ``posts[(service, post_id)]`` holds a post's counts by our metric names; ``tokens[service]``
    the one token each network accepts. A 401 echoes the token it was given, as a careless API
    might: it must still never reach a log line or a DLQ reason.
    """

    tokens: dict[str, str] = field(default_factory=dict)
    posts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def service_of(self, request: Request) -> tuple[str, str]:
        if request.path.startswith("/2/tweets/"):
            return "twitter", unquote(request.path[len("/2/tweets/"):])
        if request.path.startswith("/rest/socialActions/"):
            return "linkedin", unquote(request.path[len("/rest/socialActions/"):])
        match = _FACEBOOK_PATH.match(request.path)
        if match:
            return "facebook", unquote(match["id"])
        return "unknown", request.path

    def answer(self, request: Request) -> Reply:
        service, post_id = self.service_of(request)
        given = (request.header("Authorization") or "").removeprefix("Bearer ")
        if service == "unknown":
            return 404, {}, {"message": "no such endpoint"}
        if not given or given != self.tokens.get(service):
            return 401, {}, self.error_body(request, 401, f"invalid access token {given}")
        counts = self.posts.get((service, post_id))
        if counts is None:
            if service == "twitter":  # v2 answers 200 with only "errors" for an unknown tweet
                return 200, {}, {"errors": [{
                    "value": post_id, "detail": f"Could not find tweet with id: [{post_id}].",
                    "title": "Not Found Error", "resource_type": "tweet", "parameter": "id",
                    "resource_id": post_id,
                    "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
            return 404, {}, self.error_body(request, 404, f"post {post_id} not found")
        return 200, {}, getattr(self, f"_{service}")(post_id, counts)

    def error_body(self, request: Request, status: int, message: str | None) -> Any:
        service, _ = self.service_of(request)
        message = message or {401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                              500: "Internal Server Error"}.get(status, f"error {status}")
        if service == "facebook":
            return {"error": {"message": message, "type": "OAuthException",
                              "code": 190 if status == 401 else 100, "fbtrace_id": "AbCdEf"}}
        if service == "linkedin":
            return {"message": message, "serviceErrorCode": 65600, "status": status}
        return {"title": message, "detail": message, "type": "about:blank", "status": status}

    @staticmethod
    def _twitter(post_id: str, c: dict[str, int]) -> dict[str, Any]:
        return {"data": {
            "id": post_id, "text": "Shipped it https://t.co/x", "edit_history_tweet_ids": [post_id],
            "public_metrics": {"retweet_count": c.get("shares", 0),
                               "reply_count": c.get("comments", 0),
                               "like_count": c.get("likes", 0),
                               "quote_count": c.get("quotes", 0),
                               "bookmark_count": c.get("bookmarks", 0),
                               "impression_count": c.get("impressions", 0)}}}

    @staticmethod
    def _facebook(post_id: str, c: dict[str, int]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "reactions": {"data": [], "summary": {"total_count": c.get("likes", 0),
                                                  "viewer_reaction": "NONE"}},
            "comments": {"data": [], "summary": {"order": "ranked", "can_comment": True,
                                                 "total_count": c.get("comments", 0)}},
            "id": post_id}
        if c.get("shares"):  # Graph leaves "shares" out of a post nobody shared
            body["shares"] = {"count": c["shares"]}
        return body

    @staticmethod
    def _linkedin(urn: str, c: dict[str, int]) -> dict[str, Any]:
        return {
            "commentsSummary": {"selectedComments": [],
                                "totalFirstLevelComments": c.get("comments", 0),
                                "aggregatedTotalComments": c.get("comments", 0)},
            "likesSummary": {"selectedLikes": [], "likedByCurrentUser": False,
                             "aggregatedTotalLikes": c.get("likes", 0),
                             "totalLikes": c.get("likes", 0)},
            "target": urn, "$URN": "urn:li:activity:6610000000000000000"}
