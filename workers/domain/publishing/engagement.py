"""A post's engagement in Redis: hash ``analytics:{update_id}``, the newest fetch winning.

Fields: every metric (``likes``, ``comments``...), ``service``, ``service_update_id``,
``profile_id`` and ``fetched_at`` (Unix seconds). A store replaces the whole hash, so the same
event handled twice leaves the same state, and one fetched earlier than what is stored (a
redelivery overtaken by a newer fetch) changes nothing.
"""

from __future__ import annotations

from typing import Mapping

from workers.adapters.redisconn import Client

# Atomic inside Redis. KEYS: the hash. ARGV: fetched_at, then field, value pairs.
STORE_NEWEST = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'fetched_at'))
if stored and stored > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fetched_at', unpack(ARGV))
return 1
"""


class EngagementStore:
    def __init__(self, client: Client, prefix: str = "analytics:"):
        self.client = client
        self.prefix = prefix
        self._store = client.register_script(STORE_NEWEST)

    def key(self, update_id: str) -> str:
        return self.prefix + update_id

    def store(self, update_id: str, fields: Mapping[str, str | int], fetched_at: int) -> bool:
        """Replaces the update's hash unless a newer fetch is stored; True when it did."""
        args: list[str | int] = [fetched_at]
        for name, value in fields.items():
            if name != "fetched_at":
                args += [name, value]
        return bool(self._store(keys=[self.key(update_id)], args=args))

    def get(self, update_id: str) -> dict[str, str]:
        raw = self.client.hgetall(self.key(update_id))
        # The client answers bytes (decode_responses off); redis-py's types allow str too.
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
