"""Link counters in Redis: compact, and exactly once per (update_id, url).

Layout (see README.rst, "Link counting and its memory layout"):

* ``lc:{B}`` is a hash of counters. A URL key's 10-byte blake2b digest picks its bucket ``B``
  (one of ``buckets``) and its 6-byte binary field, so many counters share one small hash and
  Redis keeps it in the compact listpack encoding instead of a key per URL.
* ``li:{B}W`` is a hash of the (update_id, url) pairs of bucket ``B`` first counted in time
  window ``W`` (4 days): an 8-byte field each, the hash expiring once no redelivery it guards
  against can come. Both carry the hash tag ``{B}``, so the Lua script touches one cluster slot.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Callable, Iterable, Sequence

import redis

from workers.settings import DEFAULT_LINK_BUCKETS, IDEMPOTENCY_TTL_SECONDS

# Atomic inside Redis: count only if no window still kept names this (update, url), then mark
# it in the current window. A crash before it runs leaves nothing; after it, a redelivery finds
# the mark and skips. KEYS: the counter hash, then the window hashes, current first.
# ARGV: counter field, pair field, when the current window's hash may expire.
COUNT_ONCE = """
for i = 2, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[2]) == 1 then return -1 end
end
redis.call('HSET', KEYS[2], ARGV[2], '')
if redis.call('TTL', KEYS[2]) == -1 then redis.call('EXPIREAT', KEYS[2], ARGV[3]) end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""
COUNT_ONCE_SHA = hashlib.sha1(COUNT_ONCE.encode()).hexdigest()
# Marks are grouped by the window they were made in: a window's hash holds a few days of a
# bucket's posts (a dozen or so at a million a day: listpack-sized), and expires whole.
WINDOW_SECONDS = 4 * 24 * 60 * 60


class LinkCounter:
    def __init__(
        self,
        client: redis.Redis,
        buckets: int = DEFAULT_LINK_BUCKETS,
        ttl: int = IDEMPOTENCY_TTL_SECONDS,
        prefix: str = "l",
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.buckets = buckets
        self.prefix = prefix
        self.clock = clock
        # A redelivery at most ``ttl`` after the first count falls this many windows later.
        self.windows_back = math.ceil(ttl / WINDOW_SECONDS)

    def slot(self, key: str) -> tuple[str, bytes]:
        """The counter hash and field of a normalized URL key."""
        digest = hashlib.blake2b(key.encode(), digest_size=10).digest()
        bucket = int.from_bytes(digest[:4], "big") % self.buckets
        return f"{self.prefix}c:{{{bucket:x}}}", digest[4:]

    def record(self, update_id: str, keys: Sequence[str]) -> list[bool]:
        """Count each distinct key once for this update; True where this call counted it."""
        if not keys:
            return []
        window = int(self.clock()) // WINDOW_SECONDS
        expire_at = (window + self.windows_back + 1) * WINDOW_SECONDS
        calls = []
        for key in keys:
            counter, field = self.slot(key)
            tag = counter[counter.index("{"):]
            marks = [f"{self.prefix}i:{tag}{w:x}"
                     for w in range(window, window - self.windows_back - 1, -1)]
            pair = hashlib.blake2b(f"{update_id}\n{key}".encode(), digest_size=8).digest()
            calls.append((1 + len(marks), counter, *marks, field, pair, expire_at))
        return [result != -1 for result in self._evalsha_all(calls)]

    def counts(self, keys: Iterable[str]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(*self.slot(key))
        return [int(value or 0) for value in pipe.execute()]

    def _evalsha_all(self, calls: list[tuple]) -> list[int]:
        """One round trip; loads the script only when Redis says it lacks it (redis-py's own
        Script objects ask SCRIPT EXISTS before every pipeline: a second round trip)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(COUNT_ONCE_SHA, *call)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self.client.script_load(COUNT_ONCE)
        raise AssertionError("unreachable")


def connect(url: str) -> redis.Redis:
    """A client that fails fast when Redis is away, so handlers report a transient error."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
    )
