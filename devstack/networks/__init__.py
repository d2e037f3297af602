"""Stand-ins of the social networks (X API v2, the Facebook Graph API, LinkedIn's REST API), on
one loopback port.

Their paths do not clash, so every ``WORKERS_*_API_URL`` points at one ``Networks``. Each
network is a module of this package (twitter.py, facebook.py, linkedin.py): a ``Standin``
subclass registered with ``@standin``, holding its routes and its answers in the real API's
shapes; the package finds them itself (a new network is a new module). What they share lives
here:

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

A fault is spent by the next create request whatever it meets; an after-create fault does
nothing to a create the network refused.

In-process: ``with Networks(accounts=[...]) as networks: ... networks.url``. As a process of the
local stack: ``python -m devstack.networks --port P --accounts FILE.json``, driven through
``/__standin/`` (``Control``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from devstack.httpfake import Drop, FakeServer, Reply, Request

# The networks refuse the same content from the same author for a while (X for some hours,
# Facebook similar), then take it again: a day by default, ``duplicate_window`` to change.
DUPLICATE_WINDOW_SECONDS = 24 * 3600
# X counts its rate limits in 15-minute windows; the stand-in counts every network's so.
RATE_WINDOW_SECONDS = 15 * 60
# What ``fault`` can make of a create request. AFTER_CREATE's create the post, then answer
# badly (no_id_after_create: a 2xx without the post's id); BEFORE_CREATE's create nothing;
# hold_before_create holds the request until ``release`` (or its client leaves), then creates.
AFTER_CREATE = ("error_after_create", "timeout_after_create", "hold_after_create",
                "no_id_after_create")
BEFORE_CREATE = ("error_before_create", "rate_limited", "down")
HOLD_BEFORE_CREATE = "hold_before_create"
FAULT_MODES = AFTER_CREATE + BEFORE_CREATE + (HOLD_BEFORE_CREATE,)
CONTROL = "/__standin/"


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
        if given.get("service") not in STANDINS or not given.get("token"):
            raise ValueError(f"an account needs a service of {services()} and a token: {data}")
        return cls(**given)


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


class Standin:
    """One network: its routes and answers, over the state ``Networks`` keeps for them all."""

    service: ClassVar[str]
    # Requests per token (and, on X, per endpoint) in a window: generous, so that only a test
    # that sets a small limit meets one.
    default_limit: ClassVar[int]

    def __init__(self, networks: Networks):
        self.networks = networks

    @classmethod
    def sample_account(cls) -> Account:
        """The local stack's account on this network, when it is given none."""
        raise NotImplementedError

    @classmethod
    def sample_target(cls, account: Account) -> str | None:
        """Where ``account`` posts, as a publish event's ``target`` says it (None: itself)."""
        return None

    def routes(self, path: str) -> bool:
        """Whether ``path`` is one of this network's."""
        raise NotImplementedError

    def answer(self, request: Request) -> Reply:
        raise NotImplementedError

    def new_post(self, author: str, text: str, link: str | None, when: float) -> Post:
        """A post with a new id of this network's kind, created at ``when``."""
        raise NotImplementedError

    def server_error(self) -> Reply:
        raise NotImplementedError

    def rate_limited(self, seconds: int, limit: int = 0) -> Reply:
        """Its answer past its limit, come back in ``seconds``."""
        raise NotImplementedError

    def without_id(self, reply: Reply) -> Reply:
        """A created answer with nothing of the post's id (the ``no_id_after_create`` fault)."""
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        """An error answer's body in this network's shape (what ``fail`` scripts)."""
        return {"title": message, "detail": message, "type": "about:blank", "status": status}


# Each network's stand-in, by service name: its module registers it with ``@standin``.
STANDINS: dict[str, type[Standin]] = {}


def standin(cls: type[Standin]) -> type[Standin]:
    """Registers a network's stand-in (a class decorator, in the network's own module)."""
    STANDINS[cls.service] = cls
    return cls


def services() -> tuple[str, ...]:
    return tuple(STANDINS)


def default_limits() -> dict[str, int]:
    return {service: cls.default_limit for service, cls in STANDINS.items()}


