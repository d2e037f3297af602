"""The console's JSON API under /api/ (SPEC.md, "The console"): everything a page shows or
does. Times are Unix seconds; an unknown queue is 404, a bad body 400, each refusal JSON."""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from workers import QUEUES
from workers.console.access import OPERATOR
from workers.console.app import Console, Refused, guard
from workers.console.sessions import COOKIE
from workers.core.message import Message
from workers.domain.links.urls import InvalidURL, normalize_key
from workers.domain.publishing.publications import attempt_key, published_key
from workers.ops import fleet
from workers.ops.dlq import MAX_SCAN, DeadLetters, reason, receives
from workers.ops.scale import PROGRAMS

# A queue's history: a point a minute, kept 72 hours.
MAX_MINUTES = 72 * 60
DEFAULT_MINUTES = 60
DEFAULT_LIMIT = 50
# SQS's move task moves at most 500 messages a second; so does ours.
MAX_RATE = 500
# Rate limits listed at most (one key each in Redis).
MAX_LIMITS = 1000


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = Field("", max_length=1000)
    limit: int | None = Field(None, ge=1, le=MAX_SCAN)
    rate: float | None = Field(None, gt=0, le=MAX_RATE)
    dry_run: bool = False


class ScaleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1, max_length=255)
    queue: str = Field(min_length=1, max_length=100)
    # As `workers scale QUEUE N`.
    processes: int = Field(ge=0, le=99)


class PurgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: str = Field(max_length=200)


def console_of(request: Request) -> Console:
    return request.app.state.console


