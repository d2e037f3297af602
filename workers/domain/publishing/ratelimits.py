"""A network's rate limit, shared by the whole fleet: once a network says a profile's window is
spent (a 429, or X's ``x-rate-limit-remaining: 0``), no daemon calls it for that profile until
the window resets.

One key per (network, profile), ``ratelimit:{service}:{profile_id}``, expiring at the reset: by
the network's own absolute time when it gives one (X's ``x-rate-limit-reset``), else after the
seconds it gave (``Retry-After``) or a default backoff; Redis's clock, not a worker's, counts
them down.
"""

from __future__ import annotations

import math

from workers.adapters.redisconn import Client
from workers.core.errors import TransientError

# KEYS: the profile's key. ARGV: ms, then "at" (ARGV[1] is Unix ms) or "in" (ms from now).
# Sets the block unless one already lasts as long; Redis's clock decides what "now" is.
BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = tonumber(ARGV[1])
if ARGV[2] == 'in' then want = now + want end
if want <= now then return 0 end
local left = redis.call('PTTL', KEYS[1])
if left > 0 and now + left >= want then return 0 end
redis.call('SET', KEYS[1], 1, 'PX', want - now)
return 1
"""


class RateLimits:
    def __init__(self, client: Client):
        self.client = client
        self._block = client.register_script(BLOCK)

    def check(self, service: str, profile_id: str) -> None:
        """TransientError (coming back at the reset) while the window is spent."""
        left_ms = self.client.pttl(key(service, profile_id))
        if left_ms and left_ms > 0:
            raise TransientError(f"{service} rate limit for profile {profile_id}: "
                                 f"waiting {left_ms / 1000:.0f} s for its window to reset",
                                 retry_after=left_ms / 1000, deferred=True)

    def block(self, service: str, profile_id: str, *, until: float | None = None,
              seconds: float | None = None) -> None:
        """No calls until ``until`` (Unix seconds), else for ``seconds``; a longer block
        another daemon set stays."""
        if until is not None:
            args: list[int | str] = [int(math.ceil(until * 1000)), "at"]
        elif seconds is not None:
            args = [int(math.ceil(seconds * 1000)), "in"]
        else:
            return
        self._block(keys=[key(service, profile_id)], args=args)


def key(service: str, profile_id: str) -> str:
    return f"ratelimit:{service}:{profile_id}"


__all__ = ["RateLimits", "key"]
