"""The chaos suite's machinery (run by tests/test_chaos.py): a workload of post-sent events with
duplicates and poison among them, the whole fleet under a real supervisord behind a fault
proxy, a driver that breaks things while the events flow, and the figures checked at the end.

What breaks, for real and never through a hook in the daemons' code:

* **daemons**: a random post-sent daemon gets SIGKILL; supervisord starts another.
* **redis-server**: SIGKILL, then started again on the same port and files. It runs as counters
  need in production: ``appendonly yes`` with ``appendfsync always``, so a write is on disk
  before Redis acknowledges it. A graceful SIGTERM would save even without that, but a crash
  (OOM killer, a lost host) gives no such chance, and only an acknowledged-is-durable Redis
  makes "counted, archived, then deleted" safe; so the harsher kill is the one tested. Each
  restart checks that a key written just before the kill, and every count read then, survived.
* **the SQS endpoint** (the fault proxy every AWS client of the fleet goes through): refuses
  connections for a few seconds and drops the open ones; moto, behind it, keeps its state.
* **the S3 link archive**: the proxy fails a fraction of PutObject calls with 503 or 500, so
  some archive writes fail and their messages come back (see tests/faultproxy.py).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3
import redis

from helpers import REPO, DeadLetters, Fleet, queue_depth, wait_until
from workers import QUEUES, archive, devstack, provision
from workers.links import LinkCounter
from workers.settings import Settings, procs_variable
from workers.sqs import ERROR_ATTRIBUTE

SEED = 20261123
# A short visibility timeout and long poll, so a killed daemon's messages and failed messages
# come back within seconds (the consumer's backoff doubles it on each receive), and a daemon's
# warm stop waits out at most a second's poll.
VISIBILITY_TIMEOUT = 2
WAIT_SECONDS = 1
# Out of reach of bad luck. What raises a valid event's receive count is bounded by the run's
# faults: one doomed archive write at most (the proxy dooms each update once), one per kill
# that catches it in hand, and a couple per Redis restart or endpoint outage (received while
# it lasts, or a receive whose answer was dropped); runs show 4 at most. Long before 30
# receives the backoff (2 s, doubling) would outlast the run, so a valid event in the DLQ can
# only be a bug, never bad luck.
MAX_RECEIVES = 30
POST_SENT_PROCS = 3
CONCURRENCY = 20
# moto's SQS does work linear in a queue's depth on every call: feed at a bounded backlog.
BACKLOG = 200
# SQS caps a batch's payload (and moto keeps to 256 KiB).
BATCH_BYTES = 250_000
# A backlog that has not gone down in this long means the fleet stopped consuming: say so,
# rather than wait for pytest's timeout.
STALL_SECONDS = 120
OUTAGE_SECONDS = 3.0
# How long redis-server stays down, restart after restart: longer than redis-py's own retries
# of a refused connection (10, backing off to 1 s: about 4 s at most), so handlers fail and
# their messages come back; then short, which those retries ride out.
REDIS_DOWN_SECONDS = (6.0, 1.0)
# Faults the proxy makes on S3 PutObject: objects whose first PUT fails (boto3's retry gets
# through), and objects whose every PUT fails (the archive write fails, the batch is retried).
S3_FLAKY_RATE = 0.05
S3_DOOMED_RATE = 0.05
CREATED_AT = 1480431305
# Log lines of a daemon that only a bug writes (a handler or a lane raised what it should not).
BUG_EVENTS = ("handler.crashed", "lane.error")
# What the daemons log when each fault reaches them: proof that it was felt, not only made.
FELT = {"redis errors": '"reason": "redis unavailable', "SQS errors": '"event": "sqs.unavailable"',
        "archive failures": '"event": "archive.failed"'}


# -- the workload -----------------------------------------------------------------------------

@dataclass
class Workload:
    """Message bodies in send order, and what must come of them."""

    bodies: list[str] = field(default_factory=list)
    valid: int = 0  # messages holding a valid event (duplicates included)
    duplicates: int = 0  # of those, the ones repeating an update_id sent before
    poison: Counter[str] = field(default_factory=Counter)  # body -> times sent
    pairs: set[tuple[str, str]] = field(default_factory=set)  # (update_id, key) that count
    keys: list[str] = field(default_factory=list)  # every key the workload could name

    def expected_counts(self) -> dict[str, int]:
        """count(key) = the number of distinct update_ids whose events named it (SPEC.md)."""
        counts = dict.fromkeys(self.keys, 0)
        for _, key in self.pairs:
            counts[key] += 1
        return counts


def url_keys(count: int) -> list[str]:
    """Normalized keys: bare hosts, paths, and paths with a query that is kept."""
    shapes = [lambda i: f"site{i}.example", lambda i: f"site{i % 97}.example/p{i}",
              lambda i: f"site{i % 89}.example/a/{i}?id={i}&x=y"]
    return [shapes[i % 3](i) for i in range(count)]


def spell(key: str, rng: random.Random) -> str:
    """One of the many URLs that normalize to ``key`` (SPEC.md, "URL normalization")."""
    host, slash, rest = key.partition("/")
    scheme = rng.choice(["http", "https"])
    port = rng.choice(["", "", f":{80 if scheme == 'http' else 443}"])
    host = rng.choice([host, f"www.{host}", host.upper(), f"WWW.{host.capitalize()}"])
    path = slash + rest if slash else rng.choice(["", "/"])
    if rng.random() < 0.3:
        path += ("&" if "?" in path else "?") + "utm_source=chaos&utm_medium=q"
    fragment = rng.choice(["", "", "#top"])
    pad = rng.choice(["", " "])
    return f"{pad}{scheme}://{host}{port}{path}{fragment}{pad}"


INVALID_URLS = ["ftp://site1.example/file", "javascript:alert(1)", "https://", "mailto:a@b.c",
                "https://site2.example/" + "x" * 2100]


def poison_body(i: int, rng: random.Random) -> str:
    """A message no retry can fix, told apart from every other by its number."""
    tag = f"poison-{i}"
    makers: list[Callable[[], str]] = [
        lambda: f"{tag}: not JSON at all",
        lambda: '{"update_id": "%s", "profile_id": "p1", "url": "https://site0.exa' % tag,
        lambda: json.dumps({"update_id": tag, "url": "https://site0.example/"}),
        lambda: json.dumps({"update_id": tag, "profile_id": 7, "url": "https://a.example"}),
        lambda: json.dumps({"update_id": " ", "profile_id": tag}),
        lambda: json.dumps({"update_id": tag, "profile_id": "p1", "created_at": "yesterday"}),
        lambda: json.dumps({"update_id": tag, "profile_id": "p1", "urls": "https://a.example"}),
        lambda: json.dumps([tag, "https://site0.example/"]),
        lambda: "\ufeff" + json.dumps({"update_id": tag, "profile_id": "\u202e\U0001F600"}),
        lambda: "[" * 3000 + json.dumps(tag) + "]" * 3000,
    ]
    draw = rng.random()
    if draw < 0.005:  # near SQS's size limit: a handful per long run
        return json.dumps({"update_id": tag, "pad": "x" * 200_000})
    if draw < 0.02:
        return json.dumps({"update_id": tag, "profile_id": "p1",
                           "urls": [f"https://a.example/{n}" for n in range(1001)]})
    return rng.choice(makers)()


def workload(events: int, seed: int = SEED) -> Workload:
    """``events`` messages: a tenth duplicates of valid events, a tenth poison, the rest valid
    events naming none to three of a pool of URLs, each spelled in one of its many forms, some
    beside an invalid URL (skipped, the rest still counts)."""
    rng = random.Random(seed)
    work = Workload(keys=url_keys(max(60, events // 20)))
    poison, duplicates = events // 10, events // 10
    originals: list[tuple[dict[str, Any], str]] = []
    messages: list[str] = []

    def add(event: dict[str, Any], body: str) -> None:
        messages.append(body)
        work.pairs.update((event["update_id"], key) for key in event["keys"])

    for i in range(events - poison - duplicates):
        event = {"update_id": f"u{i}", "profile_id": f"p{i % 50}", "created_at": CREATED_AT,
                 "service": rng.choice(["twitter", "facebook", "linkedin"]),
                 "keys": rng.sample(work.keys, rng.choice([0, 1, 1, 1, 2, 2, 3]))}
        body = post_body(event, rng, invalid=rng.random() < 0.1)
        originals.append((event, body))
        add(event, body)
    for _ in range(duplicates):
        event, body = rng.choice(originals)
        how = rng.random()
        if how < 0.6:  # the API sent the same body twice
            add(event, body)
        elif how < 0.9:  # the same event, its URLs spelled otherwise
            add(event, post_body(event, rng))
        else:  # the same update naming one more URL: that one counts for it too
            more = {**event, "keys": event["keys"] + [rng.choice(work.keys)]}
            add(more, post_body(more, rng))
    work.valid, work.duplicates = len(messages), duplicates
    for i in range(poison):
        body = poison_body(i, rng)
        work.poison[body] += 1
        messages.append(body)
    rng.shuffle(messages)
    work.bodies = messages
    return work


def post_body(event: dict[str, Any], rng: random.Random, invalid: bool = False) -> str:
    """A post-sent message naming ``event``'s keys, in ``url`` or ``urls``."""
    urls = [spell(key, rng) for key in event["keys"]]
    if invalid:
        urls.insert(rng.randrange(len(urls) + 1), rng.choice(INVALID_URLS))
    body = {k: event[k] for k in ("update_id", "profile_id", "created_at", "service")}
    if len(urls) == 1 and rng.random() < 0.5:
        body["url"] = urls[0]
    else:
        body["urls"] = urls
    return json.dumps(body)


