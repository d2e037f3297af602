"""CountReader against a real redis-server whose connections drop: every read after a drop is
answered on a new connection, and the dropped one goes back to its pool (a pool that counted
each dropped connection in use for ever would run out, and leak one a drop)."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio

from workers.domain.links.counter import LinkCounter
from workers.domain.links.urls import normalize_key
from workers.readapi.reader import CountReader

NAME = "count-reader-test"


def test_reads_survive_many_dropped_connections_without_leaking_one(redis_url, redis_client):
    counter = LinkCounter(redis_client)
    key = normalize_key("buffer.com/dropped")
    counter.record("u1", [key])

    def drop_ours() -> int:
        """Closes the reader's connections from the server's side, as a restart would."""
        ours = [c["id"] for c in redis_client.client_list() if c.get("name") == NAME]
        for client_id in ours:
            redis_client.client_kill_filter(_id=client_id)
        return len(ours)

    async def scenario() -> list[list[int]]:
        # Given a reader whose pool may hold two connections at most
        client = redis.asyncio.Redis.from_url(redis_url, max_connections=2, client_name=NAME)
        reader = CountReader(client, counter.slot)
        try:
            answers = [await reader.request([key])]
            # When Redis drops its connection five times, a read after each
            for _ in range(5):
                assert drop_ours() == 1
                answers.append(await reader.request([key]))
            return answers
        finally:
            await reader.close()

    # Then every read is answered, on a new connection each time
    assert asyncio.run(scenario()) == [[1]] * 6
