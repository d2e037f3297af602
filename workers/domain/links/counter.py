"""Link counters in Redis: compact, and exactly once per (update_id, url).

Layout (see docs/links.rst, "Link counting and its memory layout"):

* ``lc:{B}`` is a hash of counters. A URL key's 10-byte digest (``domain.links.marks``) picks
  its bucket ``B`` (one of ``buckets``) and its 6-byte binary field, so many counters share one
  small hash and Redis keeps it in the compact listpack encoding instead of a key per URL.
* ``li:{B}W`` holds the (update_id, url) pairs of bucket ``B`` first counted in time window
  ``W`` (4 days): their 8-byte marks end to end in one string, expiring once no redelivery it
  guards against can come. Both carry the hash tag ``{B}``, so the Lua script touches one
  cluster slot.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from workers.core.settings import (
    DEFAULT_LINK_BUCKETS,
    IDEMPOTENCY_TTL_SECONDS,
    REDIS_WAIT_TIMEOUT_MS,
)
from workers.domain.links.marks import bucket_and_field, key_digest, pair_mark

# Why counting keeps a script of its own rather than the claims every other side effect uses
# (workers/adapters/claims.py): a pair's mark and its count must change in one atomic step (a
# claim, a HINCRBY and a done mark are three, and a crash between the count and the mark counts
# the pair again on its redelivery), and a batch's pairs go in one call. Measured with
# `.venv/bin/python bench/claimsbench.py` (10 messages x 5 links a batch, 300 batches, Redis
# 7.0 on 2 shared cores, two runs): this script 101-127 µs a pair, 1 round trip a batch, 27
# bytes of Redis a pair; the claims' API 2,259-2,583 µs, 150 round trips, 216 bytes; the claims'
# scripts pipelined (2 round trips, still not atomic) 300-358 µs.
#
# Atomic inside Redis: count only if no window still kept names this (update, url), then mark
# it in the current window. A crash before it runs leaves nothing; after it, a redelivery finds
# the mark and skips.
#
# Which window is current is Redis's call, by its own clock: a worker whose clock is off
# (seconds or weeks) would otherwise mark in a window no other worker checks, or set an
# expiry already past. A call made for another window changes nothing and answers Redis's
# window, for the caller to ask again with its keys.
#
# A window is its marks end to end in one string while it is small (a mark counts where it
# starts at a multiple of 8 bytes; one memchr-driven search, one APPEND): a few dozen marks,
# 8 bytes each. A window past PROMOTE_BYTES (a link many posts share lands all its marks in
# one bucket) becomes a hash of marks, whose lookup costs the same at a thousand marks or a
# million, so counting a viral link costs what counting any link does.
# One call counts a batch's pairs (on a Redis Cluster, those of one slot: a script's keys must
# share one), each as if alone, in order: the same pair twice in a call counts once.
# KEYS: per pair, its counter hash then its windows, current first (ARGV[1] keys a pair).
# ARGV: keys a pair, the caller's current window, seconds a window lasts, when the current
# window may expire, then per pair: its counter field and pair mark.
# Answers per pair its new count, or -1 where a window names it; or {-2, Redis's window}.
COUNT_ONCE = """
local per = tonumber(ARGV[1])
local window = math.floor(tonumber(redis.call('TIME')[1]) / tonumber(ARGV[3]))
if window ~= tonumber(ARGV[2]) then return {-2, window} end
local find, sub, expire_at = string.find, string.sub, ARGV[4]
local function seen(base, mark)  -- whether a window names it; the current window's marks
  local current
  for i = base + 2, base + per do
    local marks = redis.pcall('GET', KEYS[i])
    if type(marks) == 'table' then
      if redis.call('HEXISTS', KEYS[i], mark) == 1 then return true end
    elseif marks then
      local at = find(marks, mark, 1, true)
      while at do
        if at % 8 == 1 then return true end
        at = find(marks, mark, at + 1, true)
      end
    end
    if i == base + 2 then current = marks end
  end
  return false, current
