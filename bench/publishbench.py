"""publish: one daemon against the networks' stand-ins, beside the hand-written publisher.

Both drain the same number of publish events (20 profiles, the three networks in turn) from
the fast SQS stand-in (ministack, bench/standin.py; moto's server when it is not installed,
whose every call slows with the depth of the queues ours chains into), posting to the
stand-ins of X, Facebook and LinkedIn (devstack/networks/) with ``latency_ms`` added
to every network answer, as a real API's round trip would. Ours runs `workers run publish`
with its defaults (claim, record, chain post-sent and a delayed analytics, Pusher off); the
baseline (bench/baselines/naive_publisher.py) only posts and deletes. What exactly once costs
shows in the ratios: posts per second and CPU per post (both from the first post on: start-up
is not the work), Redis round trips per post (counted in the process, bench/tripcount.py) and
commands (Redis's own count, those its scripts run included), and create calls per post.
Every run is verified: each update on its network exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import procstat
import redis
import standin

import devstack
from devstack.networks import Control
from workers.core.settings import Settings
from workers.ops import provision

BENCH_DIR = Path(__file__).resolve().parent
PROFILES = 20
SERVICES = ("twitter", "facebook", "linkedin")
CONCURRENCY = 20  # ours: the default; the baseline: 2 threads x 10, the same in hand
TIMEOUT_SECONDS = 600


def accounts() -> list[dict[str, Any]]:
    found = []
    for n in range(PROFILES):
        found += [{"service": "twitter", "token": f"x-{n}", "user_id": f"880{n:04d}",
                   "username": f"bench{n}"},
                  {"service": "facebook", "token": f"fb-{n}", "pages": [page(n)]},
                  {"service": "linkedin", "token": f"li-{n}", "authors": [author(n)]}]
    return found


def page(n: int) -> str:
    return f"77000000{n:04d}"


def author(n: int) -> str:
    return f"urn:li:person:bench{n}"


def events(count: int, tag: str) -> list[str]:
    bodies = []
    for i in range(count):
        n, service = i % PROFILES, SERVICES[i % len(SERVICES)]
        event = {"update_id": f"{tag}-{i}", "profile_id": f"bp{n}", "service": service,
                 "text": f"bench {tag} post {i} https://bench.example/{i}"}
        if service != "twitter":
            event["target"] = page(n) if service == "facebook" else author(n)
        bodies.append(json.dumps(event))
    return bodies


def measure(posts: int, latency_ms: float, workdir: Path) -> dict[str, Any]:
    os.environ.update(devstack.FAKE_CREDENTIALS)  # the stand-ins take any; only they are asked
    account_file = workdir / "bench-accounts.json"
    account_file.write_text(json.dumps({"accounts": accounts()}))
    if standin.installed():
        sqs_server = devstack.ministack_server(standin.VENV,
                                               log_path=workdir / "publish-sqs.log")
    else:
        sqs_server = devstack.moto_server(log_path=workdir / "publish-sqs.log")
    sqs_server.start()
    server = devstack.redis_server(log_path=workdir / "publish-redis.log").start()
    networks = devstack.networks_server(account_file, log_path=workdir / "networks.log",
                                        extra=["--latency-ms", str(round(latency_ms))]).start()
    for service in (sqs_server, server, networks):
        assert service.proc is not None
        procstat.remember(service.proc.pid)
    try:
        client = redis.Redis(port=server.port)
        for n in range(PROFILES):
            client.hset(f"creds:bp{n}", mapping={"twitter": f"x-{n}", "facebook": f"fb-{n}",
                                                 "linkedin": f"li-{n}"})
        url = f"http://127.0.0.1:{networks.port}"
        runs = {kind: _run(kind, posts, sqs_server, server, url, client, workdir)
                for kind in ("naive", "ours")}
    finally:
        networks.stop()
        server.discard()
        sqs_server.stop()
    ours, naive = runs["ours"], runs["naive"]
    return {"posts": posts, "latency_ms": latency_ms, "sqs": sqs_server.name, "runs": runs,
            "ratios": {"posts_per_second": ours["posts_per_second"] / naive["posts_per_second"],
                       "cpu_ms_per_post": ours["cpu_ms_per_post"] / naive["cpu_ms_per_post"]}}


def _run(kind: str, posts: int, sqs_server: devstack.Service, server: devstack.Service,
         url: str, client: redis.Redis, workdir: Path) -> dict[str, Any]:
    prefix = f"pb{uuid.uuid4().hex[:8]}-"
    settings = Settings(endpoint_url=f"http://127.0.0.1:{sqs_server.port}", queue_prefix=prefix)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=settings.endpoint_url)
    provision.create_queues(settings, sqs)
    queue = sqs.get_queue_url(QueueName=prefix + "publish")["QueueUrl"]
    bodies = events(posts, prefix)
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:start + 10])])
    control = Control(url)
    before, asked = _created(control), _create_requests(control)
    env = devstack.stack_env(sqs_server.port, server.port, WORKERS_QUEUE_PREFIX=prefix,
                             WORKERS_ANALYTICS_DELAY="900",
                             # Its warm stop waits out a long poll: a short one, after the run.
                             WORKERS_WAIT_SECONDS="1",
                             **{f"WORKERS_{s.upper()}_API_URL": url for s in SERVICES})
    trips = workdir / f"publish-{kind}.trips"
    if kind == "ours":
        argv = [sys.executable, str(BENCH_DIR / "tripcount.py"), str(trips), "run", "publish",
                "--concurrency", str(CONCURRENCY)]
    else:
        argv = [sys.executable, str(BENCH_DIR / "tripcount.py"), str(trips),
                str(BENCH_DIR / "baselines" / "naive_publisher.py")]
    client.config_resetstat()
    out = open(workdir / f"publish-{kind}.log", "ab")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    procstat.remember(proc.pid)
    try:
        started = time.monotonic()
        while _created(control) == before:  # from the first post: start-up is not the work
            _check(proc, kind, started)
        first, cpu_first = _created(control) - before, procstat.cpu_seconds(proc.pid)
        started = time.monotonic()
        while _created(control) - before < posts:
            _check(proc, kind, started)
        seconds = time.monotonic() - started
        cpu = procstat.cpu_seconds(proc.pid) - cpu_first
        rss = procstat.peak_rss_bytes(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
    commands = sum(s["calls"] for s in client.info("commandstats").values())
    measured = posts - first
    posted = [p for p in control.posts() if p["text"].startswith(f"bench {prefix} ")]
    once = len({p["text"] for p in posted}) == len(posted) == posts
    return {"posts": posts, "seconds": seconds, "posts_per_second": measured / seconds,
            "cpu_ms_per_post": cpu * 1000 / measured, "peak_rss_mb": rss / 2**20,
            # Redis's count (script-internal commands too), and ours, the daemon's requests.
            "redis_commands_per_post": commands / posts,
            "redis_round_trips_per_post": (int(trips.read_text()) / posts
                                           if trips.exists() else None),
            "create_calls_per_post": (_create_requests(control) - asked) / posts,
            "each_once": once}


def _check(proc: subprocess.Popen, kind: str, started: float) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{kind} publisher exited with {proc.returncode}")
    if time.monotonic() - started > TIMEOUT_SECONDS:
        raise RuntimeError(f"{kind}: nothing posted in {TIMEOUT_SECONDS} s")
    time.sleep(0.02)


def _create_requests(control: Control) -> int:
    stats = control.stats()
    return sum(stats[s]["create_requests"] for s in SERVICES)


def _created(control: Control) -> int:
    stats = control.stats()
    return sum(stats[s]["created"] for s in SERVICES)


def lines(result: dict[str, Any]) -> list[str]:
    ours, naive = result["runs"]["ours"], result["runs"]["naive"]
    rows = [("", "posts/s", "CPU ms/post", "Redis round trips/post", "Redis commands/post",
             "peak RSS MB", "each once")]
    for name, run in (("ours (exactly once)", ours), ("hand-written", naive)):
        trips = run["redis_round_trips_per_post"]
        rows.append((name, f"{run['posts_per_second']:.0f}", f"{run['cpu_ms_per_post']:.2f}",
                     "?" if trips is None else f"{trips:.2f}",
                     f"{run['redis_commands_per_post']:.1f}", f"{run['peak_rss_mb']:.0f}",
                     "yes" if run["each_once"] else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ([f"publish: {result['posts']} posts, networks answering in "
             f"+{result['latency_ms']:g} ms, SQS on {result['sqs']}, one process each"]
            + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
               for r in rows]
            + [f"  ours / hand-written: {result['ratios']['posts_per_second']:.2f}x the posts "
               f"per second, {result['ratios']['cpu_ms_per_post']:.2f}x the CPU per post"])
