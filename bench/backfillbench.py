"""Backfill speed: ``workers links backfill`` beside the naive rebuild, on one archive in moto's
S3 and one redis-server of its own, in the same run.

* Ours: ``workers.domain.links.backfill.Backfill`` (threads fetch; a pattern reads the
  lines; the rebuild is built in memory, then replaced per cluster slot).
* Naive: what one would write first: read each object line by line as JSON and count every
  record through the live path (``LinkCounter.record``: one Lua call per pair, one pipeline
  per update), which de-duplicates by the marks in Redis.

Records/s is records read over the whole wall time, swap included, in one process; ours is
the median of three runs (each on a flushed Redis: a second or so each, and runs on a shared
machine vary by 15% or more), the naive rebuild one run (minutes). The
archive holds ``records`` (update_id, url) records, 2 URLs per update from a pool of
``links``, 2% of the pairs archived twice (a redelivery after the archive was written), in
objects of ``per_object`` records; the same is then measured on objects of a daemon batch's
size (20 records), where a GET per object is the cost.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

import boto3
import procstat
import redis
from botocore.config import Config

import devstack
from workers.domain.links.archive import Archive
from workers.domain.links.backfill import Backfill
from workers.domain.links.counter import LinkCounter

BATCH_OBJECT_RECORDS = 20  # a receive of 10 post-sent events, 2 links each
BACKFILL_THREADS = 16  # the CLI's default --threads
OUR_RUNS = 3


def archive_records(records: int, links: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pool = [f"site{i % 9973}.example.com/blog/post-{i}" for i in range(links)]
    out: list[dict[str, Any]] = []
    update = 0
    while len(out) < records:
        update += 1
        for key in rng.sample(pool, 2):
            record = {"update_id": f"{update:010d}", "url": key, "profile_id": "12345",
                      "created_at": 1480431305.0, "service": "twitter"}
            out.append(record)
            if rng.random() < 0.02:
                out.append(record)
    return out[:records]


def fill(store: Archive, records: list[dict[str, Any]], per_object: int) -> int:
    for start in range(0, len(records), per_object):
        store.write(records[start:start + per_object])
    return -(-len(records) // per_object)


def ours(store: Archive, live: LinkCounter) -> dict[str, Any]:
    started = time.perf_counter()
    done = Backfill(store, live, threads=BACKFILL_THREADS, settle=0).run()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "records_per_s": done.records / seconds, "pairs": done.pairs}


def naive(store: Archive, live: LinkCounter) -> dict[str, Any]:
    started = time.perf_counter()
    records = counted = 0
    for key in store.keys():
        by_update: defaultdict[str, list[str]] = defaultdict(list)
        for record in store.read(key):
            by_update[record["update_id"]].append(record["url"])
            records += 1
        for update_id, urls in by_update.items():
            counted += sum(live.record(update_id, urls))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "records_per_s": records / seconds, "pairs": counted}


def measure(records: int, links: int, per_object: int, small_records: int) -> dict[str, Any]:
    moto, server = devstack.moto_server(), devstack.redis_server()
    try:
        for service in (moto, server):
            procstat.remember(service.start().proc.pid)
        fake = devstack.FAKE_CREDENTIALS
        # A connection per fetching thread, as `workers links backfill` makes its client.
        s3 = boto3.client("s3", region_name=fake["AWS_DEFAULT_REGION"],
                          endpoint_url=f"http://127.0.0.1:{moto.port}",
                          aws_access_key_id=fake["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=fake["AWS_SECRET_ACCESS_KEY"],
                          config=Config(max_pool_connections=BACKFILL_THREADS))
        client = redis.Redis(port=server.port)
        result: dict[str, Any] = {"records": records, "links": links}
        for name, size, count in (("large_objects", per_object, records),
                                  ("batch_objects", BATCH_OBJECT_RECORDS, small_records)):
            s3.create_bucket(Bucket=f"bench-{name.replace('_', '-')}")
            store = Archive(s3, f"bench-{name.replace('_', '-')}")
            # The records go once written: a million dicts kept alive would slow what follows.
            run: dict[str, Any] = {"records": count, "records_per_object": size,
                                   "objects": fill(store, archive_records(count, links), size)}
            runs = []
            for _ in range(OUR_RUNS):
                client.flushall()
                runs.append(ours(store, LinkCounter(client)))
            run["ours"] = sorted(runs, key=lambda r: r["records_per_s"])[len(runs) // 2]
            run["ours"]["runs_records_per_s"] = [r["records_per_s"] for r in runs]
            client.flushall()
            run["naive"] = naive(store, LinkCounter(client))
            # Both rebuilt the same counts: the distinct pairs, each once.
            run["same_pairs"] = all(r["pairs"] == run["naive"]["pairs"] for r in runs)
            result[name] = run
        return result
    finally:
        server.discard()
        moto.stop()
