"""The console's Starlette app: what it is wired to, who is asking, and what each may do.

Deny by default: every route but /login, /health, /metrics and the static files goes through
``guard``, which finds the principal (a session cookie, or ``Authorization: Bearer``), refuses
a cookie POST without its session's CSRF token, and checks the role. Pages redirect to /login;
the API answers 401 and every other refusal as JSON ``{"error": ...}``.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from workers.adapters import aws
from workers.adapters.redisconn import Client
from workers.console import history, snapshot, tasks
from workers.console.access import OPERATOR, VIEWER, Principal, Users
from workers.console.audit import Audit
from workers.console.sessions import COOKIE, Sessions
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter
from workers.ops.dlq import DeadLetters
from workers.ops.stats import Sampler

Handler = Callable[[Request], Awaitable[Response]]


class Refused(HTTPException):
    """A refusal with its reason: JSON on the API, a short page elsewhere."""


@dataclass
class Console:
    """What the routes use, made once when the app is built."""

    settings: Settings
    redis: Client
    users: Users
    sqs: Any = None
    sessions: Sessions = field(init=False)
    audit: Audit = field(init=False)
    history: history.History = field(init=False)
    tasks: tasks.Tasks = field(init=False)
    snapshots: snapshot.Snapshots = field(init=False)
    counter: LinkCounter = field(init=False)
    metrics: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.sqs = self.sqs or aws.client(self.settings, pool=20)
        self.sessions = Sessions(self.redis)
        self.audit = Audit(self.redis)
        self.history = history.History(self.redis)
        self.tasks = tasks.Tasks(self.redis, self.letters, on_end=self._task_ended)
        self.metrics = CollectorRegistry()
        samples = Counter("workers_console_snapshots", "Snapshots of the queues taken from SQS",
                          registry=self.metrics)
        self.snapshots = snapshot.Snapshots.of(Sampler(self.settings, self.sqs),
                                               self.settings.console_refresh,
                                               on_sample=samples.inc)
        self.counter = LinkCounter(self.redis, self.settings.link_buckets)

    def letters(self, queue: str) -> DeadLetters:
        return DeadLetters(self.settings, queue, self.sqs)

    def _task_ended(self, task: dict[str, Any]) -> None:
        self.audit.record(task["user"], "replay.end", task["queue"], task["state"],
                          task=task["id"], moved=task["moved"], total=task["total"])


def principal(request: Request) -> Principal | None:
    console: Console = request.app.state.console
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return console.users.token(header[7:].strip())
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    role = console.users.role_of(session.user)
    return Principal(session.user, role, "session") if role else None


async def csrf_ok(request: Request) -> bool:
    console: Console = request.app.state.console
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return False
    sent = request.headers.get("x-csrf-token")
    if sent is None and _is_form(request):
        sent = (await request.form()).get("csrf_token")  # type: ignore[assignment]
    return isinstance(sent, str) and hmac.compare_digest(sent, session.csrf)


def guard(role: str = VIEWER, page: bool = False) -> Callable[[Handler], Handler]:
    """Only for a principal of ``role`` (an operator may do what a viewer may)."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            who = await run_in_threadpool(principal, request)
            if who is None:
                if page:
                    return RedirectResponse("/login", status_code=303)
                raise Refused(401, "sign in, or send Authorization: Bearer TOKEN")
            if request.method == "POST" and who.via == "session" and not await csrf_ok(request):
                raise Refused(403, "missing or wrong CSRF token (X-CSRF-Token)")
            if role == OPERATOR and not who.operator:
                raise Refused(403, f"{who.user} is a viewer: only an operator may do this")
            request.state.who = who
            return await handler(request)
        return guarded
    return wrap


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


# Every answer: no framing (a console's buttons must not be clickjacked), scripts, styles and
# connections only from the console itself (the vendored libraries included).
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every answer (streams included)."""

    def __init__(self, app: Any):
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)


async def refused(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "") or "error"
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept",
                                                                                       ""):
        return JSONResponse({"error": detail}, status, headers=getattr(exc, "headers", None))
    return PlainTextResponse(f"{status}: {detail}", status)


async def health(request: Request) -> Response:
    console: Console = request.app.state.console
    try:
        await run_in_threadpool(console.redis.ping)
    except Exception:
        return JSONResponse({"status": "redis unavailable"}, 503)
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    console: Console = request.app.state.console
    return Response(generate_latest(console.metrics),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