end
local function mark_in(key, current, mark)
  if type(current) == 'table' then
    redis.call('HSET', key, mark, '')
  elseif current and #current >= PROMOTE_BYTES then
    local args, n = {mark, ''}, 2
    for at = 1, #current, 8 do
      args[n + 1], args[n + 2], n = sub(current, at, at + 7), '', n + 2
    end
    redis.call('DEL', key)
    for i = 1, n, 1000 do
      redis.call('HSET', key, unpack(args, i, math.min(i + 999, n)))
    end
  else
    redis.call('APPEND', key, mark)
  end
  if redis.call('TTL', key) == -1 then redis.call('EXPIREAT', key, expire_at) end
end
local answers = {}
for p = 0, #KEYS / per - 1 do
  local base, mark = p * per, ARGV[6 + 2 * p]
  local found, current = seen(base, mark)
  if found then
    answers[p + 1] = -1
  else
    mark_in(KEYS[base + 2], current, mark)
    answers[p + 1] = redis.call('HINCRBY', KEYS[base + 1], ARGV[5 + 2 * p], 1)
  end
end
return answers
"""

# Atomic per bucket, for a backfill: the rebuilt counters and marks replace the live ones, so
# a COUNT_ONCE running meanwhile sees the old bucket or the new, never a mix. Live marks made
# since the backfill began go with the rest (their pairs count again when the catch-up reads
# them); older windows stay, naming pairs the rebuild has too. One call replaces every bucket
# of one cluster slot (16 of 2^18 buckets share each), and fields come packed in one string
# each: a call or an argument apiece would cost the client far more than Redis.
# KEYS, per bucket: its counters, its marks of the current window, then its live windows since
# the backfill began. ARGV: keys per bucket, when the marks may expire, then per bucket: its
# counters (each a 6-byte field and a big-endian 4-byte count) and its 8-byte pair marks, end
# to end as COUNT_ONCE keeps them.
REPLACE = """
local per, expire_at = tonumber(ARGV[1]), ARGV[2]
local sub, unpack, count_at = string.sub, unpack, struct.unpack
local function hset(key, args, n)
  for i = 1, n, 1000 do
    redis.call('HSET', key, unpack(args, i, math.min(i + 999, n)))
  end
end
-- After a loss (what a backfill is mostly for) none of them exists: one call says so.
local any_live = redis.call('EXISTS', unpack(KEYS)) > 0
for b = 0, #KEYS / per - 1 do
  local counters, marks = KEYS[b * per + 1], KEYS[b * per + 2]
  local fields, pairs = ARGV[b * 2 + 3], ARGV[b * 2 + 4]
  if any_live then redis.call('DEL', unpack(KEYS, b * per + 1, b * per + per)) end
  local args, n = {}, 0
  for at = 1, #fields, 10 do
    args[n + 1] = sub(fields, at, at + 5)
    args[n + 2] = count_at('>I4', fields, at + 6)
    n = n + 2
  end
  if n > 0 then hset(counters, args, n) end
  if #pairs >= PROMOTE_BYTES then  -- a hot window: a hash, as COUNT_ONCE would have made it
    args, n = {}, 0
    for at = 1, #pairs, 8 do
      args[n + 1], args[n + 2], n = sub(pairs, at, at + 7), '', n + 2
    end
    hset(marks, args, n)
    redis.call('EXPIREAT', marks, expire_at)
  elseif #pairs > 0 then
    redis.call('SET', marks, pairs, 'EXAT', expire_at)
  end
