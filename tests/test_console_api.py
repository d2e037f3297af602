"""The console's JSON API (SPEC.md, "The console"), in process on the local stack (moto,
redis-server): access (deny by default, sessions, CSRF, throttling, tokens, roles), every
route's answer and every refusal, the dead letters' search and the filtered, frozen replay."""

from __future__ import annotations

import json
import time
from typing import Iterator

import pytest
from console_proc import OPERATOR, VIEWER, add_users
from starlette.testclient import TestClient

from helpers import queue_depth, wait_until
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.console import access
from workers.console.serve import build
from workers.console.sessions import COOKIE
from workers.core.settings import Settings
from workers.ops import fleet
from workers.runtime.registry import Registration

GETS = ["/api/session", "/api/queues", "/api/queues/post-sent/history", "/api/dlq/post-sent",
        "/api/tasks", "/api/tasks/abc", "/api/publish/u1", "/api/links?url=buffer.com",
        "/api/ratelimits", "/api/audit", "/api/fleet", "/api/stream", "/api/nope"]
POSTS = ["/api/dlq/post-sent/replay", "/api/dlq/post-sent/purge", "/api/tasks/abc/cancel",
         "/api/fleet/scale"]


@pytest.fixture
def users(tmp_path) -> tuple[str, dict[str, str]]:
    path = tmp_path / "users"
    add_users(path)
    tokens = {role: access.add_token(path, f"ci-{role}", role) for role in access.ROLES}
    return str(path), tokens


@pytest.fixture
def app(settings: Settings, queues, redis_client, users):
    path, _ = users
    console = settings.model_copy(update={"console_users": path, "console_refresh": 1})
    return build(console, access.Users(path))


@pytest.fixture
def anon(app) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def signed_in(app, user: tuple[str, str]) -> TestClient:
    client = TestClient(app)
    client.__enter__()
    answer = client.post("/login", data={"username": user[0], "password": user[1]},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    client.headers["X-CSRF-Token"] = client.get("/api/session").json()["csrf_token"]
    return client


@pytest.fixture
def operator(app) -> Iterator[TestClient]:
    client = signed_in(app, OPERATOR)
    yield client
    client.__exit__(None, None, None)


@pytest.fixture
def viewer(app) -> Iterator[TestClient]:
    client = signed_in(app, VIEWER)
    yield client
    client.__exit__(None, None, None)


def dead_letter(sqs, dlq: str, body: dict | str, reason: str | None = None) -> str:
    """A message in the DLQ as our daemon leaves one: its body, and why."""
    attributes = ({ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": reason}}
                  if reason else {})
    return sqs.send_message(QueueUrl=dlq, MessageBody=body if isinstance(body, str)
                            else json.dumps(body), MessageAttributes=attributes)["MessageId"]


def bodies(sqs, url: str) -> list[str]:
    """Every body now in ``url``, received and given back at once."""
    got = {}
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       VisibilityTimeout=30).get("Messages", []):
        got.update((m["MessageId"], m) for m in batch)
    if got:
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(got.values())])
    return sorted(m["Body"] for m in got.values())


def finished(client: TestClient, task: str, timeout: float = 60) -> dict:
    def done():
        found = client.get(f"/api/tasks/{task}").json()
        return found if found["state"] != "running" else None
    return wait_until(done, timeout)


# -- access -----------------------------------------------------------------------------------

