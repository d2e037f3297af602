"""Redis time per count of one link, by how often it was shared before within the idempotency
horizon: the cost a viral link puts on every daemon and reader.

For each size, on a FLUSHALLed redis-server of its own: ``shares`` distinct posts count the
link through ``LinkCounter.record_all``, then INFO ``commandstats`` is reset and ``samples``
more posts count it, and as many redeliveries of earlier ones are refused. Redis's own
microseconds in EVALSHA (``commandstats``), divided by the counts asked, is the figure: what
Redis spends a count, without the client's or the loopback's share (one call counts a whole
``record_all``'s pairs, so a call's time is not a count's).
"""

from __future__ import annotations

from typing import Any

import procstat
import redis

import devstack
from workers.domain.links.counter import LinkCounter

URL = "viral.example.com/2026/the-post-everyone-shares"
SIZES = (1_000, 100_000, 1_000_000)
PER_CALL = 1_000  # counts one record_all call sends: one round trip
# The goal: counting after a million prior shares within this many times the cost after 1,000.
GOAL_RATIO = 1.5


def _share(counter: LinkCounter, first: int, count: int, tag: str = "p") -> int:
    counted = 0
    for start in range(first, first + count, PER_CALL):
        stop = min(start + PER_CALL, first + count)
        counted += sum(map(sum, counter.record_all(
            [(f"{tag}{n:09d}", [URL]) for n in range(start, stop)])))
    return counted


def _usec_per_count(client: redis.Redis, counts: int) -> float:
    return client.info("commandstats")["cmdstat_evalsha"]["usec"] / counts


def one_size(client: redis.Redis, shares: int, samples: int) -> dict[str, Any]:
    client.flushall()
    counter = LinkCounter(client)
    if _share(counter, 0, shares) != shares:
        raise RuntimeError(f"{shares} distinct posts did not all count")
    client.config_resetstat()
    new = _share(counter, shares, samples)
    new_usec = _usec_per_count(client, samples)
    client.config_resetstat()
    again = _share(counter, 0, samples)  # redeliveries of the first posts: refused
    again_usec = _usec_per_count(client, samples)
    [marks] = client.keys("li:*")
    if new != samples or again or counter.counts([URL]) != [shares + samples]:
        raise RuntimeError(f"at {shares:,} shares: {new} new of {samples}, {again} recounted")
    return {"shares": shares, "usec_per_new_count": new_usec,
            "usec_per_redelivery": again_usec,
            "window_type": client.type(marks).decode(),
            "window_bytes": client.memory_usage(marks)}


def measure(sizes: tuple[int, ...] = SIZES, samples: int = 2_000) -> dict[str, Any]:
    server = devstack.redis_server()
    try:
        procstat.remember(server.start().proc.pid)
        client = redis.Redis(port=server.port)
        runs = [one_size(client, n, samples) for n in sizes]
    finally:
        server.discard()
    ratio = runs[-1]["usec_per_new_count"] / runs[0]["usec_per_new_count"]
    return {"runs": runs, "samples": samples, "ratio_last_to_first": ratio,
            "goal": f"after {sizes[-1]:,} shares within {GOAL_RATIO}× of after {sizes[0]:,}",
            "met": ratio <= GOAL_RATIO}
