"""Each update's publication in Redis: the state machine that posts it exactly once.

Two hashes per update (README.rst, "Publishing exactly once", walks through every crash point):

* ``publishing:{update_id}``: the attempts. ``owner`` and ``lease_until`` (Redis's clock, ms)
  while one handler holds the update, renewed while its call to the network runs; ``tried``
  = 1 once a create call may have reached the network, so the next holder resolves that
  attempt before posting; ``first_at`` (Redis's clock, ms) when the update was first claimed,
  kept for every later attempt and replay: a post found by the lookup is this update's only if
  created since; ``state`` = ``done`` once published, ``chained`` = 1 once post-sent and
  analytics were enqueued. Kept 30 days.
* ``published:{update_id}`` (SPEC.md): ``service``, ``service_update_id``, ``published_at``;
  written once, the first record winning, never expiring.

Both are single-key scripts, so they work on Redis Cluster without a shared slot; the order
they run in (the attempt is claimed, then the post recorded, then the attempt marked done)
makes every interleaving safe: a holder that finds ``done`` reads ``published``.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Sequence

from workers.adapters.leases import LeaseKeeper
from workers.adapters.redisconn import Client
from workers.core.settings import DEFAULT_PUBLISH_LEASE

# How long an attempt's state outlives its last change: a replay from the DLQ within this
# still knows the update was tried (published:{update_id} never expires).
ATTEMPT_TTL_SECONDS = 30 * 86400

# KEYS: the attempt. ARGV: owner, lease (ms), ttl (s).
# -> {"done", 0, first} | {"busy", ms left of the holder's lease, first}
#    | {"claimed", tried before (0/1), first}, first = ms of the first claim (Redis's clock)
CLAIM = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local state, owner, lease, tried, first = unpack(redis.call('HMGET', KEYS[1],
    'state', 'owner', 'lease_until', 'tried', 'first_at'))
first = tonumber(first or ms)
if state == 'done' then return {'done', 0, first} end
if owner and tonumber(lease) > ms then return {'busy', tonumber(lease) - ms, first} end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'owner', ARGV[1],
           'lease_until', ms + tonumber(ARGV[2]), 'tried', 1, 'first_at', first)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'claimed', tonumber(tried or '0'), first}
"""

# KEYS: the attempt. ARGV: owner, lease (ms). A lease still ours runs ``lease`` from now.
RENEW = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HSET', KEYS[1], 'lease_until', ms + tonumber(ARGV[2]))
return 1
"""

# KEYS: the attempt. ARGV: owner, tried (0/1). Lets go of a claim still ours.
RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
redis.call('HSET', KEYS[1], 'tried', ARGV[2])
return 1
"""

# KEYS: the publication. ARGV: service, service_update_id. The first record wins.
# -> the record's fields, flat.
RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('HSET', KEYS[1], 'service', ARGV[1], 'service_update_id', ARGV[2],
               'published_at', redis.call('TIME')[1])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: the attempt. ARGV: field, value, ttl (s). Marks a stage done, whoever holds it.
MARK = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Publication:
    service: str
    service_update_id: str
    published_at: int


@dataclass(frozen=True)
class Claim:
    """What claiming an update found: ``done`` (published already), ``wait`` seconds (another
    holder's lease), or ours, with ``tried`` when an earlier attempt's outcome is unknown.
    ``first_attempt_at``: when the update was first claimed (Unix seconds, Redis's clock)."""

    owner: str
    done: bool = False
    wait: float = 0.0
    tried: bool = False
    first_attempt_at: float = 0.0


class Publications:
    def __init__(self, client: Client, lease_seconds: float = DEFAULT_PUBLISH_LEASE):
        self.client = client
        self.lease_ms = int(lease_seconds * 1000)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)
        self._record = client.register_script(RECORD)
        self._mark = client.register_script(MARK)
        self._renew = client.register_script(RENEW)
        self._keeper = LeaseKeeper(lease_seconds, name="publish-leases")

    def get(self, update_id: str) -> Publication | None:
        return _publication(self.client.hgetall(published_key(update_id)))

    def unchained(self, update_ids: Sequence[str]) -> dict[str, Publication]:
        """Of ``update_ids``, those published but not yet chained, with their publication:
        one round trip (a pipeline) for a whole batch."""
        pipe = self.client.pipeline(transaction=False)
        for update_id in update_ids:
            pipe.hgetall(published_key(update_id))
            pipe.hget(attempt_key(update_id), "chained")
        answers = pipe.execute()
        found = {}
        for update_id, fields, chained in zip(update_ids, answers[::2], answers[1::2],
                                              strict=True):
            published = _publication(fields)
            if published is not None and not chained:
                found[update_id] = published
        return found

    def claim(self, update_id: str) -> Claim:
        owner = uuid.uuid4().hex
        kind, value, first = self._claim(keys=[attempt_key(update_id)],
                                         args=[owner, self.lease_ms, ATTEMPT_TTL_SECONDS])
        kind = kind.decode() if isinstance(kind, bytes) else kind
        first_attempt_at = int(first) / 1000
        if kind == "done":
            return Claim(owner, done=True, first_attempt_at=first_attempt_at)
        if kind == "busy":
            return Claim(owner, wait=int(value) / 1000, first_attempt_at=first_attempt_at)
        return Claim(owner, tried=bool(int(value)), first_attempt_at=first_attempt_at)

    def holding(self, update_id: str, claim: Claim) -> AbstractContextManager[None]:
        """Keeps ``claim``'s lease from running out while the block runs (its calls to the
        network): a second delivery waits for it however slow the network is."""
        key = attempt_key(update_id)
        return self._keeper.keep(lambda: self._renew(keys=[key], args=[claim.owner,
                                                                         self.lease_ms]))

    def release(self, update_id: str, claim: Claim, tried: bool) -> None:
        """Lets go of ``claim``; ``tried`` says whether a create call may have reached the
        network meanwhile (it stays set once set: only a known refusal restores it)."""
        self._release(keys=[attempt_key(update_id)], args=[claim.owner, int(tried)])

    def record(self, update_id: str, service: str, service_update_id: str) -> Publication:
        """Records the post, unless one was recorded first (then returns that one), and marks
        the attempt done (its lease let go: a delivery that looks now finds it published)."""
        flat = self._record(keys=[published_key(update_id)], args=[service, service_update_id])
        published = _publication(dict(zip(flat[::2], flat[1::2], strict=True)))
        assert published is not None  # RECORD always leaves a record
        self._mark(keys=[attempt_key(update_id)], args=["state", "done", ATTEMPT_TTL_SECONDS])
        return published

    def mark_chained(self, update_ids: Sequence[str]) -> None:
        """What follows these updates' posts is enqueued: one round trip for all of them."""
        pipe = self.client.pipeline(transaction=False)
        for update_id in update_ids:  # plain commands: a cluster's pipelines take no scripts
            pipe.hset(attempt_key(update_id), "chained", 1)
            pipe.expire(attempt_key(update_id), ATTEMPT_TTL_SECONDS)
        pipe.execute()


def attempt_key(update_id: str) -> str:
    return f"publishing:{update_id}"


def published_key(update_id: str) -> str:
    return f"published:{update_id}"


def _publication(fields: dict) -> Publication | None:
    if not fields:
        return None
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                          else v) for k, v in fields.items()}
    return Publication(text.get("service", ""), text.get("service_update_id", ""),
                       int(text.get("published_at") or 0))


__all__ = ["Claim", "Publication", "Publications", "attempt_key", "published_key"]
