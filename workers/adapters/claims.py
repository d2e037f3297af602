"""Claims: a side effect that must happen once (an email sent, an update posted), by Redis's
clock. The one home of the idempotency scripts; sending and publishing use it.

A claim is one Redis hash per side effect, one key, so it works on Redis Cluster as it does on
one Redis. Its fields:

* ``owner`` and ``lease_until`` (ms) while a holder makes the call; another claim is refused
  until the lease runs out (its holder died, we reckon), then taken over.
* ``first_at`` (ms): when the first claim was made, kept by every later one: what was created
  before it (a post found by a lookup) is not this side effect's.
* ``tried`` = 1 from a claim on, so a holder that dies mid-call leaves it set: the next holder
  learns the call may have had its effect. A release that knows it had none (a refusal) clears it.
* ``state``: ``claimed``, then ``done`` once the effect is known to have happened, with the
  caller's result fields; ``done`` refuses every later claim until the key expires.

Every time is Redis's (TIME inside each script): a worker whose clock is off by seconds or weeks
would otherwise give its own claims leases too long or already over. A call in flight keeps its
claim with ``holding``: requests' and smtplib's timeouts bound each socket operation, not the
call, so a slow call could otherwise outlast the lease and let a second delivery in beside it.
"""

from __future__ import annotations

import enum
import threading
import uuid
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import structlog

log = structlog.get_logger()

# Redis's clock, in ms, in every script that reads it.
NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the claim. ARGV: owner, lease (ms), ttl (s).
# -> {status, ms left of the holder's lease, first_at (ms), tried before (0/1), fields, flat}
# A string under the key is a send-once mark of before this module (``sent``, or a sender's
# token): read as done or held, so a daemon upgraded mid-flight honours what the old one wrote.
CLAIM = NOW + """
if redis.call('TYPE', KEYS[1]).ok == 'string' then
  if redis.call('GET', KEYS[1]) == 'sent' then return {'done', 0, now, 0, {}} end
  return {'other', math.max(redis.call('PTTL', KEYS[1]), 0), now, 0, {}}
end
local flat = redis.call('HGETALL', KEYS[1])
local f = {}
for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
local first, tried = tonumber(f.first_at or now), tonumber(f.tried or '0')
if f.state == 'done' then return {'done', 0, first, tried, flat} end
if f.owner and tonumber(f.lease_until) > now then
  return {'other', tonumber(f.lease_until) - now, first, tried, flat}
end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'owner', ARGV[1],
           'lease_until', now + tonumber(ARGV[2]), 'tried', 1, 'first_at', first)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'ours', 0, first, tried, flat}
"""

# KEYS: the claim. ARGV: owner, lease (ms). A claim still ours holds ``lease`` from now.
RENEW = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
""" + NOW + """
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'lease_until', now + lease)
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
"""

# KEYS: the claim. ARGV: owner, tried ('0', '1', or '' to keep what the claim set).
RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'tried', ARGV[2]) end
return 1
"""

# KEYS: the claim. ARGV: ttl (s), then the result's fields and values. Whoever holds it: the
# effect happened, so no one may make it again.
DONE = """
redis.call('HSET', KEYS[1], 'state', 'done', unpack(ARGV, 2))
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: the record. ARGV: the field stamped with Redis's time (s), then fields and values.
# The first writer wins; every writer gets the record back, flat.
WRITE_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local args = {unpack(ARGV, 2)}
  args[#args + 1], args[#args + 2] = ARGV[1], redis.call('TIME')[1]
  redis.call('HSET', KEYS[1], unpack(args))
end
return redis.call('HGETALL', KEYS[1])
"""

# The claim's own fields; the rest are its users' (``Claim.fields``).
OWN_FIELDS = frozenset({"state", "owner", "lease_until", "first_at", "tried"})
# Renewals per lease: two may fail (Redis away for a moment) before the lease runs out.
RENEWALS_PER_LEASE = 3


class Status(enum.Enum):
    OURS = "ours"  # held by us now
    OTHER = "other"  # held by another holder whose lease runs
    DONE = "done"  # the effect happened


@dataclass(frozen=True)
class Claim:
    """What claiming found. ``wait``: seconds left of another holder's lease; ``first_at``: the
    first claim's time (Unix seconds, Redis's clock); ``tried``: a holder before may have made
    the call; ``fields``: what users recorded (a done mark's result)."""

    key: str
    owner: str
    status: Status
    wait: float = 0.0
    first_at: float = 0.0
    tried: bool = False
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return self.status is Status.OURS

    @property
    def done(self) -> bool:
        return self.status is Status.DONE


