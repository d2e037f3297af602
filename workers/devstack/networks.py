"""Stand-ins of X (API v2), the Facebook Graph API and LinkedIn's REST API, on one loopback port.

Their paths do not clash, so the three ``WORKERS_*_API_URL`` all point at one ``Networks``.
What each answers follows the real API's shapes:

X       POST /2/tweets, GET /2/users/me, GET /2/users/{id}/tweets, GET /2/tweets/{id}
Graph   POST|GET /v{N}.{M}/{page-id}/feed, GET /v{N}.{M}/{post-id}
Linked  POST /rest/posts, GET /rest/socialActions/{urn}

Accounts say who a bearer token is: an X user, the Facebook pages it may post to, the LinkedIn
authors it may post as. Each network refuses the same content again within its duplicate window
(``duplicate_window``, 24 h by default; identical text is accepted again after it) in its own words,
counts requests per token in 15-minute windows (``limits``; X's ``x-rate-limit-*`` headers on
every answer; Graph's error code 4 with ``x-app-usage``; LinkedIn's 429 with ``Retry-After``),
and can be told to fail its next create requests in ways that test "exactly once" (``fault``).
Every answer's ``Date`` is the stand-in's ``clock``, as a network's is its own; ``seed`` adds a
post created in the past (an author's earlier post of the same text), and ``creates`` lists
every create request with what became of it, so a test sees a second create of the same text
even where the duplicate window refused it.

Graph never answers 429: past its limit it says error code 4 ("Application request limit
reached") with HTTP 400 and ``x-app-usage`` at 100, and no time to come back (X gives
``x-rate-limit-reset``, LinkedIn ``Retry-After``). A fault is spent by the next create request
whatever it meets; an after-create fault does nothing to a create the network refused.

In-process: ``with Networks(accounts=[...]) as networks: ... networks.url``. As a process of the
local stack: ``python -m workers.devstack.networks --port P --accounts FILE.json``, driven through
``/__standin/`` (``Control``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, unquote

from workers.devstack.httpfake import Drop, FakeServer, Reply, Request

SERVICES = ("twitter", "facebook", "linkedin")
# The networks refuse the same content from the same author for a while (X for some hours,
# Facebook similar), then take it again: a day by default, ``duplicate_window`` to change.
DUPLICATE_WINDOW_SECONDS = 24 * 3600
# X counts its rate limits in 15-minute windows; the stand-in counts every network's so.
RATE_WINDOW_SECONDS = 15 * 60
# Requests per token (and, on X, per endpoint) in a window: generous, so that only a test that
# sets a small limit meets one.
DEFAULT_LIMITS = {"twitter": 900, "facebook": 4800, "linkedin": 1000}
# What ``fault`` can make of a create request. AFTER_CREATE's create the post, then answer
# badly (no_id_after_create: a 2xx without the post's id); BEFORE_CREATE's create nothing;
# hold_before_create holds the request until ``release`` (or its client leaves), then creates.
AFTER_CREATE = ("error_after_create", "timeout_after_create", "hold_after_create",
                "no_id_after_create")
BEFORE_CREATE = ("error_before_create", "rate_limited", "down")
HOLD_BEFORE_CREATE = "hold_before_create"
FAULT_MODES = AFTER_CREATE + BEFORE_CREATE + (HOLD_BEFORE_CREATE,)
# How X shows a link: every URL becomes a t.co link of this length.
TCO_PREFIX = "https://t.co/"
# A URL in a post: what X and the spec's link extraction take, trailing punctuation cut off.
URL = re.compile(r"https?://[^\s<>\"]+")
URL_TRAILING = ".,;:!?)]}'\""
# X's ids are snowflakes: milliseconds since this epoch, shifted past a sequence number.
TWITTER_EPOCH_MS = 1288834974657
FACEBOOK_PATH = re.compile(r"^/v\d+\.\d+/(?P<id>[^/]+)(?P<feed>/feed)?$")
LINKEDIN_VERSION = re.compile(r"^\d{6}(\.\d{2})?$")
CONTROL = "/__standin/"
FBTRACE = "AbCdEfGhIjK"


@dataclass(frozen=True)
class Account:
    """Who a token is on one network."""

    service: str
    token: str
    user_id: str = ""  # X
    username: str = ""  # X
    name: str = ""  # X's display name
    pages: tuple[str, ...] = ()  # Facebook: the page ids it may post to
    authors: tuple[str, ...] = ()  # LinkedIn: urn:li:person:… / urn:li:organization:…

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Account":
        known = {f.name for f in fields(cls)}
        given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in data.items() if k in known}
        if given.get("service") not in SERVICES or not given.get("token"):
            raise ValueError(f"an account needs a service of {SERVICES} and a token: {data}")
        return cls(**given)


def load_accounts(path: Path) -> list[Account]:
    """``{"accounts": [{"service", "token", ...}, ...]}`` (or just the list)."""
    data = json.loads(Path(path).read_text())
    return [Account.from_dict(a) for a in (data["accounts"] if isinstance(data, dict) else data)]


def sample_accounts() -> list[Account]:
    """The local stack's accounts, when it is given none."""
    return [Account("twitter", "dev-twitter-token", user_id="1500000000000000001",
                    username="devstack", name="Dev Stack"),
            Account("facebook", "dev-facebook-token", pages=("100000000000001",)),
            Account("linkedin", "dev-linkedin-token",
                    authors=("urn:li:person:devstack", "urn:li:organization:1000001"))]


