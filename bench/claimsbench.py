"""Counting links once: the link counter's batch script beside the idempotency primitive.

``.venv/bin/python bench/claimsbench.py [--batches N]`` starts a redis-server on a free port,
counts batches of 10 messages x 5 links (50 (update, URL) pairs, each update new) three ways,
and prints per pair the client's wall time in µs, Redis round trips a batch, and Redis memory
a pair keeps:

* ``counter``: ``LinkCounter.record_all``, one COUNT_ONCE script call for the batch (what the
  post-sent handler does).
* ``claims``: the primitive as its API offers it, per pair: claim the pair's mark, HINCRBY its
  counter, mark it done. Three round trips a pair, and not atomic: a crash between the count and
  the done mark counts the pair again on its redelivery, which the counter's script rules out.
* ``claims pipelined``: the primitive's scripts for the whole batch in two pipelines (every
  claim, then every count and done mark): the fewest round trips it could take, still not
  atomic. A lower bound, not an API.

A round trip is one request written to Redis (a command or a whole pipeline: one
``send_packed_command``), as bench/tripcount.py counts them.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Any, Callable

import redis
import redis.connection

from workers.adapters import claims as claims_module
from workers.adapters.claims import Claims
from workers.domain.links.counter import LinkCounter

MESSAGES, LINKS = 10, 5
URLS = 1000  # distinct URLs the links are drawn from: a few share counters, as in production


class Trips:
    """Counts requests written to Redis by every connection of this process."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        send = redis.connection.Connection.send_packed_command

        def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            with self._lock:
                self.count += 1
            send(conn, command, check_health)

        redis.connection.Connection.send_packed_command = counted  # type: ignore[method-assign]


def batch(n: int) -> list[tuple[str, list[str]]]:
    """The n-th batch: 10 new updates, 5 links each."""
    return [(f"u{n}-{m}-{uuid.uuid4().hex[:6]}",
             [f"example.com/post/{(n * 37 + m * 5 + link) % URLS}" for link in range(LINKS)])
            for m in range(MESSAGES)]


def by_counter(client: redis.Redis) -> Callable[[list], None]:
    counter = LinkCounter(client)
    return counter.record_all


def by_claims(client: redis.Redis) -> Callable[[list], None]:
    counter, claims = LinkCounter(client), Claims(client, 30, 31 * 86400)

    def record_all(updates: list) -> None:
        for update_id, keys in updates:
            for key in keys:
                mark = f"lm:{update_id}:{key}"
                if claims.claim(mark).ours:
                    client.hincrby(*counter.slot(key), 1)
                    claims.done(mark)
    return record_all


def by_claims_pipelined(client: redis.Redis) -> Callable[[list], None]:
    counter, claims = LinkCounter(client), Claims(client, 30, 31 * 86400)
    claim_sha = client.script_load(claims_module.CLAIM)
    done_sha = client.script_load(claims_module.DONE)

    def record_all(updates: list) -> None:
        pairs = [(f"lm:{u}:{key}", key) for u, keys in updates for key in keys]
        pipe = client.pipeline(transaction=False)
        for mark, _ in pairs:
            pipe.evalsha(claim_sha, 1, mark, uuid.uuid4().hex, claims.lease_ms, claims.ttl)
        answers = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for (mark, key), answer in zip(pairs, answers, strict=True):
            if answer[0] == b"ours":
                pipe.hincrby(*counter.slot(key), 1)
                pipe.evalsha(done_sha, 1, mark, claims.ttl)
        pipe.execute()
    return record_all


def measure(name: str, make: Callable, client: redis.Redis, trips: Trips, batches: int) -> dict:
    client.flushall()
    record_all = make(client)
    record_all(batch(-1))  # warm: scripts loaded, Redis's clock read
    memory = client.info("memory")["used_memory"]
    sent = trips.count
    started = time.perf_counter()
    for n in range(batches):
        record_all(batch(n))
    elapsed = time.perf_counter() - started
    pairs = batches * MESSAGES * LINKS
    return {"way": name, "us_per_pair": elapsed / pairs * 1e6,
            "trips_per_batch": (trips.count - sent) / batches,
            "bytes_per_pair": (client.info("memory")["used_memory"] - memory) / pairs}


def start_redis() -> tuple[subprocess.Popen, int, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="claimsbench-")
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    batches = parser.parse_args().batches
    proc, port, workdir = start_redis()
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        trips = Trips()
        rows = [measure(name, make, client, trips, batches) for name, make in (
            ("counter", by_counter), ("claims", by_claims),
            ("claims pipelined", by_claims_pipelined))]
        print(f"{MESSAGES} messages x {LINKS} links a batch, {batches} batches, redis-server "
              f"{client.info('server')['redis_version']}")
        print(f"{'way':<18}{'µs/pair':>10}{'trips/batch':>13}{'bytes/pair':>12}")
        for row in rows:
            print(f"{row['way']:<18}{row['us_per_pair']:>10.1f}{row['trips_per_batch']:>13.1f}"
                  f"{row['bytes_per_pair']:>12.0f}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
