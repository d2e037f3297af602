"""The console's pages: Jinja2 templates over the same functions as the API, a little
JavaScript of ours (static/console.js) for the live parts, htmx and uPlot vendored
(static/vendor/, pinned in its manifest.json): nothing from another host.

NAV is the navigation bar, in order; a page is a route and an entry here (the fleet's page
slots in after "Queues")."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from workers import QUEUES
from workers.console import api
from workers.console.access import Principal
from workers.console.app import Console, Refused, csrf_ok, guard, principal
from workers.console.sessions import COOKIE, SESSION_SECONDS
from workers.ops.scale import PROGRAMS
from workers.ops.tables import format_age

NAV = [("/", "Queues"), ("/fleet", "Fleet"), ("/dlq", "Dead letters"), ("/tasks", "Tasks"),
       ("/publish", "Publications"), ("/links", "Links"), ("/ratelimits", "Rate limits"),
       ("/audit", "Audit log")]

_templates = Environment(
    loader=FileSystemLoader(str(resources.files("workers.console") / "templates")),
    autoescape=select_autoescape(["html"]))
_templates.filters["age"] = lambda seconds: format_age(max(0.0, float(seconds)))
_templates.filters["when"] = lambda t: (
    "" if t is None else datetime.fromtimestamp(float(t), timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC"))


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    console: Console = request.app.state.console
    who: Principal | None = getattr(request.state, "who", None)
    session = console.sessions.get(request.cookies.get(COOKIE)) if who else None
    html = _templates.get_template(name).render(
        nav=NAV, path=request.url.path, who=who, csrf=session.csrf if session else "",
        queues=QUEUES, refresh=console.settings.console_refresh, **context)
    return HTMLResponse(html, status, headers={"cache-control": "no-store"})


# -- signing in and out -----------------------------------------------------------------------

async def login_form(request: Request) -> Response:
    return render(request, "login.html")


def _login(console: Console, user: str, password: str) -> tuple[int, str | None]:
    """(status, cookie value): 303 signed in, 401 wrong credentials, 429 throttled."""
    if console.sessions.throttled(user):
        console.audit.record(user, "login", user, "refused: too many failures")
        return 429, None
    who = console.users.authenticate(user, password)
    if who is None:
        too_many = console.sessions.failed(user)
        console.audit.record(user, "login", user, "failed")
        return (429 if too_many else 401), None
    sid, _ = console.sessions.create(who.user)
    console.audit.record(who.user, "login", who.user, "ok")
    return 303, sid


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    form = await request.form()
    user, password = str(form.get("username") or "")[:64], str(form.get("password") or "")
    status, sid = await run_in_threadpool(_login, console, user, password)
    if sid is None:
        error = ("too many failed sign-ins for this name: wait a minute" if status == 429
                 else "wrong name or password")
        if "text/html" not in request.headers.get("accept", ""):
            raise Refused(status, error)
        return render(request, "login.html", status, error=error, username=user)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, sid, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


async def logout(request: Request) -> Response:
    console: Console = request.app.state.console
    who = await run_in_threadpool(principal, request)
    if who is not None and who.via == "session":
        if not await csrf_ok(request):
            raise Refused(403, "missing or wrong CSRF token")
        sid = request.cookies.get(COOKIE)
        await run_in_threadpool(console.sessions.end, sid)
        await run_in_threadpool(console.audit.record, who.user, "logout", who.user, "ok")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- pages ------------------------------------------------------------------------------------

@guard(page=True)
async def queues_page(request: Request) -> Response:
    rows = await request.app.state.console.snapshots.latest()
    return render(request, "queues.html", rows=rows)


@guard(page=True)
async def history_page(request: Request) -> Response:
    queue = api.queue_of(request)
    minutes = api.int_param(request, "minutes", 360, 1, api.MAX_MINUTES)
    return render(request, "history.html", queue=queue, minutes=minutes)


@guard(page=True)
async def fleet_page(request: Request) -> Response:
    found = await run_in_threadpool(api.fleet_now, request.app.state.console)
    by_host = [{**host, "processes": [p for p in found["processes"] if p["host"] == host["host"]],
                # every program it runs or should run: those `workers scale` sets first
                "programs": [p for p in PROGRAMS if p in host["wanted"] or p in host["running"]]
                + sorted(set(host["running"]) - set(PROGRAMS))}
               for host in found["hosts"]]
    return render(request, "fleet.html", hosts=by_host, programs=PROGRAMS, now=time.time())


@guard(page=True)
async def dlq_index(request: Request) -> Response:
    return RedirectResponse(f"/dlq/{QUEUES[0]}", status_code=303)


@guard(page=True)
async def dlq_page(request: Request) -> Response:
    console: Console = request.app.state.console
    queue = api.queue_of(request)
    text = request.query_params.get("q", "")
    limit = api.int_param(request, "limit", api.DEFAULT_LIMIT, 1, api.MAX_SCAN)
    found = await run_in_threadpool(api.search, console, queue, text, limit)
    tasks = [t for t in await run_in_threadpool(console.tasks.latest) if t["queue"] == queue]
    return render(request, "dlq.html", queue=queue, q=text, limit=limit, found=found,
                  tasks=tasks[:10])


@guard(page=True)
async def tasks_page(request: Request) -> Response:
    tasks = await run_in_threadpool(request.app.state.console.tasks.latest)
    return render(request, "tasks.html", tasks=tasks)


@guard(page=True)
async def publish_page(request: Request) -> Response:
    update_id = request.query_params.get("update_id", "").strip()
    found = (await run_in_threadpool(api.publication, request.app.state.console, update_id)
             if update_id else None)
    return render(request, "publish.html", update_id=update_id, found=found)


@guard(page=True)
async def links_page(request: Request) -> Response:
    url, found, error = request.query_params.get("url", "").strip(), None, None
    if url:
        try:
            found = await run_in_threadpool(api.link, request.app.state.console, url)
        except Refused as exc:
            error = exc.detail
    return render(request, "links.html", url=url, found=found, error=error)


@guard(page=True)
async def ratelimits_page(request: Request) -> Response:
    limits = await run_in_threadpool(api.rate_limits, request.app.state.console)
    return render(request, "ratelimits.html", limits=limits)


@guard(page=True)
async def audit_page(request: Request) -> Response:
    entries = await run_in_threadpool(request.app.state.console.audit.latest, 200)
    return render(request, "audit.html", entries=entries)


routes = [
    Route("/login", login_form),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/", queues_page),
    Route("/queues/{queue}", history_page),
    Route("/fleet", fleet_page),
    Route("/dlq", dlq_index),
    Route("/dlq/{queue}", dlq_page),
    Route("/tasks", tasks_page),
    Route("/publish", publish_page),
    Route("/links", links_page),
    Route("/ratelimits", ratelimits_page),
    Route("/audit", audit_page),
]
