"""Redis memory per counted URL and per idempotency key: our layout beside the naive one.

Measured as the delta of INFO ``used_memory`` (what the allocator holds for data, dict tables
included) on a FLUSHALLed server of its own, so nothing else is in the figure.

* Counters, ours: ``workers.domain.links.counter.LinkCounter`` hashes, filled with HINCRBY on the
  exact (hash, field) ``LinkCounter.slot`` gives, in big pipelines (the Lua script is for
  exactly-once, not for loading a million counters). Naive: one string key per URL, INCR.
* Idempotency marks, ours: ``LinkCounter.record`` itself, with the counters already
  present so only the ``li:`` windows add memory; all pairs fall in one 4-day
  window, so ``pairs`` stands for a window's worth of links (2M: 500,000 a day).
  Naive: ``SET seen:{update_id}:{url} 1 NX EX ttl``.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Iterable

import procstat
import redis
from workload import WORDS

import devstack
from workers.core.settings import DEFAULT_LINK_BUCKETS, IDEMPOTENCY_TTL_SECONDS
from workers.domain.links.counter import LinkCounter

PIPELINE = 10_000
# How many URLs share one update_id in the idempotency run: LinkCounter.record pipelines one
# call's keys, and the key layout is the same whatever the grouping.
URLS_PER_RECORD = 100


def url_keys(count: int, seed: int = 42) -> list[str]:
    """Normalized URL keys of realistic length (~50 characters), all distinct."""
    rng = random.Random(seed)
    keys = []
    for i in range(count):
        slug = "-".join(rng.sample(WORDS, 3))
        keys.append(f"{rng.choice(WORDS)}{i % 9973}.com/{2016 + i % 9}/{slug}-{i:x}")
    return keys


def used_memory(client: redis.Redis) -> int:
    """used_memory once Redis's incremental rehashing has settled (two equal reads)."""
    last = -1
    for _ in range(50):
        now = int(client.info("memory")["used_memory"])
        if now == last:
            return now
        last = now
        time.sleep(0.2)
    return last


def _pipelined(client: redis.Redis, items: Iterable[Any],
               command: Callable[[Any, Any], None]) -> None:
    pipe = client.pipeline(transaction=False)
    for n, item in enumerate(items, 1):
        command(pipe, item)
        if n % PIPELINE == 0:
            pipe.execute()
    pipe.execute()


def _delta(client: redis.Redis, fill: Callable[[], None]) -> int:
    client.flushall()
    before = used_memory(client)
    fill()
    return used_memory(client) - before


def counters(client: redis.Redis, keys: list[str], buckets: int) -> dict[str, Any]:
    counter = LinkCounter(client, buckets=buckets)
    slots = [counter.slot(k) for k in keys]
    ours = _delta(client, lambda: _pipelined(client, slots,
                                             lambda p, s: p.hincrby(s[0], s[1], 1)))
    hashes = client.dbsize()
    sample = slots[0][0]
    encoding = client.object("encoding", sample)
    naive = _delta(client, lambda: _pipelined(client, keys, lambda p, k: p.incr(k)))
    n = len(keys)
    return {"urls": n, "ours": ours / n, "naive": naive / n, "hashes": hashes,
            "urls_per_hash": n / hashes, "hash_encoding": _text(encoding),
            "mean_url_length": sum(map(len, keys)) / n, "buckets": buckets}


def idempotency(client: redis.Redis, pairs: int, buckets: int,
                ttl: int = IDEMPOTENCY_TTL_SECONDS) -> dict[str, Any]:
    keys = url_keys(min(pairs // 2, 1_000_000), seed=7)  # ~2 posts per URL, spread as in life
    groups = [(f"5f{n:022x}", [keys[(n * URLS_PER_RECORD + i) % len(keys)]
                               for i in range(URLS_PER_RECORD)])
              for n in range(pairs // URLS_PER_RECORD)]
    counter = LinkCounter(client, buckets=buckets, ttl=ttl)
    client.flushall()
    _pipelined(client, [counter.slot(k) for k in keys], lambda p, s: p.hincrby(s[0], s[1], 1))
    before, hashes = used_memory(client), client.dbsize()
    counted = sum(sum(counter.record(update_id, group)) for update_id, group in groups)
    ours = used_memory(client) - before
    made = client.dbsize() - hashes
    pairs = len(groups) * URLS_PER_RECORD
    if counted != pairs:
        raise RuntimeError(f"LinkCounter.record counted {counted} of {pairs} distinct pairs")
    naive = _delta(client, lambda: _pipelined(
        client, [(u, k) for u, group in groups for k in group],
        lambda p, pair: p.set(f"seen:{pair[0]}:{pair[1]}", 1, nx=True, ex=ttl)))
    # All pairs fall in one 4-day window: ``pairs`` is a window's worth of posts' links.
    return {"pairs": pairs, "ours": ours / pairs, "naive": naive / pairs,
            "window_hashes": made, "pairs_per_hash": pairs / max(made, 1)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def measure(urls: int, pairs: int, buckets: int = DEFAULT_LINK_BUCKETS) -> dict[str, Any]:
    """Both figures, on a redis-server of our own that is stopped before returning."""
    server = devstack.redis_server()
    try:
        procstat.remember(server.start().proc.pid)
        client = redis.Redis(port=server.port)
        return {"counters": counters(client, url_keys(urls), buckets),
                "idempotency": idempotency(client, pairs, buckets),
                "redis_version": client.info("server")["redis_version"]}
    finally:
        server.discard()