def queue_of(request: Request) -> str:
    queue = request.path_params["queue"]
    if queue not in QUEUES:
        raise Refused(404, f"unknown queue {queue[:100]!r}; the queues: {', '.join(QUEUES)}")
    return queue


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Refused(400, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise Refused(400, f"{name} must be between {low} and {high}")
    return value


async def body_of(request: Request, model: type[BaseModel]) -> Any:
    """The JSON (or form) body as ``model``; 400 when it is not one."""
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            raw = json.loads(await request.body() or b"{}")
        else:
            raw = {k: v for k, v in (await request.form()).items() if k != "csrf_token"}
            raw = {k: (v in ("1", "true", "on") if k == "dry_run" else v or None)
                   for k, v in raw.items()}
        return model.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = ".".join(map(str, first["loc"])) + ": " if first and first["loc"] else ""
        raise Refused(400, "bad body: " + (where + first["msg"] if first else "not JSON")
                      ) from None


def dead_letter(message: Message) -> dict[str, Any]:
    return {"message_id": message.id, "body": message.body, "reason": reason(message),
            "receives": receives(message),
            "sent_at": message.sent_timestamp_ms / 1000 if message.sent_timestamp_ms else None}


# -- reading ----------------------------------------------------------------------------------

@guard()
async def session(request: Request) -> Response:
    console, who = console_of(request), request.state.who
    found = console.sessions.get(request.cookies.get(COOKIE)) if who.via == "session" else None
    return JSONResponse({"user": who.user, "role": who.role,
                         "csrf_token": found.csrf if found else None})


@guard()
async def queues(request: Request) -> Response:
    return JSONResponse({"queues": await console_of(request).snapshots.latest()})


@guard()
async def queue_history(request: Request) -> Response:
    queue = queue_of(request)
    minutes = int_param(request, "minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
    points = await run_in_threadpool(console_of(request).history.points, queue, minutes)
    return JSONResponse({"points": points})


def search(console: Console, queue: str, text: str, limit: int) -> dict[str, Any]:
    found = console.letters(queue).search(text, limit)
    return {"messages": [dead_letter(m) for m in found.messages], "matched": found.matched,
            "scanned": found.scanned}


@guard()
async def dlq(request: Request) -> Response:
    queue = queue_of(request)
    text = request.query_params.get("q", "")
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_SCAN)
    return JSONResponse(await run_in_threadpool(search, console_of(request), queue, text,
                                                limit))


@guard()
async def task_list(request: Request) -> Response:
    return JSONResponse({"tasks": await run_in_threadpool(console_of(request).tasks.latest)})


@guard()
async def task(request: Request) -> Response:
    found = await run_in_threadpool(console_of(request).tasks.get, request.path_params["id"])
    if found is None:
        raise Refused(404, "no such task")
    return JSONResponse(found)


def publication(console: Console, update_id: str) -> dict[str, Any] | None:
    pipe = console.redis.pipeline(transaction=False)
    pipe.hgetall(attempt_key(update_id))
    pipe.hgetall(published_key(update_id))
    attempt, record = ({_s(k): _s(v) for k, v in h.items()} for h in pipe.execute())
    if not attempt and not record:
        return None
    return {"update_id": update_id,
            "state": "published" if record else attempt.get("state", "unknown"),
            "attempt": {"state": attempt.get("state"), "tried": attempt.get("tried") == "1",
                        "chained": attempt.get("chained") == "1",
                        "lease_until": int(attempt["lease_until"]) / 1000
                        if attempt.get("lease_until") else None} if attempt else None,
            "service": record.get("service"),
            "service_update_id": record.get("service_update_id"),
            "published_at": int(record["published_at"]) if record.get("published_at") else None}


@guard()
async def publish(request: Request) -> Response:
    found = await run_in_threadpool(publication, console_of(request),
                                    request.path_params["update_id"])
    if found is None:
        raise Refused(404, "no attempt or record of this update")
    return JSONResponse(found)


def link(console: Console, url: str) -> dict[str, Any]:
    try:
        normalized = normalize_key(url)
    except InvalidURL as exc:
        raise Refused(400, f"invalid URL: {exc}") from None
    return {"url": url, "normalized": normalized, "shares": console.counter.counts([normalized])[0]}


@guard()
async def links(request: Request) -> Response:
    url = request.query_params.get("url")
    if not url:
        raise Refused(400, "give url=URL")
    return JSONResponse(await run_in_threadpool(link, console_of(request), url))


def rate_limits(console: Console) -> list[dict[str, Any]]:
    keys = []
    for raw in console.redis.scan_iter(match="ratelimit:*", count=500):
        keys.append(_s(raw))
        if len(keys) >= MAX_LIMITS:
            break
    pipe = console.redis.pipeline(transaction=False)
    for k in keys:
        pipe.pttl(k)
    now = time.time()
    limits = []
    for k, left in zip(keys, pipe.execute() if keys else [], strict=True):
        _, service, profile = k.split(":", 2)
        if left and left > 0:
            limits.append({"service": service, "profile_id": profile,
                           "until": round(now + left / 1000, 3)})
    return sorted(limits, key=lambda lim: lim["until"])


@guard()
async def ratelimits(request: Request) -> Response:
    return JSONResponse({"limits": await run_in_threadpool(rate_limits, console_of(request))})


def fleet_now(console: Console) -> dict[str, Any]:
    """Every registered process and each host's wanted and running counts, as `workers fleet
    --json`."""
    live = fleet.processes(console.redis)
    return {"processes": live, "hosts": fleet.hosts(console.redis, live)}


@guard()
async def fleet_view(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(fleet_now, console_of(request)))


@guard()
async def audit(request: Request) -> Response:
    limit = int_param(request, "limit", 100, 1, 10_000)
    return JSONResponse({"entries": await run_in_threadpool(console_of(request).audit.latest,
                                                            limit)})


@guard()
async def stream(request: Request) -> Response:
    snapshots = console_of(request).snapshots

    async def events() -> AsyncIterator[str]:
        async for rows in snapshots.stream():
            yield f"event: queues\ndata: {json.dumps({'queues': rows})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


# -- acting -----------------------------------------------------------------------------------

def start_replay(console: Console, queue: str, body: ReplayBody, user: str) -> tuple[int, Any]:
    letters: DeadLetters = console.letters(queue)
    found = letters.search(body.q, limit=body.limit or MAX_SCAN)
    selected = found.messages[:body.limit] if body.limit else found.messages
    if body.dry_run:
        return 200, {"matched": len(selected), "scanned": found.scanned}
    started = console.tasks.start(queue, [m.id for m in selected], user, body.q, body.rate)
    console.audit.record(user, "replay", queue, "started", task=started["id"],
                         q=body.q, matched=len(selected), rate=body.rate)
    return 202, {"task": started["id"], "matched": len(selected)}


@guard(OPERATOR)
async def replay(request: Request) -> Response:
    queue = queue_of(request)
    body = await body_of(request, ReplayBody)
    status, answer = await run_in_threadpool(start_replay, console_of(request), queue, body,
                                             request.state.who.user)
    return JSONResponse(answer, status)


def do_purge(console: Console, queue: str, user: str) -> int:
    purged = console.letters(queue).purge()
    console.audit.record(user, "purge", queue, "purged", purged=purged)
    return purged


@guard(OPERATOR)
async def purge(request: Request) -> Response:
    queue, console, user = queue_of(request), console_of(request), request.state.who.user
    body = await body_of(request, PurgeBody)
    if body.confirm != queue:
        await run_in_threadpool(console.audit.record, user, "purge", queue, "refused: confirm")
        raise Refused(400, f"confirm must be the queue's name, {queue!r}")
    return JSONResponse({"purged": await run_in_threadpool(do_purge, console, queue, user)})


def do_cancel(console: Console, task_id: str, user: str) -> dict[str, Any] | None:
    found = console.tasks.cancel(task_id)
    if found is not None:
        console.audit.record(user, "cancel", task_id, "asked" if found["state"] == "running"
                             else f"already {found['state']}", queue=found["queue"])
    return found


@guard(OPERATOR)
async def cancel(request: Request) -> Response:
    found = await run_in_threadpool(do_cancel, console_of(request), request.path_params["id"],
                                    request.state.who.user)
    if found is None:
        raise Refused(404, "no such task")
    return JSONResponse(found, 202)


def do_scale(console: Console, body: ScaleBody, user: str) -> None:
    """Sets the wanted count, as `workers scale QUEUE N --host H` (the host's workers-scale
    applies it); a host the fleet does not know is refused as it refuses it."""
    target = f"{body.host}/{body.queue}"
    try:
        fleet.check_host(console.redis, body.host)
    except fleet.FleetError as exc:
        console.audit.record(user, "scale", target, "refused: unknown host")
        raise Refused(400, str(exc)) from None
    fleet.set_wanted(console.redis, body.host, body.queue, body.processes)
    console.audit.record(user, "scale", target, "set", processes=body.processes)


@guard(OPERATOR)
async def scale(request: Request) -> Response:
    body = await body_of(request, ScaleBody)
    if body.queue not in PROGRAMS:
        raise Refused(404, f"unknown queue {body.queue[:100]!r}; the programs: "
                           f"{', '.join(PROGRAMS)}")
    await run_in_threadpool(do_scale, console_of(request), body, request.state.who.user)
    return JSONResponse({"host": body.host, "queue": body.queue,
                         "processes": body.processes}, 202)


@guard()
async def unknown(request: Request) -> Response:
    raise Refused(404, "no such API route")


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


routes = [
    Route("/api/session", session),
    Route("/api/queues", queues),
    Route("/api/queues/{queue}/history", queue_history),
    Route("/api/dlq/{queue}", dlq),
    Route("/api/dlq/{queue}/replay", replay, methods=["POST"]),
    Route("/api/dlq/{queue}/purge", purge, methods=["POST"]),
    Route("/api/tasks", task_list),
    Route("/api/tasks/{id}", task),
    Route("/api/tasks/{id}/cancel", cancel, methods=["POST"]),
    Route("/api/publish/{update_id}", publish),
    Route("/api/links", links),
    Route("/api/ratelimits", ratelimits),
    Route("/api/fleet", fleet_view),
    Route("/api/fleet/scale", scale, methods=["POST"]),
    Route("/api/audit", audit),
    Route("/api/stream", stream),
    Route("/api/{rest:path}", unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]
