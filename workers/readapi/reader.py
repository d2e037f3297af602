"""Counts for the read API, read through the layout counting writes (``LinkCounter.slot``).

Under load many requests are in flight at once; each would cost Redis (and this process) a
round trip of its own. Instead one read is in flight at a time, carrying the HGETs of every
request that asked while the last one was out (or within the same turn of the event loop),
and each request gets its own answers back: the busier the server, the more a round trip
carries. On a single Redis the read goes over one connection of its own, packed and read
with redis-py's connection (hiredis parses) but without its pipeline object, whose locking
and bookkeeping cost more than the HGETs; a cluster's reads go through its pipeline, which
sends each node its share.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff

from workers.adapters.redisconn import (
    CLUSTER_SCHEMES,
    REDIS_ERRORS,
    SENTINEL_SCHEMES,
    sentinel_target,
)

Slot = tuple[str, bytes]
# What a read that fails with Redis away raises: the app answers 503 to any of these.
UNAVAILABLE: tuple[type[Exception], ...] = (*REDIS_ERRORS, OSError, asyncio.TimeoutError)
# A share button waits on us: a Redis that has not connected or answered in this long is
# unavailable (503, and the caller retries) rather than a request hanging.
CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0


def connect(url: str) -> Any:
    """An asyncio client: one retry, at once, replaces a connection Redis dropped (a restart,
    a failover) without a 503; a second failure is the 503's business, not a backoff's. No
    socket timeout: a whole read has READ_TIMEOUT_SECONDS instead, one timer a round trip
    rather than one an answer."""
    options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_SECONDS}
    scheme, sep, rest = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        return AsyncRedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}{sep}{rest}", **options)
    if scheme in SENTINEL_SCHEMES:  # the primary Sentinel names, asked again on a reconnect
        sentinels, service, primary = sentinel_target(rest)
        if SENTINEL_SCHEMES[scheme]:
            options["ssl"] = True
        return AsyncSentinel(sentinels, sentinel_kwargs=options).master_for(
            service, retry=Retry(NoBackoff(), 1), **primary, **options)
    return redis.asyncio.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)


class CountReader:
    def __init__(self, client: Any, slot: Callable[[str], Slot]):
        self.client = client
        self.slot = slot
        self._waiting: list[tuple[list[Slot], asyncio.Future]] = []
        self._reading: asyncio.Task | None = None  # the read in flight; the loop keeps it weakly
        self._connection: Any = None  # a single Redis's, ours alone
        self.round_trips = 0  # for /metrics: requests per round trip is the coalescing's gain

    def request(self, keys: Sequence[str]) -> asyncio.Future:
        """A future of the count of each normalized key; its exception is one of UNAVAILABLE
        when Redis is away. A future rather than a coroutine: a request costs no task."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if not self._waiting and self._reading is None:
            loop.call_soon(self._flush)  # after every request parsed in this turn has asked
        self._waiting.append(([self.slot(k) for k in keys], answer))
        return answer

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.ping(), READ_TIMEOUT_SECONDS))
        except UNAVAILABLE:
            return False

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        self._reading = asyncio.ensure_future(self._read(batch))
        self._reading.add_done_callback(self._done)

    def _done(self, _read: asyncio.Task) -> None:
        """The next read takes every request that asked meanwhile."""
        self._reading = None
        if self._waiting:
            self._flush()

    async def _read(self, batch: list[tuple[list[Slot], asyncio.Future]]) -> None:
        self.round_trips += 1
        try:
            values = iter(await asyncio.wait_for(
                self._hgets([s for slots, _ in batch for s in slots]), READ_TIMEOUT_SECONDS))
        except UNAVAILABLE as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for slots, answer in batch:
            counts = [int(next(values) or 0) for _ in slots]
            if not answer.done():  # its client went away meanwhile
                answer.set_result(counts)

    async def _hgets(self, slots: list[Slot]) -> list[Any]:
        if isinstance(self.client, AsyncRedisCluster):
            pipe = self.client.pipeline(transaction=False)
            for counters, field in slots:
                pipe.hget(counters, field)
            return await pipe.execute()
        commands = [("HGET", counters, field) for counters, field in slots]
        for attempt in range(2):  # a second time on a new connection: Redis dropped the old
            connection = self._connection or await self._connect()
            try:
                await connection.send_packed_command(connection.pack_commands(commands),
                                                     check_health=False)
                return [await connection.read_response() for _ in commands]
            except BaseException as exc:
                # Answers half read leave the connection out of step: never reuse it, and
                # give it back to the pool, which would otherwise count it in use for ever.
                self._connection = None
                await connection.disconnect()
                await self.client.connection_pool.release(connection)
                if attempt or not isinstance(exc, (redis.ConnectionError, OSError)):
                    raise
        raise AssertionError("unreachable")

    async def _connect(self) -> Any:
        self._connection = await self.client.connection_pool.get_connection()
        return self._connection

    async def close(self) -> None:
        await self.client.aclose()