def api_env(url: str) -> dict[str, str]:
    """The environment pointing the fleet's three networks at a stand-in at ``url``."""
    return {f"WORKERS_{service.upper()}_API_URL": url for service in SERVICES}


@dataclass
class Post:
    service: str
    id: str
    author: str  # X: the user id; Facebook: the page id; LinkedIn: the author URN
    text: str  # as given: X's text, Graph's message, LinkedIn's commentary
    link: str | None
    created_at: float
    shown: str = ""  # X: the text as X shows it, each URL a t.co link
    urls: list[dict[str, Any]] = field(default_factory=list)  # X: entities.urls

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "id": self.id, "author": self.author,
                "text": self.text, "link": self.link, "created_at": self.created_at}


@dataclass
class Fault:
    mode: str
    seconds: int = 60  # rate_limited: when to come back


@dataclass
class Networks(FakeServer):
    """X, Facebook and LinkedIn on one port. ``engagement[(service, post_id)]`` holds a post's
    counts by our metric names (a created post's start at 0). A refused token's answer echoes
    the token on the networks in ``echo_token``, as a careless API might: it must still never
    reach a log line or a DLQ reason."""

    accounts: list[Account] = field(default_factory=list)
    engagement: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    echo_token: frozenset[str] = frozenset({"linkedin"})
    clock: Callable[[], float] = time.time
    duplicate_window: float = DUPLICATE_WINDOW_SECONDS
    _posts: dict[str, list[Post]] = field(default_factory=lambda: {s: [] for s in SERVICES})
    _create_requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICES, 0))
    _creates: list[dict[str, Any]] = field(default_factory=list)
    _faults: dict[str, list[Fault]] = field(default_factory=lambda: {s: [] for s in SERVICES})
    _windows: dict[tuple[str, ...], list[float]] = field(default_factory=dict)
    _sequence: int = 0
    _creating: threading.Lock = field(default_factory=threading.Lock)

    # -- what a test reads and sets ---------------------------------------------------------

    def posts(self, service: str) -> list[dict[str, Any]]:
        """Every post created on ``service``, oldest first."""
        with self._lock:
            return [p.as_dict() for p in self._posts[service]]

    def create_requests(self, service: str) -> int:
        """How many create requests ``service`` received (refused, failed and faulted too)."""
        with self._lock:
            return self._create_requests[service]

    def created(self, service: str) -> int:
        with self._lock:
            return len(self._posts[service])

    def creates(self, service: str | None = None) -> list[dict[str, Any]]:
        """Every create request that reached the create step, oldest first: ``service``,
        ``author``, ``text`` and ``outcome`` (``created``, ``duplicate``, ``refused``), the
        answer's fault aside. Two for one text, or a ``duplicate``, is a second create."""
        with self._lock:
            return [dict(c) for c in self._creates if service in (None, c["service"])]

    def seed(self, service: str, author: str, text: str, link: str | None = None,
             created_at: float | None = None) -> str:
        """A post by ``author`` (X user id, page id, LinkedIn URN) created at ``created_at``
        (the stand-in's clock; now by default), as if posted before: its id."""
        if service not in SERVICES:
            raise ValueError(f"no such service: {service!r}")
        when = self.clock() if created_at is None else float(created_at)
        if service == "twitter":
            post_id = str(((int(when * 1000) - TWITTER_EPOCH_MS) << 22)
                          | (self._next() & 0x3FFFFF))
            shown, urls = tco(text, post_id)
            post = Post(service, post_id, author, text, link, when, shown, urls)
        elif service == "facebook":
            post = Post(service, f"{author}_{122100000000000000 + self._next()}", author, text,
                        link, when)
        else:
            post = Post(service, f"urn:li:share:{7400000000000000000 + self._next()}", author,
                        text, link, when)
        with self._lock:  # in the order of creation, as the feeds read them
            posts = self._posts[service]
            at = next((i for i, p in enumerate(posts) if p.created_at > when), len(posts))
            posts.insert(at, post)
            self.engagement.setdefault((service, post.id), {})
        return post.id

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, Any] = {s: {"create_requests": self._create_requests[s],
                                          "created": len(self._posts[s])} for s in SERVICES}
            counts["held"] = len(self._holds)
        return counts

    def fault(self, service: str, mode: str, count: int = 1, seconds: int = 60) -> None:
        """The next ``count`` create requests on ``service`` meet ``mode`` (FAULT_MODES)."""
        if service not in SERVICES or mode not in FAULT_MODES or count < 0:
            raise ValueError(f"no such service or fault: {service!r} {mode!r} x{count}")
        with self._lock:
            self._faults[service].extend(Fault(mode, seconds) for _ in range(count))

    def clear_faults(self) -> None:
        with self._lock:
            for queued in self._faults.values():
                queued.clear()

    @property
    def latency_ms(self) -> int:
        return round(self.delay * 1000)

    @latency_ms.setter
    def latency_ms(self, ms: int) -> None:
        """Every network answer takes this long: a real network's round trip, for a bench."""
        self.delay = ms / 1000

    # -- routing ----------------------------------------------------------------------------

    def passthrough(self, request: Request) -> bool:
        return request.path.startswith(CONTROL)

    def service_of(self, request: Request) -> str:
        path = request.path
        if path.startswith("/2/"):
            return "twitter"
        if path.startswith("/rest/"):
            return "linkedin"
        return "facebook" if FACEBOOK_PATH.match(path) else "unknown"

    def answer(self, request: Request) -> Reply:
        if request.path.startswith(CONTROL):
            return self._control(request)
        service = self.service_of(request)
        if service == "unknown":
            return 404, {}, {"message": "no such endpoint"}
        status, headers, body = getattr(self, f"_{service}")(request)
        return status, {"Date": formatdate(self.clock(), usegmt=True), **headers}, body

    def _account(self, service: str, request: Request) -> Account | None:
        auth = request.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        token = auth[len("Bearer "):]
        return next((a for a in self.accounts if a.service == service and a.token == token),
                    None)

    def _given_token(self, request: Request) -> str:
        return (request.header("Authorization") or "").removeprefix("Bearer ")

    def _refused(self, service: str, request: Request, message: str) -> str:
        given = self._given_token(request)
        return f"{message} {given}" if service in self.echo_token and given else message

    def _window(self, *key: str) -> tuple[int, int, int]:
        """Counts one request in ``key``'s window: (limit, remaining, reset) after it; remaining
        is -1 once the limit was already reached (the request is refused)."""
        limit = self.limits.get(key[0], DEFAULT_LIMITS[key[0]])
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now >= window[0] + RATE_WINDOW_SECONDS:
                window = self._windows[key] = [math.floor(now), 0]  # whole seconds, as reset
            reset = int(window[0] + RATE_WINDOW_SECONDS)
            if window[1] >= limit:
                return limit, -1, reset
            window[1] += 1
            return limit, limit - int(window[1]), reset

    def _next(self) -> int:
        with self._lock:
            self._sequence += 1
            return self._sequence

    def _duplicate(self, service: str, author: str, text: str,
                   same: Callable[[Post], bool]) -> Post | None:
        """The post within the duplicate window that refuses this one (noted in ``creates``)."""
        since = self.clock() - self.duplicate_window
        with self._lock:
            found = next((p for p in reversed(self._posts[service])
                          if p.author == author and p.created_at > since and same(p)), None)
            if found is not None:
                self._creates.append({"service": service, "author": author, "text": text,
                                      "outcome": "duplicate"})
        return found

    def _recent(self, service: str, author: str) -> list[Post]:
        """``author``'s posts, newest first."""
        with self._lock:
            return [p for p in reversed(self._posts[service]) if p.author == author]

    def _store(self, post: Post) -> None:
        with self._lock:
            self._creates.append({"service": post.service, "author": post.author,
                                  "text": post.text, "outcome": "created"})
            self._posts[post.service].append(post)
            self.engagement.setdefault((post.service, post.id), {})

    # -- creating, with the faults ----------------------------------------------------------

    def _create(self, service: str, request: Request, create: Callable[[], Reply]) -> Reply:
        """Counts a create request, and plays the next fault around ``create``."""
        with self._lock:
            self._create_requests[service] += 1
            fault = self._faults[service].pop(0) if self._faults[service] else None
        if fault is not None and fault.mode in BEFORE_CREATE:
            if fault.mode == "down":
                raise Drop()
            if fault.mode == "rate_limited":
                return self._rate_limited(service, fault.seconds)
            return self._server_error(service)
        if fault is not None and fault.mode == HOLD_BEFORE_CREATE:  # a slow network
            self.hold(request, until_client_gone=False)
        with self._creating:  # the duplicate check and the post as one step, as on a network
            reply = create()
        if fault is None or fault.mode == HOLD_BEFORE_CREATE or not 200 <= reply[0] < 300:
            return reply  # refused: nothing to fault
        if fault.mode == "error_after_create":
            return self._server_error(service)
        if fault.mode == "no_id_after_create":  # a 2xx that says nothing of the post
            return reply[0], {k: v for k, v in reply[1].items() if k != "x-restli-id"}, (
                {"data": {}} if service == "twitter" else {} if service == "facebook" else None)
        self.hold(request, until_client_gone=fault.mode == "timeout_after_create")
        return reply

    def _server_error(self, service: str) -> Reply:
        if service == "twitter":
            return 503, {}, {"title": "Service Unavailable", "detail": "Service Unavailable",
                             "type": "about:blank", "status": 503}
        if service == "facebook":
            return 500, {}, {"error": {
                "message": "An unexpected error has occurred. Please retry your request later.",
                "type": "OAuthException", "is_transient": True, "code": 2,
                "fbtrace_id": FBTRACE}}
        return 500, {}, {"message": "Internal Server Error", "status": 500}

    def _rate_limited(self, service: str, seconds: int, limit: int = 0) -> Reply:
        reset = int(self.clock()) + seconds
        if service == "twitter":
            return 429, {"x-rate-limit-limit": str(limit or self.limits.get("twitter", 0)),
                         "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}, {
                "title": "Too Many Requests", "detail": "Too Many Requests",
                "type": "about:blank", "status": 429}
        if service == "facebook":  # Graph says "later" with a code, never a 429 or a time
            return 400, {"x-app-usage": json.dumps(
                {"call_count": 100, "total_cputime": 0, "total_time": 0})}, {"error": {
                    "message": "(#4) Application request limit reached", "type": "OAuthException",
                    "is_transient": True, "code": 4, "fbtrace_id": FBTRACE}}
        return 429, {"Retry-After": str(seconds)}, {
            "status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
            "message": "Resource level throttle APPLICATION DAY limit for calls to this resource "
                       "is reached."}

    # -- X ----------------------------------------------------------------------------------

    def _twitter(self, request: Request) -> Reply:
        account = self._account("twitter", request)
        if account is None:
            return 401, {}, {"title": "Unauthorized", "type": "about:blank", "status": 401,
                             "detail": self._refused("twitter", request, "Unauthorized")}
        path = request.path
        endpoint = re.sub(r"^/2/(tweets|users)/(?!me$)[^/]+", r"/2/\1/:id", path)
        limit, remaining, reset = self._window("twitter", account.token, request.method,
                                               endpoint)
        if remaining < 0:
            return self._rate_limited("twitter", reset - int(self.clock()), limit)
        status, headers, body = self._twitter_answer(request, account, path)
        return status, {"x-rate-limit-limit": str(limit), "x-rate-limit-remaining":
                        str(remaining), "x-rate-limit-reset": str(reset), **headers}, body

    def _twitter_answer(self, request: Request, account: Account, path: str) -> Reply:
        if request.method == "POST" and path == "/2/tweets":
            return self._create("twitter", request, lambda: self._tweet(request, account))
        if request.method == "GET" and path == "/2/users/me":
            return 200, {}, {"data": {"id": account.user_id, "name": account.name
                                      or account.username, "username": account.username}}
        timeline = re.fullmatch(r"/2/users/([^/]+)/tweets", path)
        if request.method == "GET" and timeline:
            return self._timeline(unquote(timeline[1]), dict(request.query))
        if request.method == "GET" and path.startswith("/2/tweets/"):
            return self._tweet_engagement(unquote(path[len("/2/tweets/"):]))
        return 404, {}, {"title": "Not Found Error", "detail": "Not Found", "type":
                         "about:blank", "status": 404}

    def _tweet(self, request: Request, account: Account) -> Reply:
        body = _json(request.body)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return 400, {}, _x_invalid("text", "The `text` field is required and must be "
                                               "a non-empty string")
        if self._duplicate("twitter", account.user_id, text, lambda p: p.text == text):
            return 403, {}, {"detail": "You are not allowed to create a Tweet with duplicate "
                                       "content.", "type": "about:blank", "title": "Forbidden",
                             "status": 403}
        now = self.clock()
        tweet_id = str(((int(now * 1000) - TWITTER_EPOCH_MS) << 22) | (self._next() & 0x3FFFFF))
        shown, urls = tco(text, tweet_id)
        self._store(Post("twitter", tweet_id, account.user_id, text, None, now, shown, urls))
        return 201, {}, {"data": {"id": tweet_id, "text": shown,
                                  "edit_history_tweet_ids": [tweet_id]}}

    def _timeline(self, user_id: str, query: dict[str, str]) -> Reply:
        if not any(a.service == "twitter" and a.user_id == user_id for a in self.accounts):
            return 200, {}, {"errors": [{
                "value": user_id, "detail": f"Could not find user with id: [{user_id}].",
                "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                "resource_id": user_id,
                "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
        given = query.get("max_results", "10")
        if not given.isdigit() or not 5 <= int(given) <= 100:
            return 400, {}, _x_invalid("max_results", f"The `max_results` query parameter "
                                                      f"value [{given}] is not between 5 and 100")
        wanted = set(query.get("tweet.fields", "").split(","))
        tweets = [_tweet_json(p, wanted) for p in self._recent("twitter", user_id)[:int(given)]]
        if not tweets:
            return 200, {}, {"meta": {"result_count": 0}}
        return 200, {}, {"data": tweets, "meta": {
            "result_count": len(tweets), "newest_id": tweets[0]["id"],
            "oldest_id": tweets[-1]["id"]}}

    def _tweet_engagement(self, tweet_id: str) -> Reply:
        counts = self.engagement.get(("twitter", tweet_id))
        if counts is None:  # v2 answers 200 with only "errors" for an unknown tweet
            return 200, {}, {"errors": [{
                "value": tweet_id, "detail": f"Could not find tweet with id: [{tweet_id}].",
                "title": "Not Found Error", "resource_type": "tweet", "parameter": "id",
                "resource_id": tweet_id,
                "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
        with self._lock:
            post = next((p for p in self._posts["twitter"] if p.id == tweet_id), None)
        return 200, {}, {"data": {
            "id": tweet_id, "text": post.shown if post else "Shipped it https://t.co/x",
            "edit_history_tweet_ids": [tweet_id],
            "public_metrics": {"retweet_count": counts.get("shares", 0),
                               "reply_count": counts.get("comments", 0),
                               "like_count": counts.get("likes", 0),
                               "quote_count": counts.get("quotes", 0),
                               "bookmark_count": counts.get("bookmarks", 0),
                               "impression_count": counts.get("impressions", 0)}}}

    # -- Facebook ---------------------------------------------------------------------------

    def _facebook(self, request: Request) -> Reply:
        account = self._account("facebook", request)
        if account is None:
            if not request.header("Authorization"):
                return 400, {}, _graph_error(2500, "An active access token must be used to "
                                                   "query information about the current user.")
            return 400, {}, _graph_error(190, self._refused(
                "facebook", request, "Invalid OAuth access token - Cannot parse access token"))
        limit, remaining, _ = self._window("facebook", account.token)
        usage = {"x-app-usage": json.dumps({"call_count": round(100 * (limit - max(remaining, 0))
                                                                / max(limit, 1)),
                                            "total_cputime": 0, "total_time": 0})}
        if remaining < 0:
            return self._rate_limited("facebook", 0)
        match = FACEBOOK_PATH.match(request.path)
        assert match is not None  # service_of matched it
        object_id = unquote(match["id"])
        if match["feed"]:
            if request.method == "POST":
                return self._create("facebook", request, lambda: self._feed_post(
                    request, object_id, account, usage))
            refused = self._page_refused(object_id, account, request.method)
            if refused is not None:
                return 400, usage, refused
            return 200, usage, self._feed(object_id, dict(request.query))
        if request.method != "GET":
            return 400, usage, _unsupported("post", object_id)
        return self._post_engagement(object_id, usage)

    def _page_refused(self, page: str, account: Account, method: str) -> Any:
        if page in account.pages:
            return None
        if any(page in a.pages for a in self.accounts if a.service == "facebook"):
            return _graph_error(200, "(#200) If posting to a page, requires both "
                                     "pages_read_engagement and pages_manage_posts permission")
        return _unsupported("post" if method == "POST" else "get", page)

    def _feed_post(self, request: Request, page: str, account: Account,
                   usage: dict[str, str]) -> Reply:
        refused = self._page_refused(page, account, request.method)
        if refused is not None:
            return 400, usage, refused
        form = _form(request)
        message, link = form.get("message") or "", form.get("link") or None
        if not message and not link:
            return 400, usage, _graph_error(100, "(#100) Missing message or attachment")
        if self._duplicate("facebook", page, message,
                           lambda p: (p.text, p.link) == (message, link)):
            return 400, usage, _graph_error(506, "(#506) Duplicate status message",
                                            subcode=1455006)
        post_id = f"{page}_{122100000000000000 + self._next()}"
        self._store(Post("facebook", post_id, page, message, link, self.clock()))
        return 200, usage, {"id": post_id}

    def _feed(self, page: str, query: dict[str, str]) -> dict[str, Any]:
        wanted = (query.get("fields") or "id,message,created_time").split(",")
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 25
        data = []
        for post in self._recent("facebook", page)[:min(limit, 100)]:
            full = {"id": post.id, "message": post.text, "link": post.link,
                    "created_time": _stamp(post.created_at, "%Y-%m-%dT%H:%M:%S+0000")}
            data.append({k: full[k] for k in wanted if full.get(k)})
        return {"data": data, "paging": {}}

    def _post_engagement(self, post_id: str, usage: dict[str, str]) -> Reply:
        counts = self.engagement.get(("facebook", post_id))
        if counts is None:
            return 400, usage, _unsupported("get", post_id)
        body: dict[str, Any] = {
            "reactions": {"data": [], "summary": {"total_count": counts.get("likes", 0),
                                                  "viewer_reaction": "NONE"}},
            "comments": {"data": [], "summary": {"order": "ranked", "can_comment": True,
                                                 "total_count": counts.get("comments", 0)}},
            "id": post_id}
        if counts.get("shares"):  # Graph leaves "shares" out of a post nobody shared
            body["shares"] = {"count": counts["shares"]}
        return 200, usage, body

    # -- LinkedIn ---------------------------------------------------------------------------

    def _linkedin(self, request: Request) -> Reply:
        account = self._account("linkedin", request)
        if account is None:
            return 401, {}, {"status": 401, "serviceErrorCode": 65600,
                             "code": "INVALID_ACCESS_TOKEN",
                             "message": self._refused("linkedin", request,
                                                      "Invalid access token")}
        version = request.header("LinkedIn-Version")
        if not version:
            return 400, {}, {"status": 400, "code": "VERSION_MISSING", "message":
                             "A version must be present. Please specify a version by adding "
                             "the LinkedIn-Version header."}
        if not LINKEDIN_VERSION.match(version):
            return 426, {}, {"status": 426, "code": "NONEXISTENT_VERSION",
                             "message": f"Requested version {version} is not active"}
        _, remaining, reset = self._window("linkedin", account.token)
        if remaining < 0:
            return self._rate_limited("linkedin", reset - int(self.clock()))
        if request.method == "POST" and request.path == "/rest/posts":
            if request.header("X-Restli-Protocol-Version") != "2.0.0":
                return 400, {}, {"status": 400, "message": "X-Restli-Protocol-Version 2.0.0 "
                                                           "is required by this resource"}
            return self._create("linkedin", request, lambda: self._share(request, account))
        if request.method == "GET" and request.path.startswith("/rest/socialActions/"):
            return self._social_actions(unquote(request.path[len("/rest/socialActions/"):]))
        return 404, {}, {"status": 404, "message": "No virtual resource found"}

    def _share(self, request: Request, account: Account) -> Reply:
        body = _json(request.body)
        body = body if isinstance(body, dict) else {}
        for name in ("author", "commentary", "visibility", "distribution", "lifecycleState"):
            if name not in body:
                return 422, {}, {"status": 422, "message": f"ERROR :: /{name} :: field is "
                                 "required but not found and has no default value"}
        author, commentary = str(body["author"]), str(body["commentary"])
        if author not in account.authors:
            return 403, {}, {"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED",
                             "message": "Not enough permissions to access: "
                                        "partnerApiPostsExternal.CREATE.20240101"}
        same = self._duplicate("linkedin", author, commentary, lambda p: p.text == commentary)
        if same is not None:
            return 422, {}, {"message": f"Content is a duplicate of {same.id}", "status": 422,
                             "code": "DUPLICATE_POST", "serviceErrorCode": 0}
        source = ((body.get("content") or {}).get("article") or {}).get("source")
        urn = f"urn:li:share:{7400000000000000000 + self._next()}"
        self._store(Post("linkedin", urn, author, commentary, source, self.clock()))
        return 201, {"x-restli-id": urn}, None

    def _social_actions(self, urn: str) -> Reply:
        counts = self.engagement.get(("linkedin", urn))
        if counts is None:
            return 404, {}, {"status": 404, "serviceErrorCode": 0,
                             "message": f"post {urn} not found"}
        return 200, {}, {
            "commentsSummary": {"selectedComments": [],
                                "totalFirstLevelComments": counts.get("comments", 0),
                                "aggregatedTotalComments": counts.get("comments", 0)},
            "likesSummary": {"selectedLikes": [], "likedByCurrentUser": False,
                             "aggregatedTotalLikes": counts.get("likes", 0),
                             "totalLikes": counts.get("likes", 0)},
            "target": urn, "$URN": "urn:li:activity:6610000000000000000"}

    # -- errors ``fail`` scripts, in each network's shape -----------------------------------

    def error_body(self, request: Request, status: int, message: str | None) -> Any:
        service = self.service_of(request)
        message = message or {401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                              500: "Internal Server Error"}.get(status, f"error {status}")
        if service == "facebook":
            return _graph_error(190 if status == 401 else 100, message)
        if service == "linkedin":
            return {"message": message, "serviceErrorCode": 65600, "status": status}
        return {"title": message, "detail": message, "type": "about:blank", "status": status}

    # -- the control API, for a stand-in in another process ---------------------------------

    def _control(self, request: Request) -> Reply:
        action = (request.method, request.path[len(CONTROL):])
        body = _json(request.body) if request.method == "POST" else {}
        body = body if isinstance(body, dict) else {}
        try:
            if action == ("GET", "posts"):
                service = dict(request.query).get("service")
                return 200, {}, {"posts": [p for s in SERVICES if service in (None, s)
                                           for p in self.posts(s)]}
            if action == ("GET", "stats"):
                return 200, {}, self.stats()
            if action == ("GET", "creates"):
                return 200, {}, {"creates": self.creates(dict(request.query).get("service"))}
            if action == ("POST", "posts"):
                return 200, {}, {"id": self.seed(
                    str(body.get("service")), str(body.get("author")), str(body.get("text")),
                    body.get("link"), body.get("created_at"))}
            if action == ("POST", "duplicate-window"):
                self.duplicate_window = float(body.get("seconds", DUPLICATE_WINDOW_SECONDS))
                return 200, {}, {"ok": True}
            if action == ("POST", "faults"):
                self.fault(str(body.get("service")), str(body.get("mode")),
                           int(body.get("count", 1)), int(body.get("seconds", 60)))
                return 200, {}, {"ok": True}
            if action == ("DELETE", "faults") or action == ("POST", "faults/clear"):
                self.clear_faults()
                return 200, {}, {"ok": True}
            if action == ("POST", "release"):
                return 200, {}, {"released": self.release()}
            if action == ("POST", "latency"):
                self.latency_ms = int(body.get("ms", 0))
                return 200, {}, {"ok": True}
        except (TypeError, ValueError) as exc:
            return 400, {}, {"message": str(exc)}
        return 404, {}, {"message": f"no such control: {request.method} {request.path}"}


class Control:
    """The control API of a stand-in in another process (``python -m
    workers.devstack.networks``)."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url, self.timeout = url.rstrip("/") + CONTROL, timeout

    def posts(self, service: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "posts" + (f"?service={service}" if service else ""))["posts"]

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def creates(self, service: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "creates" + (f"?service={service}" if service else ""))[
            "creates"]

    def seed(self, service: str, author: str, text: str, link: str | None = None,
             created_at: float | None = None) -> str:
        return self._call("POST", "posts", {"service": service, "author": author, "text": text,
                                            "link": link, "created_at": created_at})["id"]

    def set_duplicate_window(self, seconds: float) -> None:
        self._call("POST", "duplicate-window", {"seconds": seconds})

    def fault(self, service: str, mode: str, count: int = 1, seconds: int = 60) -> None:
        self._call("POST", "faults", {"service": service, "mode": mode, "count": count,
                                      "seconds": seconds})

    def clear_faults(self) -> None:
        self._call("POST", "faults/clear", {})

    def release(self) -> int:
        return self._call("POST", "release", {})["released"]

    def set_latency(self, ms: int) -> None:
        self._call("POST", "latency", {"ms": ms})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())


# -- how each network writes things -----------------------------------------------------------

def tco(text: str, post_id: str) -> tuple[str, list[dict[str, Any]]]:
    """``text`` as X shows it (each http(s) URL a t.co link) and its ``entities.urls``."""
    shown, urls, last = "", [], 0
    for n, match in enumerate(URL.finditer(text)):
        url = match[0].rstrip(URL_TRAILING)
        short = TCO_PREFIX + hashlib.sha1(f"{post_id}/{n}/{url}".encode()).hexdigest()[:10]
        shown += text[last:match.start()]
        display = url.split("://", 1)[1]
        urls.append({"start": len(shown), "end": len(shown) + len(short), "url": short,
                     "expanded_url": url,
                     "display_url": display if len(display) <= 23 else display[:22] + "…"})
        shown += short
        last = match.start() + len(url)
    return shown + text[last:], urls


def _tweet_json(post: Post, wanted: set[str]) -> dict[str, Any]:
    tweet: dict[str, Any] = {"id": post.id, "text": post.shown,
                             "edit_history_tweet_ids": [post.id]}
    if "created_at" in wanted:
        tweet["created_at"] = _stamp(post.created_at, "%Y-%m-%dT%H:%M:%S.000Z")
    if "entities" in wanted and post.urls:  # X leaves out entities a tweet has none of
        tweet["entities"] = {"urls": post.urls}
    return tweet


def _x_invalid(parameter: str, message: str) -> dict[str, Any]:
    return {"errors": [{"parameters": {parameter: []}, "message": message}],
            "title": "Invalid Request", "detail": "One or more parameters to your request was "
                                                  "invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request"}


def _graph_error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = FBTRACE
    return {"error": error}


def _unsupported(verb: str, object_id: str) -> dict[str, Any]:
    return _graph_error(100, f"Unsupported {verb} request. Object with ID '{object_id}' does "
                             "not exist, cannot be loaded due to missing permissions, or does "
                             "not support this operation. Please read the Graph API "
                             "documentation at https://developers.facebook.com/docs/graph-api",
                        subcode=33)


def _stamp(when: float, fmt: str) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime(fmt)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return None


def _form(request: Request) -> dict[str, str]:
    """Graph takes its fields form-encoded or as JSON."""
    if "json" in (request.header("Content-Type") or ""):
        body = _json(request.body)
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return dict(parse_qsl(request.body.decode(errors="replace"), keep_blank_values=True))


# -- as a process of the local stack ----------------------------------------------------------

def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-ins of X, Facebook and LinkedIn")
    parser.add_argument("--port", type=int, default=0, help="0: a free one (printed)")
    parser.add_argument("--accounts", type=Path, help="JSON: {\"accounts\": [{\"service\", "
                                                      "\"token\", ...}]} (default: samples)")
    parser.add_argument("--limit", action="append", default=[], metavar="SERVICE=N",
                        help="requests per token in 15 minutes")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--duplicate-window", type=float, default=DUPLICATE_WINDOW_SECONDS,
                        metavar="SECONDS", help="identical text is refused this long")
    args = parser.parse_args(None if argv is None else list(argv))
    limits = dict(DEFAULT_LIMITS)
    for given in args.limit:
        service, _, n = given.partition("=")
        limits[service] = int(n)
    accounts = load_accounts(args.accounts) if args.accounts else sample_accounts()
    networks = Networks(accounts=accounts, limits=limits, record_requests=False,
                        duplicate_window=args.duplicate_window)
    networks.latency_ms = args.latency_ms
    # Blocked before the server's threads start (they inherit it), taken by this thread alone:
    # a stop signal is waited for, never raised in the middle of something.
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    networks.start(args.port)
    print(json.dumps({"event": "networks.listening", "url": networks.url}), flush=True)
    signal.sigwait(stop_signals)
    networks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
