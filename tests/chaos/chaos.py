"""The chaos suite's machinery (run by tests/chaos/test_chaos.py): the whole fleet under a real
supervisord behind a fault proxy, and a driver that breaks things while the workload's events
(tests/chaos/chaos_workload.py) flow; tests/chaos/chaos_checks.py measures what is left at the end.

What breaks, for real and never through a hook in the daemons' code:

* **daemons**: a random daemon (mostly of post-sent) gets SIGKILL; supervisord starts another.
* **redis-server**: SIGKILL, then started again on the same port and files. It runs as counters
  need in production: ``appendonly yes`` with ``appendfsync always``, so a write is on disk
  before Redis acknowledges it; and with a replica, which the daemons wait for
  (``WORKERS_REDIS_WAIT_REPLICAS=1``) before they delete a batch's messages. A graceful
  SIGTERM would save even without that, but a crash (OOM killer, a lost host) gives no such
  chance, and only an acknowledged-is-durable Redis
  makes "counted, archived, then deleted" safe; so the harsher kill is the one tested. Each
  restart checks that a key written just before the kill, and every count read then, survived.
* **a failover**: the replica is promoted and the primary demoted under it, and the Redis
  endpoint the daemons use (a switchable TCP proxy: a DNS name or load balancer) moves to the
  new primary, every other time dropping the connections open to the old one.
* **the replica**: SIGKILL, then started again a few seconds later and re-synced; meanwhile no
  batch is acknowledged by a replica, so none is deleted.
* **the SQS endpoint** (the fault proxy every AWS client of the fleet goes through): refuses
  connections for a few seconds and drops the open ones; moto, behind it, keeps its state.
* **the S3 link archive**: the proxy fails a fraction of PutObject calls with 503 or 500, so
  some archive writes fail and their messages come back (see devstack/awsproxy.py).
* **the social networks** (their stand-ins, devstack/networks/, as a process): a
  create call answers 5xx or times out *after* creating the post, answers 5xx or drops the
  connection before, or is rate limited; publish must resolve each without posting twice.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import boto3
import redis
from tcpswitch import TCPSwitch

import devstack
from chaos_checks import (
    Figures,
    check_archive,
    check_counts,
    check_dead_letters,
    check_fleet,
    check_logs,
    check_publish,
    check_queue,
)
from chaos_workload import SEED, Workload, publish_accounts, publish_token
from devstack import awsproxy
from devstack.networks import Control
from helpers import DeadLetters, Fleet, queue_depth, wait_until
from workers import QUEUES
from workers.core.settings import DEFAULT_MAX_RECEIVES, Settings, procs_variable
from workers.domain.links.counter import LinkCounter
from workers.ops import provision

# A short visibility timeout and long poll, so a killed daemon's messages and failed messages
# come back within seconds (the consumer's backoff doubles it on each receive), and a daemon's
# warm stop waits out at most a second's poll.
VISIBILITY_TIMEOUT = 2
WAIT_SECONDS = 1
# The default, as production runs: a valid event that leaks into the DLQ shows. What raises a
# valid event's receive count is bounded by the run's faults (a doomed archive write, a kill
# that catches it in hand, a Redis restart, a failover or an endpoint outage while it is
# handled), and the backoff (2 s, doubling) spaces its receives past each fault.
MAX_RECEIVES = DEFAULT_MAX_RECEIVES
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
# How long the replica stays down: batches wait for it (WAIT fails) meanwhile.
REPLICA_DOWN_SECONDS = 3.0
# Durable as production runs it for counters: see the module's docstring.
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
# Faults the proxy makes on S3 PutObject: objects whose first PUT fails (boto3's retry gets
# through), and objects whose every PUT fails (the archive write fails, the batch is retried).
S3_FLAKY_RATE = 0.05
S3_DOOMED_RATE = 0.05
# What a network fault does to the next create calls of one network, in turn: the first three
# leave a post whose answer never arrived as "created".
NETWORK_FAULTS = ("error_after_create", "timeout_after_create", "rate_limited",
                  "error_before_create", "down")
NETWORK_FAULT_CALLS = 2
RATE_LIMIT_SECONDS = 2


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
        # The primary and its replica, each started without --replicaof: a failover swaps
        # their roles, and a restarted node is told again whom it replicates.
        self.redis = devstack.redis_server(log_path=self.run_dir / "redis.log", extra=DURABLE)
        self.replica = devstack.redis_server(log_path=self.run_dir / "replica.log",
                                             extra=DURABLE)
        self.endpoint: TCPSwitch | None = None  # what the daemons' REDIS_URL names
        self.proxy_port, self.control_port = static_port(), devstack.free_port()
        self.proxy: devstack.Service | None = None
        self.networks: devstack.Service | None = None
        self.fleet: Fleet | None = None

    def start(self) -> "Stack":
        try:
            self.moto.start()
            self.redis.start()
            self.replica.start()
            self.replicate()
            self.endpoint = TCPSwitch(self.redis.port)
            self.proxy = awsproxy.service(
                self.proxy_port, self.moto.port, self.run_dir / "faultproxy.log",
                control_port=self.control_port, s3_faults=True, s3_flaky_rate=S3_FLAKY_RATE,
                s3_doomed_rate=S3_DOOMED_RATE, seed=self.seed, name="faultproxy").start()
            devstack.wait_for_port(self.control_port, proc=self.proxy.proc)
            accounts = self.run_dir / "accounts.json"
            accounts.write_text(json.dumps({"accounts": publish_accounts()}))
            self.networks = devstack.networks_server(
                accounts, log_path=self.run_dir / "networks.log").start()
            self.seed_credentials()
            provision.create_queues(self.settings, self.sqs, self.s3)
            self.fleet = Fleet(self.env)
            self.fleet.start()
            wait_until(lambda: len(self.fleet.pids("")) == len(self.daemons), timeout=60,
                       interval=0.3)
        except BaseException:
            self.close()
            raise
        return self

    def seed_credentials(self) -> None:
        """The publishing profiles' tokens, where the API would have written them."""
        client = self.redis_client()
        for account in publish_accounts():
            profile = account["token"].split("-", 1)[1]
            client.hset(f"creds:{profile}", account["service"],
                        publish_token(account["service"], profile))
        client.wait(1, 10_000)
        client.close()

    @property
    def networks_url(self) -> str:
        assert self.networks is not None
        return f"http://127.0.0.1:{self.networks.port}"

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
            WORKERS_CONCURRENCY=str(CONCURRENCY), WORKERS_STOPWAITSECS="30",
            WORKERS_REDIS_WAIT_REPLICAS="1", WORKERS_ANALYTICS_DELAY="0",
            # Longer than a create call can take (10 s to read), and short enough that a
            # killed publish daemon's updates are taken over within the run.
            WORKERS_PUBLISH_LEASE="15",
            **{f"WORKERS_{s.upper()}_API_URL": self.networks_url
               for s in ("twitter", "facebook", "linkedin")})
        assert self.endpoint is not None
        env["REDIS_URL"] = f"redis://127.0.0.1:{self.endpoint.port}/0"
        for queue in QUEUES:
            procs = POST_SENT_PROCS if queue == "post-sent" else 1
            env[procs_variable(queue)] = str(procs)
        env[procs_variable("links-api")] = "0"  # the read API plays no part in counting
        return env

    @property
    def daemons(self) -> list[str]:
        """supervisord's names of every daemon the fleet runs."""
        return [f"{q}_{n:02d}" for q in QUEUES
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

    def redis_client(self, node: devstack.Service | None = None) -> redis.Redis:
        """A client of the primary (or of ``node``), not through the endpoint."""
        return redis.Redis(port=(node or self.redis).port, socket_connect_timeout=2,
                           socket_timeout=10)

    def replicate(self) -> None:
        """Makes the replica replicate the primary, and waits until it has caught up."""
        self.redis_client(self.replica).replicaof("127.0.0.1", self.redis.port)
        wait_until(lambda: _synced(self.redis_client(self.replica)), timeout=60, interval=0.1)

    def proxy_stats(self) -> dict[str, int]:
        return _control(self.control_port, "GET", "/stats")

    def close(self, keep_logs: bool = True) -> None:
        """Stops everything it started, by PID; removes its files unless ``keep_logs``."""
        if self.fleet is not None:
            self.fleet.teardown()
        if self.proxy is not None:
            self.proxy.stop()
        if self.networks is not None:
            self.networks.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
        self.moto.stop()
        self.redis.discard()
        self.replica.discard()
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
    failovers: int
    replica_losses: int
    network_faults: int

    @classmethod
    def for_events(cls, events: int) -> "Plan":
        """At least one of each, more as the run grows."""
        return cls(kills=max(2, events // 2000), restarts=max(1, events // 5000),
                   outages=max(1, events // 5000), failovers=max(1, events // 5000),
                   replica_losses=max(1, events // 5000),
                   network_faults=max(len(NETWORK_FAULTS), events // 1000))

    def actions(self, rng: random.Random) -> list[str]:
        actions = (["kill"] * self.kills + ["redis"] * self.restarts + ["outage"] * self.outages
                   + ["failover"] * self.failovers + ["replica"] * self.replica_losses
                   + ["network"] * self.network_faults)
        rng.shuffle(actions)
        return actions


class Driver:
    """Does the faults, one at a time, and remembers what each did."""

    def __init__(self, stack: Stack, rng: random.Random, keys: list[str]):
        self.stack, self.rng, self.keys = stack, rng, keys
        self.kills = self.restarts = self.outages = self.failovers = self.replica_losses = 0
        self.network_faults = 0
        self.redis_losses: list[str] = []

    def do(self, action: str) -> None:
        {"kill": self.kill, "redis": self.restart_redis, "outage": self.outage,
         "failover": self.failover, "replica": self.lose_replica,
         "network": self.network_fault}[action]()

    def kill(self) -> None:
        """SIGKILL a random daemon, mostly of post-sent (where the work is: every fourth kill
        is of another queue's); wait for supervisord to run another in its place."""
        fleet = self.stack.fleet
        assert fleet is not None
        running = {name: pid for name, pid in fleet.pids("").items()
                   if name.startswith("post-sent_") != (self.kills % 4 == 3)}
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
        self.stack.replicate()

    def failover(self) -> None:
        """Promotes the replica and demotes the primary under it (the daemons' open
        connections now meet a replica: READONLY), then moves the endpoint to the new
        primary, every other time dropping the connections open to the old one. What the
        replica had acknowledged must all be on the new primary."""
        self.failovers += 1
        stack = self.stack
        old, new = stack.redis, stack.replica
        client = stack.redis_client()
        sentinel = f"chaos:failover:{self.failovers}"
        client.set(sentinel, "replicated")
        client.wait(1, 10_000)
        before = sum(LinkCounter(stack.redis_client(new)).counts(self.keys))
        stack.redis_client(new).replicaof("NO", "ONE")
        client.replicaof("127.0.0.1", new.port)
        stack.redis, stack.replica = new, old
        assert stack.endpoint is not None
        stack.endpoint.switch(new.port, close_existing=self.failovers % 2 == 0)
        promoted = stack.redis_client()
        after = sum(LinkCounter(promoted).counts(self.keys))
        if promoted.get(sentinel) != b"replicated" or after < before:
            self.redis_losses.append(f"failover {self.failovers}: sentinel "
                                     f"{promoted.get(sentinel)!r}, counts {before} -> {after}")
        wait_until(lambda: _synced(stack.redis_client(old)), timeout=60, interval=0.1)

    def lose_replica(self) -> None:
        """SIGKILL the replica; start it again a few seconds later, re-synced."""
        self.replica_losses += 1
        self.stack.replica.stop(signal.SIGKILL)
        time.sleep(REPLICA_DOWN_SECONDS)  # the fault's length, not a wait for a condition
        self.stack.replica.start()
        self.stack.replicate()

    def network_fault(self) -> None:
        """The next create calls of one network fail: each fault mode in turn."""
        mode = NETWORK_FAULTS[self.network_faults % len(NETWORK_FAULTS)]
        # Graph's rate limit says no time to come back (publish then waits 60 s): longer
        # than a short run, so the rate limits here are X's and LinkedIn's, which do.
        services = ["twitter", "linkedin"] if mode == "rate_limited" else [
            "twitter", "facebook", "linkedin"]
        service = self.rng.choice(services)
        Control(self.stack.networks_url).fault(service, mode, NETWORK_FAULT_CALLS,
                                               seconds=RATE_LIMIT_SECONDS)
        self.network_faults += 1

    def outage(self) -> None:
        """The SQS endpoint refuses connections for a few seconds (moto keeps its state)."""
        _control(self.stack.control_port, "POST", f"/outage?seconds={OUTAGE_SECONDS}")
        self.outages += 1


def _synced(client: redis.Redis) -> bool:
    """A replica whose link to its primary is up and done with its first sync."""
    try:
        info = client.info("replication")
    except redis.RedisError:
        return False
    return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")


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


def run(stack: Stack, work: Workload, plan: Plan, converge_seconds: float) -> Figures:
    """Feeds the workload with the plan's faults spread through it; then checks everything."""
    started = time.monotonic()
    rng = random.Random(stack.seed)
    sqs = stack.sqs
    source, dlq = stack.url("post-sent"), stack.url("post-sent-dlq")
    publish = stack.url("publish")
    driver = Driver(stack, rng, work.keys)
    collector = DeadLetters(sqs, dlq)
    try:
        actions = plan.actions(rng)
        # Each fault comes after its share of the events, with a backlog still in hand.
        cuts = [len(work.bodies) * (i + 1) // (len(actions) + 1) for i in range(len(actions))]
        done = published = 0
        for cut, action in zip(cuts, actions, strict=True):
            send(sqs, source, work.bodies[done:cut])
            share = len(work.publish) * cut // len(work.bodies)  # publish events alongside
            send(sqs, publish, work.publish[published:share])
            done, published = cut, share
            driver.do(action)
        send(sqs, source, work.bodies[done:])
        send(sqs, publish, work.publish[published:])
        last_send = time.monotonic()
        # publish first: the post-sent events its posts chain arrive until it is empty.
        converged = (_until(lambda: queue_depth(sqs, publish) == 0, converge_seconds)
                     and _until(lambda: queue_depth(sqs, source) == 0, converge_seconds))
        drained = time.monotonic() - last_send
    finally:
        dead = collector.stop()
    figures = Figures(seed=stack.seed, sent=len(work.bodies), valid=work.valid,
                      duplicates=work.duplicates, poison=sum(work.poison.values()),
                      converged=converged, drain_seconds=drained, kills=driver.kills,
                      restarts=driver.restarts, outages=driver.outages,
                      failovers=driver.failovers, replica_losses=driver.replica_losses,
                      network_faults=driver.network_faults,
                      redis_losses=driver.redis_losses, max_receives=MAX_RECEIVES)
    check_dead_letters(figures, work, dead)
    check_counts(figures, work, stack)
    check_archive(figures, work, stack)
    check_queue(figures, sqs, source)
    check_publish(figures, work, stack)
    check_fleet(figures, stack)
    check_logs(figures, stack.run_dir)
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