class Claims:
    """Claims on ``client`` with a ``lease_seconds`` lease, each key kept ``ttl_seconds`` from
    its last claim or done mark; ``name`` names the renewal thread."""

    def __init__(self, client: Any, lease_seconds: float, ttl_seconds: int,
                 name: str = "claims"):
        self.client = client
        self.lease_ms = int(lease_seconds * 1000)
        self.ttl = ttl_seconds
        self._claim = client.register_script(CLAIM)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._done = client.register_script(DONE)
        self._write_once = client.register_script(WRITE_ONCE)
        self._keeper = LeaseKeeper(lease_seconds, name=name)

    def claim(self, key: str) -> Claim:
        owner = uuid.uuid4().hex
        status, wait, first, tried, flat = self._claim(
            keys=[key], args=[owner, self.lease_ms, self.ttl], client=self.client)
        fields = {k: v for k, v in _pairs(flat).items() if k not in OWN_FIELDS}
        return Claim(key, owner, Status(_text(status)), int(wait) / 1000, int(first) / 1000,
                     bool(int(tried)), fields)

    def renew(self, key: str, owner: str) -> bool:
        """Runs the lease ``lease_seconds`` from now, if the claim is still ``owner``'s."""
        return bool(self._renew(keys=[key], args=[owner, self.lease_ms], client=self.client))

    def holding(self, key: str, owner: str) -> AbstractContextManager[None]:
        """Renews the claim while the block runs (the call in flight), every third of a lease."""
        return self._keeper.keep(lambda: self.renew(key, owner))

    def release(self, key: str, owner: str, tried: bool | None = None) -> bool:
        """Lets go of the claim if still ``owner``'s, so another may make the call; ``tried``
        records whether this holder's call may have had its effect (None: keep what the claim
        set, that it may). False when the claim was no longer ours."""
        flag = "" if tried is None else str(int(tried))
        return bool(self._release(keys=[key], args=[owner, flag], client=self.client))

    def done(self, key: str, fields: Mapping[str, object] | None = None,
             ttl: int | None = None) -> None:
        """Marks the effect made, with its result ``fields``, for ``ttl`` seconds (default:
        the claims' ttl): every later claim finds it done."""
        flat = [x for pair in (fields or {}).items() for x in pair]
        self._done(keys=[key], args=[self.ttl if ttl is None else ttl, *flat],
                   client=self.client)

    def read(self, key: str) -> dict[str, str]:
        """The claim's fields, its own and its users' ({} when there is none)."""
        return _pairs(self.client.hgetall(key))

    def write_once(self, key: str, fields: Mapping[str, object], stamp: str) -> dict[str, str]:
        """Writes the record ``fields`` plus ``stamp`` = Redis's time (Unix seconds), unless a
        record is there already; returns the record that won."""
        flat = [x for pair in fields.items() for x in pair]
        return _pairs(self._write_once(keys=[key], args=[stamp, *flat], client=self.client))


class LeaseKeeper:
    """Keeps leases from running out while their holders' calls are in flight: one thread per
    keeper renews every held lease every third of it. A holder killed mid-call renews nothing,
    and its lease runs out as before."""

    def __init__(self, lease_seconds: float, name: str = "lease-keeper"):
        self.interval = lease_seconds / RENEWALS_PER_LEASE
        self.name = name
        self._held: dict[int, Callable[[], object]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = 0

    @contextmanager
    def keep(self, renew: Callable[[], object]) -> Iterator[None]:
        """Calls ``renew()`` every third of the lease while the block runs."""
        with self._lock:
            self._next += 1
            ticket = self._next
            self._held[ticket] = renew
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(ticket, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            with self._lock:
                held = list(self._held.values())
            for renew in held:
                try:
                    renew()
                except Exception as exc:  # Redis away: the next renewal may get through
                    log.warning("lease.renew_failed", error=f"{type(exc).__name__}: {exc}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list | dict) -> dict[str, str]:
    """A hash's fields as text, from HGETALL's dict or a script's flat list."""
    items = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
    return {_text(k): _text(v) for k, v in items}


__all__ = ["Claim", "Claims", "LeaseKeeper", "Status"]