# -- the stack --------------------------------------------------------------------------------

def static_port() -> int:
    """A free port below the kernel's ephemeral range. The proxy closes and reopens its port
    during an outage; an outgoing connection could take an ephemeral port meanwhile."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 20_000), low) if low > 2048 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port below the ephemeral range")


class Stack:
    """moto, redis-server (durable), the fault proxy and the fleet under supervisord: each a
    process of our own on loopback, stopped by its PID by ``close``."""

    def __init__(self, seed: int = SEED):
        # Short: supervisord's unix socket path is at most 107 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="wch"))
        self.seed = seed
        self.prefix = f"chaos{uuid.uuid4().hex[:8]}-"
        self.bucket = f"chaos-archive-{uuid.uuid4().hex[:8]}"
        self.moto = devstack.moto_server(log_path=self.run_dir / "moto.log")
        # Durable as production runs it for counters: see the module's docstring.
        self.redis = devstack.redis_server(
            log_path=self.run_dir / "redis.log",
            extra=("--appendonly", "yes", "--appendfsync", "always"))
        self.proxy_port, self.control_port = static_port(), devstack.free_port()
        self.proxy: devstack.Service | None = None
        self.fleet: Fleet | None = None

    def start(self) -> "Stack":
        try:
            self.moto.start()
            self.redis.start()
            self.proxy = devstack.Service("faultproxy", [
                sys.executable, str(REPO / "tests" / "faultproxy.py"),
                "--port", str(self.proxy_port), "--control-port", str(self.control_port),
                "--upstream-port", str(self.moto.port), "--seed", str(self.seed),
                "--s3-flaky-rate", str(S3_FLAKY_RATE), "--s3-doomed-rate", str(S3_DOOMED_RATE),
            ], self.proxy_port, self.run_dir / "faultproxy.log").start()
            devstack.wait_for_port(self.control_port, proc=self.proxy.proc)
            provision.create_queues(self.settings, self.sqs, self.s3)
            self.fleet = Fleet(self.env)
            self.fleet.start()
            wait_until(lambda: len(self.fleet.pids("")) == len(self.daemons), timeout=60,
                       interval=0.3)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def settings(self) -> Settings:
        """The queues' settings, as the test sees them: moto itself, no proxy between."""
        return Settings(endpoint_url=f"http://127.0.0.1:{self.moto.port}",
                        queue_prefix=self.prefix, visibility_timeout=VISIBILITY_TIMEOUT,
                        max_receives=MAX_RECEIVES, archive_bucket=self.bucket)

    @property
    def env(self) -> dict[str, str]:
        """The fleet's environment: every AWS client through the proxy."""
        env = devstack.stack_env(
            self.proxy_port, self.redis.port,
            WORKERS_QUEUE_PREFIX=self.prefix, WORKERS_ARCHIVE_BUCKET=self.bucket,
            WORKERS_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
            WORKERS_MAX_RECEIVES=str(MAX_RECEIVES), WORKERS_WAIT_SECONDS=str(WAIT_SECONDS),
            WORKERS_RUN_DIR=str(self.run_dir),
            WORKERS_BIN=str(Path(sys.executable).parent / "workers"),
            WORKERS_CONCURRENCY=str(CONCURRENCY), WORKERS_STOPWAITSECS="30")
        for queue in QUEUES:  # every slot started, so every line of `status` must say RUNNING
            procs = POST_SENT_PROCS if queue == "post-sent" else 1
            env[procs_variable(queue)] = str(procs)
            env[procs_variable(queue).replace("_PROCS", "_MAX_PROCS")] = str(procs)
        return env

    @property
    def daemons(self) -> list[str]:
        """supervisord's names of every daemon the fleet runs."""
        return [f"{q}:{q}_{n:02d}" for q in QUEUES
                for n in range(POST_SENT_PROCS if q == "post-sent" else 1)]

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name="us-east-1",
                            endpoint_url=f"http://127.0.0.1:{self.moto.port}")

    @property
    def sqs(self) -> Any:
        return self.client("sqs")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    def url(self, name: str) -> str:
        return self.sqs.get_queue_url(QueueName=self.prefix + name)["QueueUrl"]

    def redis_client(self) -> redis.Redis:
        return redis.Redis(port=self.redis.port, socket_connect_timeout=2, socket_timeout=10)

    def proxy_stats(self) -> dict[str, int]:
        return _control(self.control_port, "GET", "/stats")

    def close(self, keep_logs: bool = True) -> None:
        """Stops everything it started, by PID; removes its files unless ``keep_logs``."""
        if self.fleet is not None:
            self.fleet.teardown()
        if self.proxy is not None:
            self.proxy.stop()
        self.moto.stop()
        self.redis.discard()
        if not keep_logs:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _control(port: int, method: str, path: str, timeout: float = 60) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