def load_accounts(path: Path) -> list[Account]:
    """``{"accounts": [{"service", "token", ...}, ...]}`` (or just the list)."""
    data = json.loads(Path(path).read_text())
    return [Account.from_dict(a) for a in (data["accounts"] if isinstance(data, dict) else data)]


def sample_accounts() -> list[Account]:
    """The local stack's accounts, when it is given none: one on each network."""
    return [cls.sample_account() for cls in STANDINS.values()]


def sample_target(account: Account) -> str | None:
    """The ``target`` of a publish event for ``account`` (sample_accounts')."""
    return STANDINS[account.service].sample_target(account)


def api_env(url: str) -> dict[str, str]:
    """The environment pointing the fleet's networks at a stand-in at ``url``."""
    return {f"WORKERS_{service.upper()}_API_URL": url for service in STANDINS}


@dataclass
class Networks(FakeServer):
    """Every network on one port. ``engagement[(service, post_id)]`` holds a post's counts by
    our metric names (a created post's start at 0). A refused token's answer echoes the token
    on the networks in ``echo_token``, as a careless API might: it must still never reach a log
    line or a DLQ reason."""

    accounts: list[Account] = field(default_factory=list)
    engagement: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=default_limits)
    echo_token: frozenset[str] = frozenset({"linkedin"})
    clock: Callable[[], float] = time.time
    duplicate_window: float = DUPLICATE_WINDOW_SECONDS
    _posts: dict[str, list[Post]] = field(default_factory=lambda: {s: [] for s in STANDINS})
    _create_requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STANDINS, 0))
    _creates: list[dict[str, Any]] = field(default_factory=list)
    _faults: dict[str, list[Fault]] = field(default_factory=lambda: {s: [] for s in STANDINS})
    _windows: dict[tuple[str, ...], list[float]] = field(default_factory=dict)
    _sequence: int = 0
    _creating: threading.Lock = field(default_factory=threading.Lock)
    _standins: dict[str, Standin] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._standins = {service: cls(self) for service, cls in STANDINS.items()}

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
        if service not in STANDINS:
            raise ValueError(f"no such service: {service!r}")
        when = self.clock() if created_at is None else float(created_at)
        post = self._standins[service].new_post(author, text, link, when)
        with self._lock:  # in the order of creation, as the feeds read them
            posts = self._posts[service]
            at = next((i for i, p in enumerate(posts) if p.created_at > when), len(posts))
            posts.insert(at, post)
            self.engagement.setdefault((service, post.id), {})
        return post.id

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, Any] = {s: {"create_requests": self._create_requests[s],
                                          "created": len(self._posts[s])} for s in STANDINS}
            counts["held"] = len(self._holds)
        return counts

    def fault(self, service: str, mode: str, count: int = 1, seconds: int = 60) -> None:
        """The next ``count`` create requests on ``service`` meet ``mode`` (FAULT_MODES)."""
        if service not in STANDINS or mode not in FAULT_MODES or count < 0:
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
        return next((s for s, net in self._standins.items() if net.routes(request.path)),
                    "unknown")

    def answer(self, request: Request) -> Reply:
        if request.path.startswith(CONTROL):
            return self._control(request)
        service = self.service_of(request)
        if service == "unknown":
            return 404, {}, {"message": "no such endpoint"}
        status, headers, body = self._standins[service].answer(request)
        return status, {"Date": formatdate(self.clock(), usegmt=True), **headers}, body

    def error_body(self, request: Request, status: int, message: str | None) -> Any:
        message = message or {401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                              500: "Internal Server Error"}.get(status, f"error {status}")
        network = self._standins.get(self.service_of(request))
        return (network or Standin(self)).error_body(status, message)

    # -- what every network does, for its stand-in ------------------------------------------

    def account(self, service: str, request: Request) -> Account | None:
        """Whose bearer token the request carries on ``service``; None: no such token."""
        auth = request.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        token = auth[len("Bearer "):]
        return next((a for a in self.accounts if a.service == service and a.token == token),
                    None)

    def refusal(self, service: str, request: Request, message: str) -> str:
        """``message``, with the refused token after it where ``service`` echoes tokens."""
        given = (request.header("Authorization") or "").removeprefix("Bearer ")
        return f"{message} {given}" if service in self.echo_token and given else message

    def window(self, *key: str) -> tuple[int, int, int]:
        """Counts one request in ``key``'s window: (limit, remaining, reset) after it; remaining
        is -1 once the limit was already reached (the request is refused). ``key[0]`` is the
        service."""
        limit = self.limits.get(key[0], STANDINS[key[0]].default_limit)
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

    def next_number(self) -> int:
        """A number never given before: what each network's ids are made unique with."""
        with self._lock:
            self._sequence += 1
            return self._sequence

    def duplicate(self, service: str, author: str, text: str,
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

    def recent(self, service: str, author: str) -> list[Post]:
        """``author``'s posts, newest first."""
        with self._lock:
            return [p for p in reversed(self._posts[service]) if p.author == author]

    def post(self, service: str, post_id: str) -> Post | None:
        with self._lock:
            return next((p for p in self._posts[service] if p.id == post_id), None)

    def store(self, post: Post) -> None:
        with self._lock:
            self._creates.append({"service": post.service, "author": post.author,
                                  "text": post.text, "outcome": "created"})
            self._posts[post.service].append(post)
            self.engagement.setdefault((post.service, post.id), {})

    def create(self, service: str, request: Request, create: Callable[[], Reply]) -> Reply:
        """Counts a create request, and plays the next fault around ``create``."""
        network = self._standins[service]
        with self._lock:
            self._create_requests[service] += 1
            fault = self._faults[service].pop(0) if self._faults[service] else None
        if fault is not None and fault.mode in BEFORE_CREATE:
            if fault.mode == "down":
                raise Drop()
            if fault.mode == "rate_limited":
                return network.rate_limited(fault.seconds)
            return network.server_error()
        if fault is not None and fault.mode == HOLD_BEFORE_CREATE:  # a slow network
            self.hold(request, until_client_gone=False)
        with self._creating:  # the duplicate check and the post as one step, as on a network
            reply = create()
        if fault is None or fault.mode == HOLD_BEFORE_CREATE or not 200 <= reply[0] < 300:
            return reply  # refused: nothing to fault
        if fault.mode == "error_after_create":
            return network.server_error()
        if fault.mode == "no_id_after_create":  # a 2xx that says nothing of the post
            return network.without_id(reply)
        self.hold(request, until_client_gone=fault.mode == "timeout_after_create")
        return reply

    # -- the control API, for a stand-in in another process ---------------------------------

    def _control(self, request: Request) -> Reply:
        action = (request.method, request.path[len(CONTROL):])
        body = json_body(request.body) if request.method == "POST" else {}
        body = body if isinstance(body, dict) else {}
        try:
            if action == ("GET", "posts"):
                service = dict(request.query).get("service")
                return 200, {}, {"posts": [p for s in STANDINS if service in (None, s)
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
    """The control API of a stand-in in another process (``python -m devstack.networks``)."""

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


# -- what the networks' modules share ---------------------------------------------------------

def stamp(when: float, fmt: str) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime(fmt)


def json_body(body: bytes) -> Any:
    """A request's JSON body; None when it is not JSON."""
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return None


# -- as a process of the local stack (python -m devstack.networks: __main__.py) ---------------

def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-ins of the social networks")
    parser.add_argument("--port", type=int, default=0, help="0: a free one (printed)")
    parser.add_argument("--accounts", type=Path, help="JSON: {\"accounts\": [{\"service\", "
                                                      "\"token\", ...}]} (default: samples)")
    parser.add_argument("--limit", action="append", default=[], metavar="SERVICE=N",
                        help="requests per token in 15 minutes")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--duplicate-window", type=float, default=DUPLICATE_WINDOW_SECONDS,
                        metavar="SECONDS", help="identical text is refused this long")
    args = parser.parse_args(None if argv is None else list(argv))
    limits = default_limits()
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


def _register_every_network() -> None:
    """Imports each module of this package: each registers its network's stand-in."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_register_every_network()
# Every network's name, in the order their modules were found (alphabetical).
SERVICES = services()
