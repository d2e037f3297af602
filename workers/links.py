"""Link counters in Redis: compact, and exactly once per (update_id, url).

Layout (see README.rst, "Memory layout"):

* ``lc:{B}`` is a hash of counters. A URL key's 10-byte blake2b digest picks its bucket ``B``
  (one of ``buckets``) and its 6-byte binary field, so ~100 counters share one small hash and
  Redis keeps it in the compact listpack encoding (~14 bytes a URL instead of ~60 for a key each).
* ``li:{B}<digest>`` is the idempotency key of one (update_id, url), with a TTL. It carries the
  counter's hash tag ``{B}``, so the Lua script below touches one cluster slot.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Iterable, Sequence

import redis

from workers.settings import DEFAULT_LINK_BUCKETS, IDEMPOTENCY_TTL_SECONDS

# Atomic inside Redis: mark (update_id, url) seen, and count only if it was not seen before.
# A crash before it runs leaves nothing; after it, a redelivery finds the mark and skips.
COUNT_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
return -1
"""


class LinkCounter:
    def __init__(
        self,
        client: redis.Redis,
        buckets: int = DEFAULT_LINK_BUCKETS,
        ttl: int = IDEMPOTENCY_TTL_SECONDS,
        prefix: str = "l",
    ):
        self.client = client
        self.buckets = buckets
        self.ttl = ttl
        self.prefix = prefix
        self._count_once = client.register_script(COUNT_ONCE)

    def slot(self, key: str) -> tuple[str, bytes]:
        """The counter hash and field of a normalized URL key."""
        digest = hashlib.blake2b(key.encode(), digest_size=10).digest()
        bucket = int.from_bytes(digest[:4], "big") % self.buckets
        return f"{self.prefix}c:{{{bucket:x}}}", digest[4:]

    def record(self, update_id: str, keys: Sequence[str]) -> list[bool]:
        """Count each distinct key once for this update; True where this call counted it."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            counter, field = self.slot(key)
            self._count_once(keys=[counter, self._seen_key(counter, update_id, key)],
                             args=[field, self.ttl], client=pipe)
        return [result != -1 for result in pipe.execute()]

    def counts(self, keys: Iterable[str]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(*self.slot(key))
        return [int(value or 0) for value in pipe.execute()]

    def _seen_key(self, counter: str, update_id: str, key: str) -> str:
        digest = hashlib.blake2b(f"{update_id}\n{key}".encode(), digest_size=9).digest()
        tag = counter[counter.index("{"):]
        return f"{self.prefix}i:{tag}{base64.urlsafe_b64encode(digest).decode()}"


def connect(url: str) -> redis.Redis:
    """A client that fails fast when Redis is away, so handlers report a transient error."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
    )