# -- the faults -------------------------------------------------------------------------------

@dataclass
class Plan:
    kills: int
    restarts: int
    outages: int

    @classmethod
    def for_events(cls, events: int) -> "Plan":
        """At least one of each, more as the run grows."""
        return cls(kills=max(2, events // 2000), restarts=max(1, events // 5000),
                   outages=max(1, events // 5000))

    def actions(self, rng: random.Random) -> list[str]:
        actions = ["kill"] * self.kills + ["redis"] * self.restarts + ["outage"] * self.outages
        rng.shuffle(actions)
        return actions


class Driver:
    """Does the faults, one at a time, and remembers what each did."""

    def __init__(self, stack: Stack, rng: random.Random, keys: list[str]):
        self.stack, self.rng, self.keys = stack, rng, keys
        self.kills = self.restarts = self.outages = 0
        self.redis_losses: list[str] = []

    def do(self, action: str) -> None:
        {"kill": self.kill, "redis": self.restart_redis, "outage": self.outage}[action]()

    def kill(self) -> None:
        """SIGKILL a random daemon, mostly of post-sent (where the work is: every fourth kill
        is of another queue's); wait for supervisord to run another in its place."""
        fleet = self.stack.fleet
        assert fleet is not None
        running = {name: pid for name, pid in fleet.pids("").items()
                   if name.startswith("post-sent:") != (self.kills % 4 == 3)}
        victim = self.rng.choice(sorted(running))
        pid = running[victim]
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        wait_until(lambda: fleet.pids("").get(victim, pid) != pid, timeout=60, interval=0.2)

    def restart_redis(self) -> None:
        """SIGKILL redis-server, start it again on its files; check that what it had
        acknowledged before the kill is still there."""
        self.restarts += 1
        client = self.stack.redis_client()
        counter = LinkCounter(client)
        sentinel = f"chaos:sentinel:{self.restarts}"
        client.set(sentinel, "acknowledged")
        before = sum(counter.counts(self.keys))
        self.stack.redis.stop(signal.SIGKILL)
        time.sleep(REDIS_DOWN_SECONDS[(self.restarts - 1) % len(REDIS_DOWN_SECONDS)])
        self.stack.redis.start()
        wait_until(lambda: _loaded(client), timeout=60, interval=0.1)
        after = sum(counter.counts(self.keys))
        if client.get(sentinel) != b"acknowledged" or after < before:
            self.redis_losses.append(f"restart {self.restarts}: sentinel "
                                     f"{client.get(sentinel)!r}, counts {before} -> {after}")
        client.close()

    def outage(self) -> None:
        """The SQS endpoint refuses connections for a few seconds (moto keeps its state)."""
        _control(self.stack.control_port, "POST", f"/outage?seconds={OUTAGE_SECONDS}")
        self.outages += 1


def _loaded(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:  # refused while it starts, LOADING while it replays its AOF
        return False


# -- the run ----------------------------------------------------------------------------------

def send(sqs: Any, url: str, bodies: list[str], backlog: int = BACKLOG) -> None:
    """Sends ``bodies`` in batches of 10, keeping at most ``backlog`` outstanding."""
    for start in range(0, len(bodies), 10):
        if not _until(lambda: queue_depth(sqs, url) <= backlog, STALL_SECONDS, interval=0.05):
            raise RuntimeError(f"the fleet consumed nothing for {STALL_SECONDS} s")
        batch = bodies[start:start + 10]
        if sum(len(b.encode()) for b in batch) < BATCH_BYTES:
            failed = sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)]).get("Failed")
            if failed:
                raise RuntimeError(f"moto refused {len(failed)} sends: {failed[0]}")
        else:
            for body in batch:
                sqs.send_message(QueueUrl=url, MessageBody=body)


@dataclass
class Figures:
    seed: int = SEED
    sent: int = 0
    valid: int = 0
    duplicates: int = 0
    poison: int = 0
    dead_letters: int = 0  # messages found in the DLQ
    dead_lettered: int = 0  # poison messages among them
    extra_copies: int = 0  # further copies of them (a daemon killed between copy and delete)
    without_reason: int = 0
    unexpected_dead: list[str] = field(default_factory=list)  # anything else in the DLQ
    pairs: int = 0
    counted: int = 0
    urls: int = 0
    wrong_urls: list[str] = field(default_factory=list)
    archive_missing: int = 0
    archive_unexpected: int = 0
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    daemons: int = 0
    running: int = 0
    not_running: list[str] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)  # exits supervisord saw besides our kills
    bug_lines: int = 0
    kills: int = 0
    restarts: int = 0
    redis_losses: list[str] = field(default_factory=list)
    outages: int = 0
    s3_puts_failed: int = 0
    archive_writes_failed: int = 0
    highest_receive: int = 0
    felt: dict[str, int] = field(default_factory=dict)  # the daemons' log lines of each fault
    converged: bool = False
    drain_seconds: float = 0.0  # from the last send to an empty source queue
    seconds: float = 0.0

    def problems(self) -> list[str]:
        """Every difference from what the fleet promises; empty when all is well."""
        checks = [
            (self.converged, "the source queue never emptied"),
            (self.dead_lettered == self.poison, f"{self.poison - self.dead_lettered} poison "
             "messages missing from the DLQ"),
            (not self.without_reason, f"{self.without_reason} dead letters without a reason"),
            (not self.unexpected_dead, f"dead letters that are not poison: "
             f"{self.unexpected_dead[:3]}"),
            (self.counted == self.pairs and not self.wrong_urls,
             f"counted {self.counted} of {self.pairs}; wrong: {self.wrong_urls[:5]}"),
            (not self.archive_missing and not self.archive_unexpected,
             f"archive: {self.archive_missing} pairs missing, {self.archive_unexpected} "
             "unexpected"),
            (not (self.visible or self.in_flight or self.delayed),
             f"left in the source queue: {self.visible} visible, {self.in_flight} in flight, "
             f"{self.delayed} delayed"),
            (self.running == self.daemons, f"daemons not RUNNING: {self.not_running}"),
            (not self.deaths, f"daemons died besides our kills: {self.deaths[:5]}"),
            (not self.bug_lines, f"{self.bug_lines} log lines of {'/'.join(BUG_EVENTS)}"),
            (not self.redis_losses, f"redis lost data: {self.redis_losses}"),
            (self.kills and self.restarts and self.outages and self.archive_writes_failed
             and self.s3_puts_failed > self.archive_writes_failed, "a fault never happened"),
            (all(self.felt.get(name) for name in FELT), f"a fault the fleet never felt: "
             f"{self.felt}"),
        ]
        return [message for ok, message in checks if not ok]

    def render(self) -> str:
        return "\n".join([
            f"chaos: {self.sent} messages in {self.seconds:.0f} s (seed {self.seed})",
            f"  sent        {self.sent}: {self.valid} valid ({self.duplicates} duplicates), "
            f"{self.poison} poison",
            f"  DLQ         {self.dead_letters}: {self.dead_lettered} of {self.poison} poison "
            f"(+{self.extra_copies} extra copies), {len(self.unexpected_dead)} unexpected; "
            f"{self.dead_letters - self.without_reason} with a reason",
            f"  counted     {self.counted} of {self.pairs} (update, URL) pairs over "
            f"{self.urls} URLs; {len(self.wrong_urls)} URLs wrong; archive: "
            f"{self.archive_missing} pairs missing",
            f"  source      {self.visible} visible, {self.in_flight} in flight, "
            f"{self.delayed} delayed; drained {self.drain_seconds:.0f} s after the last send",
            f"  daemons     {self.running} of {self.daemons} RUNNING; "
            f"{len(self.deaths)} died besides our kills; {self.bug_lines} error lines",
            f"  faults      {self.kills} kills, {self.restarts} redis restarts "
            f"({len(self.redis_losses)} lost data), {self.outages} endpoint outages, "
            f"{self.s3_puts_failed} S3 PUTs failed ({self.archive_writes_failed} archive "
            f"writes failed)",
            "  felt        " + ", ".join(f"{n} {name}" for name, n in self.felt.items()),
            f"  receives    at most {self.highest_receive} for one message "
            f"(WORKERS_MAX_RECEIVES {MAX_RECEIVES})",
        ])


