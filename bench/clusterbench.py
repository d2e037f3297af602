"""Counting throughput with several processes against one redis-server and against a local Redis
Cluster of three masters, side by side in one run.

Each process counts its share of post-sent updates (2 links each, from a pool) through
``LinkCounter.record``, the daemon's own call: one pipeline of Lua calls per update. No SQS:
moto would bound both figures long before Redis does (see the throughput rows). Every process
connects through ``workers.links.connect`` with the REDIS_URL a daemon would have. All the
servers and clients share this machine's cores, so the cluster's figure is what three masters
give when they do not get cores of their own.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from typing import Any

import procstat

from workers import devstack
from workers.links import LinkCounter, connect

POOL = 100_000


def _work(first: int, updates: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(first)
    return [(f"c{n:09d}", [f"site{rng.randrange(POOL)}.example.com/post" for _ in range(2)])
            for n in range(first, first + updates)]


def _count(url: str, first: int, updates: int, start: Any, done: Any) -> None:
    counter = LinkCounter(connect(url))
    work = _work(first, updates)
    start.wait()
    counted = sum(sum(counter.record(update_id, keys)) for update_id, keys in work)
    done.put(counted)  # done; how many is checked in Redis


def run(url: str, processes: int, updates: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    start, done = context.Event(), context.Queue()
    share = updates // processes
    workers = [context.Process(target=_count, args=(url, i * share, share, start, done))
               for i in range(processes)]
    for worker in workers:
        worker.start()
        procstat.remember(worker.pid)
    time.sleep(1.0)  # every process has built its work and connected
    began = time.perf_counter()
    start.set()
    for _ in workers:
        done.get(timeout=600)
    seconds = time.perf_counter() - began
    for worker in workers:
        worker.join()
    # What the counters must add up to: the distinct (update, link) pairs. A call's own
    # "counted" can say no for a pair a retried pipeline had already counted.
    expected = sum(len(set(keys)) for i in range(processes)
                   for _, keys in _work(i * share, share))
    client = connect(url)
    in_redis = sum(int(v) for key in client.scan_iter(match="lc:*", count=10_000)
                   for v in client.hvals(key))
    return {"processes": processes, "updates": share * processes, "pairs": expected,
            "pairs_in_counters": in_redis, "seconds": seconds,
            "pairs_per_s": expected / seconds}


def measure(processes: int, updates: int) -> dict[str, Any]:
    single, cluster = devstack.redis_server(), devstack.redis_cluster()
    try:
        procstat.remember(single.start().proc.pid)
        cluster.start()
        for node in cluster.nodes:
            procstat.remember(node.proc.pid)
        return {"single": run(f"redis://127.0.0.1:{single.port}/0", processes, updates),
                "cluster": run(cluster.url, processes, updates), "masters": len(cluster.nodes)}
    finally:
        single.discard()
        cluster.stop()