end
return 1
"""
# Marks are grouped by the window they were made in: a window holds a few days of a bucket's
# posts (a dozen or so marks at a million a day), and expires whole.
WINDOW_SECONDS = 4 * 24 * 60 * 60
# A window this long (256 marks, some 20 times the usual) becomes a hash: scanning 2 KB costs
# Redis about what a hash lookup does, and strings keep the usual window at 8 bytes a mark.
PROMOTE_BYTES = 256 * 8
COUNT_ONCE = COUNT_ONCE.replace("PROMOTE_BYTES", str(PROMOTE_BYTES))
REPLACE = REPLACE.replace("PROMOTE_BYTES", str(PROMOTE_BYTES))
# A call answered with another window is asked again this many times, with Redis's window: a
# second mismatch can only come of a window ending between the two.
WINDOW_RETRIES = 2
# Slots replaced per pipeline: big enough to amortize the round trip, small enough that a
# request stays a few megabytes.
REPLACE_CHUNK = 200
# Chunks sent and not yet answered: two keep Redis busy while the client packs.
REPLACES_IN_FLIGHT = 2
# Buckets one REPLACE call takes on a single Redis: as many as share a cluster slot by default.
BUCKETS_PER_CALL = 16


class LinkCounter:
    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        buckets: int = DEFAULT_LINK_BUCKETS,
        ttl: int = IDEMPOTENCY_TTL_SECONDS,
        prefix: str = "l",
        clock: Callable[[], float] = time.time,
        replicas: int = 0,
        wait_ms: int = REDIS_WAIT_TIMEOUT_MS,
    ):
        self.client = client
        # Replicas that must have a count before ``record`` returns (WORKERS_REDIS_WAIT_REPLICAS)
        self.replicas, self.wait_ms = replicas, wait_ms
        self.buckets = buckets
        self.prefix = prefix
        self.clock = clock  # this host's; ``now`` corrects it by Redis's
        self._offset: float | None = None  # Redis's clock minus ours, once read
        # A redelivery at most ``ttl`` after the first count falls this many windows later.
        self.windows_back = math.ceil(ttl / WINDOW_SECONDS)

    def bucket(self, key: str) -> tuple[int, bytes]:
        """The bucket and counter field of a normalized URL key."""
        return self.bucket_of(key.encode())

    def bucket_of(self, key: bytes) -> tuple[int, bytes]:
        """``bucket`` of a key already UTF-8 encoded."""
        return bucket_and_field(key_digest(key), self.buckets)

    def slot(self, key: str) -> tuple[str, bytes]:
        """The counter hash and field of a normalized URL key."""
        bucket, field = self.bucket(key)
        return self.counter_key(bucket), field

    def counter_key(self, bucket: int) -> str:
        return f"{self.prefix}c:{{{bucket:x}}}"

    def marks_key(self, bucket: int, window: int) -> str:
        return f"{self.prefix}i:{{{bucket:x}}}{window:x}"

    def now(self) -> float:
        """Redis's time, as our clock tells it once Redis's TIME has set it: the windows are
        Redis's, whatever this host's clock says."""
        if self._offset is None:
            seconds, micros = self.client.time()
            self._offset = seconds + micros / 1e6 - self.clock()
        return self.clock() + self._offset

    def window(self) -> int:
        return int(self.now()) // WINDOW_SECONDS

    def windows_from(self, window: int) -> range:
        """The windows whose marks a count made in ``window`` checks, that one first."""
        return range(window, window - self.windows_back - 1, -1)

    def expire_at(self, window: int) -> int:
        """When a window's marks may go: once no redelivery they guard against can come."""
        return (window + self.windows_back + 1) * WINDOW_SECONDS

    def record(self, update_id: str, keys: Sequence[str]) -> list[bool]:
        """Count each distinct key once for this update; True where this call counted it."""
        return self.record_all([(update_id, keys)])[0]

    def record_all(self, updates: Sequence[tuple[str, Sequence[str]]]) -> list[list[bool]]:
        """``record`` of several updates, in one round trip."""
        counted = iter(self._count_once([(u, key) for u, keys in updates for key in keys]))
        return [[next(counted) for _ in keys] for _, keys in updates]

    def _count_once(self, pairs: list[tuple[str, str]]) -> list[bool]:
        if not pairs:
            return []
        counted: dict[int, bool] = {}
        window = self.window()
        calls = [(group, window) for group in self._groups(pairs)]
        for _ in range(WINDOW_RETRIES + 1):
            answers = self._evalsha_all(COUNT_ONCE, [self._count_call(pairs, group, w)
                                                     for group, w in calls], self.replicas)
            again = []
            for (group, _), answer in zip(calls, answers, strict=True):
                if answer[0] == -2:  # Redis's window is another: ask it again with it
                    again.append((group, int(answer[1])))
                    self._offset = None
                else:
                    counted.update((i, a != -1) for i, a in zip(group, answer, strict=True))
            if not again:
                return [counted[i] for i in range(len(pairs))]
            calls = again
        raise redis.exceptions.ResponseError("Redis's window kept moving under our calls")

    def _groups(self, pairs: list[tuple[str, str]]) -> list[list[int]]:
        """The pairs (their indexes) each call counts: all on one Redis, where one call costs
        the client far less than a call apiece; on a Cluster, those whose buckets share a
        slot."""
        if not isinstance(self.client, RedisCluster):
            return [list(range(len(pairs)))]
        by_slot: dict[int, list[int]] = {}
        for i, (_, key) in enumerate(pairs):
            bucket, _field = self.bucket(key)
            by_slot.setdefault(_slot(bucket), []).append(i)
        return list(by_slot.values())

    def _count_call(self, pairs: list[tuple[str, str]], group: list[int], window: int) -> tuple:
        windows = self.windows_from(window)
        keys: list[str] = []
        args: list[object] = []
        for i in group:
            update_id, key = pairs[i]
            bucket, field = self.bucket(key)
            keys.append(self.counter_key(bucket))
            keys.extend(self.marks_key(bucket, w) for w in windows)
            args += (field, pair_mark(update_id, key))
        return (len(keys), *keys, 1 + len(windows), window, WINDOW_SECONDS,
                self.expire_at(window), *args)

    def counts(self, keys: Iterable[str]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(*self.slot(key))
        return [int(value or 0) for value in pipe.execute()]

    # -- a backfill's side ------------------------------------------------------------------

    def replace(self, rebuilt: Iterable[Mapping[int, tuple[bytes, bytes]]], since: int) -> None:
        """Makes ``rebuilt`` (parts of bucket -> its counters and marks, packed as REPLACE
        reads them) every bucket's counters and marks, forgetting live marks made from window
        ``since`` on; one bucket at a time, each atomically, a part sent while the caller makes
        the next. A live bucket no part has is emptied."""
        window = self.window()
        forget = list(range(since, window))
        expire_at = self.expire_at(window)
        self.client.script_load(REPLACE)  # else each writer's first chunk comes back refused
        # Chunks go out on connections of their own, a few at a time, so Redis runs one while
        # the next is packed, here and by redis-py.
        with ThreadPoolExecutor(REPLACES_IN_FLIGHT, thread_name_prefix="replace") as writers:
            in_flight: deque[Future] = deque()
            calls: list[tuple] = []
            for part in _then_emptied(rebuilt, self._existing_buckets()):
                for buckets in self._by_slot(part.keys()):
                    keys: list[str] = []
                    args: list[bytes] = []
                    for b in buckets:
                        keys += self._replaced_keys(b, window, forget)
                        args += part[b]
                    calls.append((len(keys), *keys, 2 + len(forget), expire_at, *args))
                    if len(calls) >= REPLACE_CHUNK:
                        if len(in_flight) == REPLACES_IN_FLIGHT:
                            in_flight.popleft().result()
                        in_flight.append(writers.submit(self._evalsha_all, REPLACE, calls))
                        calls = []
            for sent in in_flight:
                sent.result()
            self._evalsha_all(REPLACE, calls)

    def _replaced_keys(self, bucket: int, window: int, forget: list[int]) -> list[str]:
        tag = f"{{{bucket:x}}}"
        keys = [f"{self.prefix}c:{tag}", f"{self.prefix}i:{tag}{window:x}"]
        for w in forget:
            keys.append(f"{self.prefix}i:{tag}{w:x}")
        return keys

    def _existing_buckets(self) -> set[int]:
        """Buckets with live counters now. One that appears later is left alone: its counters
        and marks agree, and the catch-up counts through them."""
        start = len(self.prefix) + 3  # past "lc:{"
        return {int(key[start:-1], 16)
                for key in self.client.scan_iter(match=f"{self.prefix}c:*", count=10_000)}

    def _by_slot(self, buckets: Iterable[int]) -> Iterable[list[int]]:
        """The buckets, grouped as one Lua call may touch them: by the Redis Cluster slot their
        hash tag falls in; on one Redis, which has no slots, in runs of a slot's size."""
        if not isinstance(self.client, RedisCluster):
            buckets = list(buckets)
            return [buckets[i:i + BUCKETS_PER_CALL]
                    for i in range(0, len(buckets), BUCKETS_PER_CALL)]
        by_slot: dict[int, list[int]] = {}
        for b in buckets:
            by_slot.setdefault(_slot(b), []).append(b)
        return by_slot.values()

    def _evalsha_all(self, script: str, calls: list[tuple], replicas: int = 0) -> list:
        """One round trip. With ``replicas``, a WAIT for them ends it, on the same connection:
        WAIT vouches only for the writes of its own connection, and a failover between a
        count and a WAIT on another connection (or server) would vouch for a count the new
        primary never had. On a cluster, so, one pipeline per primary."""
        if replicas and isinstance(self.client, RedisCluster):
            return self._evalsha_per_primary(self.client, script, calls, replicas)
        return _evalsha(self.client, script, calls, replicas, self.wait_ms)

    def _evalsha_per_primary(self, cluster: RedisCluster, script: str, calls: list[tuple],
                             replicas: int) -> list:
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, call in enumerate(calls):
            node = cluster.get_node_from_key(call[1])  # the counter hash: the call's slot
            by_node.setdefault(node.name, (node.redis_connection, []))[1].append(i)
        answers: list = [None] * len(calls)
        for connection, indexes in by_node.values():
            try:
                got = _evalsha(connection, script, [calls[i] for i in indexes], replicas,
                               self.wait_ms)
            except (redis.ConnectionError, redis.TimeoutError, MovedError, AskError):
                _relearn_slots(cluster)  # a failover moved the slots: ask again next time
                raise
            for i, answer in zip(indexes, got, strict=True):
                answers[i] = answer
        return answers

class ReplicasBehind(redis.exceptions.RedisError):
    """Fewer replicas than asked had the counts within the wait: retry them later."""


def _relearn_slots(cluster: RedisCluster) -> None:
    try:
        cluster.nodes_manager.initialize()
    except Exception:  # noqa: BLE001 (no node answers yet: the next call tries again)
        pass


def _evalsha(client: Any, script: str, calls: list[tuple], replicas: int, wait_ms: int) -> list:
    """The calls in one pipeline, then a WAIT for ``replicas`` when asked; loads the script only
    when Redis says it lacks it (redis-py's own Script objects ask SCRIPT EXISTS before every
    pipeline: a second round trip)."""
    sha = _sha(script)
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command("EVALSHA", sha, *call)  # cluster pipelines block .evalsha()
        if replicas:
            pipe.execute_command("WAIT", replicas, wait_ms)
        try:
            answers = pipe.execute()
        except redis.exceptions.NoScriptError:
            if attempt:
                raise
            client.script_load(script)
            continue
        if replicas and (acknowledged := int(answers.pop())) < replicas:
            raise ReplicasBehind(f"{acknowledged} of {replicas} replicas acknowledged the "
                                 f"counts within {wait_ms} ms")
        return answers
    raise AssertionError("unreachable")


def _then_emptied(parts: Iterable[Mapping[int, tuple[bytes, bytes]]],
                  existing: set[int]) -> Iterator[Mapping[int, tuple[bytes, bytes]]]:
    """The parts, then the existing buckets none of them has, each emptied."""
    for part in parts:
        existing -= part.keys()
        yield part
    yield dict.fromkeys(existing, (b"", b""))


def _slot(bucket: int) -> int:
    """The Redis Cluster slot of a bucket's keys: their hash tag ``{B}`` decides it."""
    return key_slot(f"{{{bucket:x}}}".encode())


@functools.lru_cache(maxsize=8)
def _sha(script: str) -> str:
    """The script's SHA1, once per script: hashing COUNT_ONCE's 1.5 KB each pipeline showed
    in a daemon's profile."""
    return hashlib.sha1(script.encode()).hexdigest()