def run(stack: Stack, work: Workload, plan: Plan, converge_seconds: float) -> Figures:
    """Feeds the workload with the plan's faults spread through it; then checks everything."""
    started = time.monotonic()
    rng = random.Random(stack.seed)
    sqs = stack.sqs
    source, dlq = stack.url("post-sent"), stack.url("post-sent-dlq")
    driver = Driver(stack, rng, work.keys)
    collector = DeadLetters(sqs, dlq)
    try:
        actions = plan.actions(rng)
        # Each fault comes after its share of the events, with a backlog still in hand.
        cuts = [len(work.bodies) * (i + 1) // (len(actions) + 1) for i in range(len(actions))]
        done = 0
        for cut, action in zip(cuts, actions, strict=True):
            send(sqs, source, work.bodies[done:cut])
            done = cut
            driver.do(action)
        send(sqs, source, work.bodies[done:])
        last_send = time.monotonic()
        converged = _until(lambda: queue_depth(sqs, source) == 0, converge_seconds)
        drained = time.monotonic() - last_send
    finally:
        dead = collector.stop()
    figures = Figures(seed=stack.seed, sent=len(work.bodies), valid=work.valid,
                      duplicates=work.duplicates, poison=sum(work.poison.values()),
                      converged=converged, drain_seconds=drained, kills=driver.kills,
                      restarts=driver.restarts, outages=driver.outages,
                      redis_losses=driver.redis_losses)
    _check_dead_letters(figures, work, dead)
    _check_counts(figures, work, stack)
    _check_archive(figures, work, stack)
    _check_queue(figures, sqs, source)
    _check_fleet(figures, stack)
    _check_logs(figures, stack.run_dir)
    stats = stack.proxy_stats()
    figures.s3_puts_failed = stats.get("s3_puts_failed", 0)
    figures.archive_writes_failed = stats.get("objects_doomed", 0)
    figures.seconds = time.monotonic() - started
    return figures


def _until(predicate: Callable[[], bool], seconds: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _check_dead_letters(figures: Figures, work: Workload, dead: list[dict]) -> None:
    found: Counter[str] = Counter()
    figures.dead_letters = len(dead)
    for message in dead:
        body = message["Body"]
        reason = message.get("MessageAttributes", {}).get(ERROR_ATTRIBUTE, {})
        if not reason.get("StringValue", "").strip():
            figures.without_reason += 1
        if body in work.poison:
            found[body] += 1
        else:
            figures.unexpected_dead.append(body[:200])
    figures.dead_lettered = sum(min(found[b], n) for b, n in work.poison.items())
    figures.extra_copies = sum(max(0, found[b] - n) for b, n in work.poison.items())


def _check_counts(figures: Figures, work: Workload, stack: Stack) -> None:
    expected = work.expected_counts()
    client = stack.redis_client()
    got = dict(zip(expected, LinkCounter(client).counts(expected), strict=True))
    client.close()
    figures.urls, figures.pairs, figures.counted = len(expected), len(work.pairs), sum(
        got.values())
    figures.wrong_urls = [f"{k}: {got[k]} != {n}" for k, n in expected.items() if got[k] != n]


def _check_archive(figures: Figures, work: Workload, stack: Stack) -> None:
    """Every counted pair is in the S3 archive (written before its message was deleted)."""
    store = archive.Archive(stack.s3, stack.bucket)
    keys = list(store.keys())
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(store.get, keys))
    archived = {tuple(_text(v) for v in pair) for body in bodies for pair in archive.pairs(body)}
    figures.archive_missing = len(work.pairs - archived)
    figures.archive_unexpected = len(archived - work.pairs)


def _text(value: str | bytes) -> str:
    # archive.pairs gives bytes (as a backfill wants them) or str, by version.
    return value.decode() if isinstance(value, bytes) else value


def _check_queue(figures: Figures, sqs: Any, url: str) -> None:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    figures.visible = int(attrs["ApproximateNumberOfMessages"])
    figures.in_flight = int(attrs["ApproximateNumberOfMessagesNotVisible"])
    figures.delayed = int(attrs["ApproximateNumberOfMessagesDelayed"])


def _check_fleet(figures: Figures, stack: Stack) -> None:
    assert stack.fleet is not None
    status = {m[0]: m[1] for m in re.findall(r"^(\S+)\s+([A-Z]+)", stack.fleet.ctl("status"),
                                             re.M)}
    figures.daemons = len(stack.daemons)
    figures.running = sum(status.get(name) == "RUNNING" for name in stack.daemons)
    figures.not_running = [f"{n} {status.get(n, 'missing')}" for n in stack.daemons
                           if status.get(n) != "RUNNING"]


def _check_logs(figures: Figures, run_dir: Path) -> None:
    """supervisord's record of exits, and the daemons' JSON lines (all on its stdout)."""
    log = (run_dir / "supervisord.log").read_text(errors="replace")
    figures.deaths = [f"{name} ({why})" for name, why in
                      re.findall(r"exited: (\S+) \(([^)]*)\)", log)
                      if "SIGKILL" not in why and name != "workers-scale"]
    out = (run_dir / "out.log").read_text(errors="replace")
    figures.bug_lines = sum(out.count(f'"event": "{name}"') for name in BUG_EVENTS)
    figures.felt = {name: out.count(pattern) for name, pattern in FELT.items()}
    counts = [int(n) for n in re.findall(r'"receive_count": (\d+)', out)]
    figures.highest_receive = max(counts, default=0)