def test_nothing_answers_without_a_user_or_a_token(anon):
    for path in GETS:
        answer = anon.get(path)
        assert answer.status_code == 401, path
        assert "error" in answer.json()
    for path in POSTS:
        answer = anon.post(path, json={})
        assert answer.status_code == 401, path
        assert "error" in answer.json()
    page = anon.get("/dlq/post-sent", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_signing_in_gives_an_httponly_strict_cookie_and_the_session(anon):
    answer = anon.post("/login", data={"username": OPERATOR[0], "password": OPERATOR[1]},
                       follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    session = anon.get("/api/session").json()
    assert session["user"] == "olga" and session["role"] == "operator"
    # No other site may frame the console's pages (clickjacking its buttons)
    page = anon.get("/dlq/post-sent")
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]
    assert len(session["csrf_token"]) >= 32
    # Signing out ends the session on the server, not only in this browser
    assert anon.post("/logout", data={"csrf_token": session["csrf_token"]},
                     follow_redirects=False).status_code == 303
    anon.cookies.set(COOKIE, answer.cookies[COOKIE])
    assert anon.get("/api/session").status_code == 401


def test_wrong_credentials_are_401_and_a_sixth_failure_in_a_minute_is_429(anon):
    for _ in range(5):
        wrong = anon.post("/login", data={"username": "olga", "password": "nope"})
        assert wrong.status_code == 401 and "error" in wrong.json()
    assert anon.post("/login", data={"username": "olga", "password": "nope"}
                     ).status_code == 429
    # Throttled: even the right password waits out the minute, for that name only
    right = anon.post("/login", data={"username": OPERATOR[0], "password": OPERATOR[1]},
                      follow_redirects=False)
    assert right.status_code == 429 and "error" in right.json()
    assert anon.post("/login", data={"username": VIEWER[0], "password": VIEWER[1]},
                     follow_redirects=False).status_code == 303
    assert anon.post("/login", data={"username": "nobody", "password": "x"}).status_code == 401


def test_a_cookie_post_without_the_sessions_csrf_token_is_refused(operator, sqs, dlq):
    dead_letter(sqs, dlq, {"update_id": "1"}, "kept")
    token = operator.headers.pop("X-CSRF-Token")
    for sent in ({}, {"X-CSRF-Token": "forged"}):
        answer = operator.post("/api/dlq/post-sent/purge", json={"confirm": "post-sent"},
                               headers=sent)
        assert answer.status_code == 403 and "csrf" in answer.json()["error"].lower()
    forged = operator.post("/api/dlq/post-sent/purge", data={"confirm": "post-sent"})
    assert forged.status_code == 403
    assert queue_depth(sqs, dlq) == 1
    # The form field works as well as the header
    done = operator.post("/api/dlq/post-sent/purge",
                         data={"confirm": "post-sent", "csrf_token": token})
    assert done.status_code == 200 and done.json()["purged"] == 1


def test_a_viewer_reads_and_may_not_act(viewer, sqs, dlq):
    dead_letter(sqs, dlq, {"update_id": "1"}, "kept")
    for path in ("/api/queues", "/api/dlq/post-sent", "/api/tasks", "/api/audit"):
        assert viewer.get(path).status_code == 200, path
    for path, body in (("/api/dlq/post-sent/replay", {}),
                       ("/api/dlq/post-sent/purge", {"confirm": "post-sent"}),
                       ("/api/tasks/abc/cancel", {})):
        answer = viewer.post(path, json=body)
        assert answer.status_code == 403 and "viewer" in answer.json()["error"], path
    assert queue_depth(sqs, dlq) == 1


def test_tokens_work_as_bearer_without_csrf_and_keep_their_role(anon, users, sqs, dlq):
    _, tokens = users
    dead_letter(sqs, dlq, {"update_id": "1"}, "x")
    as_operator = {"Authorization": f"Bearer {tokens['operator']}"}
    assert anon.get("/api/session", headers=as_operator).json()["role"] == "operator"
    assert anon.post("/api/dlq/post-sent/replay", json={"dry_run": True},
                     headers=as_operator).json()["matched"] == 1
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert anon.post("/api/dlq/post-sent/purge", json={"confirm": "post-sent"},
                     headers=viewer).status_code == 403
    assert anon.get("/api/queues", headers={"Authorization": "Bearer wkc_forged"}
                    ).status_code == 401
    # Only hashes are kept
    assert tokens["operator"] not in open(users[0]).read()


def test_every_refusal_is_json(operator):
    refusals = [
        (operator.get("/api/dlq/nope"), 404),
        (operator.get("/api/queues/nope/history"), 404),
        (operator.get("/api/tasks/nope"), 404),
        (operator.get("/api/publish/never-seen"), 404),
        (operator.get("/api/nothing/here"), 404),
        (operator.get("/api/links?url=ftp://x"), 400),
        (operator.get("/api/links"), 400),
        (operator.get("/api/queues/post-sent/history?minutes=99999"), 400),
        (operator.get("/api/dlq/post-sent?limit=abc"), 400),
        (operator.post("/api/dlq/post-sent/replay", json={"limit": "many"}), 400),
        (operator.post("/api/dlq/post-sent/replay", json={"rate": 0}), 400),
        (operator.post("/api/dlq/post-sent/replay", json={"surprise": 1}), 400),
        (operator.post("/api/dlq/post-sent/replay", content=b"{not json",
                       headers={"content-type": "application/json"}), 400),
        (operator.post("/api/dlq/nope/replay", json={}), 404),
        (operator.post("/api/dlq/post-sent/purge", json={"confirm": "email"}), 400),
        (operator.post("/api/tasks/nope/cancel"), 404),
    ]
    for answer, status in refusals:
        assert answer.status_code == status, (answer.request.url, answer.text)
        assert set(answer.json()) == {"error"}, answer.text


# -- reading ----------------------------------------------------------------------------------

def test_queues_show_each_queues_figures(operator, sqs, source, dlq):
    sqs.send_message(QueueUrl=source, MessageBody="{}")
    dead_letter(sqs, dlq, {"update_id": "1"}, "x")
    # Within an interval (one snapshot per interval for everyone), the figures show them
    rows = wait_until(lambda: {r["queue"]: r for r in operator.get("/api/queues").json()[
        "queues"] if r["visible"] == 1 and r["dlq"] == 1} or None, 10)
    assert set(rows) == {"post-sent"}
    rows = {r["queue"]: r for r in operator.get("/api/queues").json()["queues"]}
    assert set(rows) == {"publish", "post-sent", "analytics", "push", "email"}
    assert set(rows["post-sent"]) == {"queue", "visible", "in_flight", "delayed", "dlq",
                                      "oldest_age_s", "processes", "handled_per_s"}


def test_a_point_a_minute_is_kept_in_redis(operator, redis_client):
    # The console writes the current minute's point at start (one console a minute)
    points = wait_until(lambda: operator.get("/api/queues/post-sent/history?minutes=5"
                                             ).json()["points"], 20)
    assert set(points[0]) == {"t", "visible", "in_flight", "dlq", "handled"}
    assert points[0]["t"] % 60 == 0 and abs(points[0]["t"] - time.time()) < 120
    assert redis_client.zcard("console:history:post-sent") == 1


def test_search_matches_body_or_reason_and_leaves_the_dead_letters(operator, sqs, dlq):
    dead_letter(sqs, dlq, {"update_id": "1", "url": "https://Buffer.com/a"}, "redis down")
    dead_letter(sqs, dlq, {"update_id": "2"}, "Invalid URL in body")
    dead_letter(sqs, dlq, "not json at all")
    found = operator.get("/api/dlq/post-sent?q=buffer.COM").json()
    assert found["matched"] == 1 and found["scanned"] == 3
    assert json.loads(found["messages"][0]["body"])["update_id"] == "1"
    assert found["messages"][0]["reason"] == "redis down"
    assert set(found["messages"][0]) == {"message_id", "body", "reason", "receives", "sent_at"}
    assert operator.get("/api/dlq/post-sent?q=invalid url").json()["matched"] == 1
    assert operator.get("/api/dlq/post-sent?limit=2").json()["matched"] == 3
    # Browsing left every message in the DLQ, visible to the next look at once
    assert len(operator.get("/api/dlq/post-sent?limit=2").json()["messages"]) == 2
    assert operator.get("/api/dlq/post-sent").json()["matched"] == 3


def test_publication_link_count_and_rate_limits(operator, redis_client):
    redis_client.hset("published:u9", mapping={"service": "twitter", "service_update_id": "77",
                                               "published_at": 1700000000})
    redis_client.hset("publishing:u9", mapping={"state": "done", "tried": 1, "chained": 1})
    found = operator.get("/api/publish/u9").json()
    assert (found["state"], found["service"], found["service_update_id"],
            found["published_at"]) == ("published", "twitter", "77", 1700000000)
    assert operator.get("/api/links?url=https://www.Buffer.com/").json() == {
        "url": "https://www.Buffer.com/", "normalized": "buffer.com", "shares": 0}
    redis_client.set("ratelimit:twitter:42", 1, px=60_000)
    limits = operator.get("/api/ratelimits").json()["limits"]
    assert [(lim["service"], lim["profile_id"]) for lim in limits] == [("twitter", "42")]
    assert time.time() + 50 < limits[0]["until"] <= time.time() + 61


# -- acting -----------------------------------------------------------------------------------

def test_a_filtered_replay_moves_the_matches_back_and_only_them(operator, sqs, source, dlq):
    for n in range(3):
        dead_letter(sqs, dlq, {"update_id": f"m{n}", "url": "https://match.example"}, "boom")
    dead_letter(sqs, dlq, {"update_id": "other"}, "unrelated")
    dry = operator.post("/api/dlq/post-sent/replay", json={"q": "MATCH.example",
                                                           "dry_run": True})
    assert dry.status_code == 200 and dry.json()["matched"] == 3 and "task" not in dry.json()
    assert queue_depth(sqs, source) == 0
    started = operator.post("/api/dlq/post-sent/replay", json={"q": "match.example"})
    assert started.status_code == 202 and started.json()["matched"] == 3
    task = finished(operator, started.json()["task"])
    assert (task["state"], task["moved"], task["total"], task["user"]) == (
        "completed", 3, 3, "olga")
    assert [json.loads(b)["update_id"] for b in bodies(sqs, source)] == ["m0", "m1", "m2"]
    assert [json.loads(b)["update_id"] for b in bodies(sqs, dlq)] == ["other"]
    assert operator.get("/api/tasks").json()["tasks"][0]["id"] == task["id"]


def test_the_replayed_set_is_frozen_when_the_task_starts(operator, sqs, source, dlq):
    for n in range(3):
        dead_letter(sqs, dlq, {"update_id": f"m{n}", "tag": "again"}, "boom")
    # At 1 a second, the task is still running when more matching dead letters arrive
    started = operator.post("/api/dlq/post-sent/replay", json={"q": "again", "rate": 1})
    assert started.status_code == 202
    later = dead_letter(sqs, dlq, {"update_id": "late", "tag": "again"}, "boom")
    task = finished(operator, started.json()["task"])
    assert (task["state"], task["moved"], task["total"]) == ("completed", 3, 3)
    assert [json.loads(b)["update_id"] for b in bodies(sqs, source)] == ["m0", "m1", "m2"]
    left = operator.get("/api/dlq/post-sent?q=again").json()["messages"]
    assert [m["message_id"] for m in left] == [later]


def test_a_cancelled_task_stops_and_keeps_what_it_moved(operator, sqs, source, dlq):
    for n in range(6):
        dead_letter(sqs, dlq, {"update_id": f"c{n}"}, "boom")
    task_id = operator.post("/api/dlq/post-sent/replay", json={"rate": 1}).json()["task"]
    wait_until(lambda: operator.get(f"/api/tasks/{task_id}").json()["moved"] >= 1, 30)
    assert operator.post(f"/api/tasks/{task_id}/cancel").status_code == 202
    task = finished(operator, task_id)
    assert task["state"] == "cancelled" and 1 <= task["moved"] < 6
    assert len(bodies(sqs, source)) == task["moved"]
    assert len(bodies(sqs, source)) + len(bodies(sqs, dlq)) == 6


def test_purge_needs_the_queues_name_and_every_action_is_audited(operator, sqs, dlq):
    dead_letter(sqs, dlq, {"update_id": "1"}, "x")
    assert operator.post("/api/dlq/post-sent/purge", json={"confirm": "post"}
                         ).status_code == 400
    assert queue_depth(sqs, dlq) == 1
    assert operator.post("/api/dlq/post-sent/purge", json={"confirm": "post-sent"}
                         ).json() == {"purged": 1}
    wait_until(lambda: queue_depth(sqs, dlq) == 0, 10)
    entries = operator.get("/api/audit").json()["entries"]
    assert [(e["user"], e["action"], e["target"], e["result"]) for e in entries[:3]] == [
        ("olga", "purge", "post-sent", "purged"),
        ("olga", "purge", "post-sent", "refused: confirm"),
        ("olga", "login", "olga", "ok")]
    assert entries[0]["time"] <= time.time()


def test_health_and_metrics_answer_without_a_user_as_the_other_programs_do(anon):
    assert anon.get("/health").json() == {"status": "ok"}
    assert "workers_console_snapshots_total" in anon.get("/metrics").text


# -- the fleet --------------------------------------------------------------------------------

FIGURES = {"last_poll_at": 1_796_000_000.5, "handled": 120, "failed": 3, "dead_lettered": 2,
           "in_flight": 7}


@pytest.fixture
def registered(settings: Settings, redis_client) -> list[Registration]:
    """Two processes on two hosts, written once through the registry's own refresh (its
    thread is never started: the entries last their 15 s, longer than a test)."""
    entries = [Registration(settings.redis_url, "worker-1", "post-sent", queue="post-sent",
                            snapshot=lambda: FIGURES),
               Registration(settings.redis_url, "worker-2", "links-api")]
    for entry in entries:
        entry.refresh()
    fleet.set_wanted(redis_client, "worker-1", "post-sent", 2)
    return entries


def test_the_fleet_lists_the_registered_processes_by_host(viewer, registered):
    answer = viewer.get("/api/fleet")
    assert answer.status_code == 200
    found = answer.json()
    assert set(found) == {"processes", "hosts"}
    by_id = {p["id"]: p for p in found["processes"]}
    assert set(by_id) == {r.id for r in registered}
    daemon = by_id[registered[0].id]
    assert {k: daemon[k] for k in ("host", "program", "queue", *FIGURES)} == {
        "host": "worker-1", "program": "post-sent", "queue": "post-sent", **FIGURES}
    assert daemon["stale"] is False
    assert found["hosts"] == [
        {"host": "worker-1", "wanted": {"post-sent": 2}, "running": {"post-sent": 1}},
        {"host": "worker-2", "wanted": {}, "running": {"links-api": 1}}]


def test_an_operator_scales_a_host_and_it_is_audited(operator, registered, redis_client):
    answer = operator.post("/api/fleet/scale",
                           json={"host": "worker-2", "queue": "links-api", "processes": 3})
    assert answer.status_code == 202
    [worker2] = [h for h in fleet.hosts(redis_client) if h["host"] == "worker-2"]
    assert worker2["wanted"] == {"links-api": 3}
    # The form of the page works as well (a form field for the CSRF token)
    token = operator.headers.pop("X-CSRF-Token")
    assert operator.post("/api/fleet/scale", data={
        "host": "worker-1", "queue": "post-sent", "processes": "0", "csrf_token": token},
    ).status_code == 202
    assert fleet.wanted(redis_client, "worker-1") == {"post-sent": 0}
    entries = operator.get("/api/audit").json()["entries"]
    assert [(e["user"], e["action"], e["target"], e["result"]) for e in entries[:2]] == [
        ("olga", "scale", "worker-1/post-sent", "set"),
        ("olga", "scale", "worker-2/links-api", "set")]
    assert entries[1]["processes"] == 3


def test_scaling_is_refused_to_a_viewer_without_csrf_and_for_a_bad_body(
        viewer, operator, users, anon, registered, redis_client):
    before = {h["host"]: h["wanted"] for h in fleet.hosts(redis_client)}
    body = {"host": "worker-1", "queue": "post-sent", "processes": 5}
    refused = viewer.post("/api/fleet/scale", json=body)
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]
    as_viewer = {"Authorization": f"Bearer {users[1]['viewer']}"}
    assert anon.post("/api/fleet/scale", json=body, headers=as_viewer).status_code == 403
    assert anon.post("/api/fleet/scale", json=body).status_code == 401
    token = operator.headers.pop("X-CSRF-Token")
    for sent in ({}, {"X-CSRF-Token": "forged"}):
        answer = operator.post("/api/fleet/scale", json=body, headers=sent)
        assert answer.status_code == 403 and "csrf" in answer.json()["error"].lower()
    operator.headers["X-CSRF-Token"] = token
    refusals = [
        ({"host": "worker-1", "queue": "post-sent", "processes": -1}, 400),
        ({"host": "worker-1", "queue": "post-sent", "processes": 100}, 400),
        ({"host": "worker-1", "queue": "post-sent", "processes": "many"}, 400),
        ({"host": "worker-1", "queue": "post-sent"}, 400),
        ({"host": "", "queue": "post-sent", "processes": 1}, 400),
        ({**body, "surprise": 1}, 400),
        ({"host": "worker-1", "queue": "nope", "processes": 1}, 404),
        # as `workers scale --host`, a host the fleet does not know (a typo) is refused
        ({"host": "wroker-1", "queue": "post-sent", "processes": 1}, 400),
    ]
    for sent, status in refusals:
        answer = operator.post("/api/fleet/scale", json=sent)
        assert answer.status_code == status, (sent, answer.text)
        assert set(answer.json()) == {"error"}, answer.text
    assert "no host 'wroker-1' in the fleet" in operator.post(
        "/api/fleet/scale", json={**body, "host": "wroker-1"}).json()["error"]
    not_json = operator.post("/api/fleet/scale", content=b"{not json",
                             headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert {h["host"]: h["wanted"] for h in fleet.hosts(redis_client)} == before
    assert fleet.wanted(redis_client, "wroker-1") is None
    assert operator.get("/api/audit").json()["entries"][0]["result"] == "refused: unknown host"


def test_the_fleet_page_shows_processes_and_a_form_only_to_an_operator(operator, viewer,
                                                                        registered):
    page = operator.get("/fleet")
    assert page.status_code == 200
    assert '<a href="/fleet" aria-current="page">Fleet</a>' in page.text.replace(" >", ">")
    for entry in registered:
        assert f'data-id="{entry.id}"' in page.text
    assert 'class="scale inline" data-host="worker-1" data-queue="post-sent"' in page.text
    seen = viewer.get("/fleet")
    assert registered[0].id in seen.text and "worker-2" in seen.text
    assert 'class="scale' not in seen.text and "scaling is an operator's" in seen.text
