"""`workers links backfill`: counts rebuilt from the S3 archive (moto's server) into a real
redis-server, de-duplicated, swapped in whole, exact even while daemons keep counting."""

import gzip
import hashlib
import json
import random
import time

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import ON_SINGLE_AND_CLUSTER, feed, queue_depth, wait_until, workers_cmd
from workers.domain.links import archive
from workers.domain.links import backfill as backfill_module
from workers.domain.links.archive import Archive
from workers.domain.links.backfill import Backfill
from workers.domain.links.counter import LinkCounter
from workers.domain.links.marks import pair_mark

BUCKETS = 64  # few buckets: many links share each, as in production


@pytest.fixture
def s3(settings):
    return boto3.client("s3", region_name=settings.region, endpoint_url=settings.endpoint_url)


@pytest.fixture
def store(s3, prefix):
    s3.create_bucket(Bucket=prefix + "archive")
    return Archive(s3, prefix + "archive")


@pytest.fixture
def live(redis_client):
    return LinkCounter(redis_client, buckets=BUCKETS)


def records(*pairs):
    return [{"update_id": u, "url": k, "profile_id": "p1", "created_at": 1480431305.0,
             "service": "twitter"} for u, k in pairs]


def backfill(store, live, **kwargs):
    return Backfill(store, live, threads=4, settle=0, **kwargs)


@ON_SINGLE_AND_CLUSTER
def test_backfill_counts_each_archived_pair_once(store, live):
    store.write(records(("u1", "a.com"), ("u2", "a.com"), ("u2", "b.com/x")))
    store.write(records(("u2", "a.com"), ("u3", "a.com")))  # u2's a.com archived twice
    done = backfill(store, live).run()
    assert live.counts(["a.com", "b.com/x", "c.com"]) == [3, 1, 0]
    assert (done.objects, done.records, done.pairs, done.links) == (2, 5, 4, 2)


@ON_SINGLE_AND_CLUSTER
def test_with_the_default_buckets_many_share_a_slot_and_all_are_rebuilt(store, redis_client):
    live = LinkCounter(redis_client)  # 2^18 buckets: 16 to a cluster slot, one call a slot
    keys = [f"site{i}.example.com/post" for i in range(300)]
    store.write(records(*((f"u{n}", key) for n, key in enumerate(keys))))
    live.record("u0", ["not-archived.com"])
    backfill(store, live).run()
    assert live.counts([*keys, "not-archived.com"]) == [1] * 300 + [0]


def test_after_a_backfill_a_redelivered_pair_still_counts_once(store, live):
    store.write(records(("u1", "a.com")))
    backfill(store, live).run()
    assert live.record("u1", ["a.com", "b.com"]) == [False, True]  # the rebuilt marks hold
    assert live.counts(["a.com", "b.com"]) == [1, 1]


@ON_SINGLE_AND_CLUSTER
def test_a_viral_links_rebuilt_marks_are_a_hash_that_refuses_every_redelivery(store, live,
                                                                             redis_client):
    # Given a link shared by more posts than a window keeps as a string
    updates = [f"u{i}" for i in range(400)]
    store.write(records(*((u, "viral.com") for u in updates)))
    backfill(store, live).run()
    [marks] = redis_client.keys("li:*")
    assert redis_client.type(marks) == b"hash" and redis_client.hlen(marks) == 400
    assert 31 * 86400 < redis_client.ttl(marks) <= 40 * 86400
    # Then every redelivery is refused, and a new post still counts
    assert live.record(updates[0], ["viral.com"]) == [False]
    assert live.record(updates[-1], ["viral.com"]) == [False]
    assert live.record("u400", ["viral.com"]) == [True]
    assert live.counts(["viral.com"]) == [401]


def test_counts_missing_from_the_archive_are_dropped(store, live):
    store.write(records(("u1", "a.com")))
    live.record("u0", ["never-archived.com"])
    backfill(store, live).run()
    assert live.counts(["a.com", "never-archived.com"]) == [1, 0]


@ON_SINGLE_AND_CLUSTER
def test_a_pair_counted_before_the_swap_and_archived_after_it_counts_once(store, live):
    # Given a rebuild read, and a daemon that counts u9 while the backfill loads and swaps
    store.write(records(("u1", "a.com")))
    job = backfill(store, live)
    job.rebuild(store.keys())
    assert live.record("u9", ["a.com"]) == [True]
    job.swap()
    assert live.counts(["a.com"]) == [1]  # the swap dropped u9's count: not in the rebuild
    # When the daemon archives u9 after the swap, and the backfill catches up
    store.write(records(("u9", "a.com")))
    job.count_live(job.unread())
    # Then u9 counts once, and its redelivery does not count again
    assert live.counts(["a.com"]) == [2]
    assert live.record("u9", ["a.com"]) == [False]
    assert job.progress.caught_up == 1


def test_a_link_first_counted_during_the_backfill_counts_once(store, redis_client):
    live = LinkCounter(redis_client)  # 2^18 buckets: new.com's is one the rebuild lacks
    store.write(records(("u1", "a.com")))
    job = backfill(store, live)
    job.rebuild(store.keys())
    live.record("u9", ["new.com"])  # a bucket created after the rebuild read the archive
    job.swap()
    store.write(records(("u9", "new.com")))
    job.count_live(job.unread())
    assert live.counts(["a.com", "new.com"]) == [1, 1]


def test_a_pair_counted_again_after_the_swap_is_not_counted_by_the_catch_up(store, live):
    store.write(records(("u1", "a.com")))
    job = backfill(store, live)
    job.rebuild(store.keys())
    job.swap()
    live.record("u9", ["a.com"])  # redelivered to a daemon after the swap, counted there
    store.write(records(("u9", "a.com")))
    job.count_live(job.unread())
    assert live.counts(["a.com"]) == [2]


def test_objects_written_while_reading_are_caught_up_before_the_swap(store, live, monkeypatch):
    store.write(records(("u1", "a.com")))
    job = backfill(store, live)
    rebuild = job.rebuild
    calls = []

    def rebuild_then_archive(keys):
        rebuild(keys)
        calls.append(1)
        if len(calls) == 1:  # a daemon archives a batch while the first pass reads
            store.write(records(("u2", "a.com")))

    monkeypatch.setattr(job, "rebuild", rebuild_then_archive)
    done = job.run()
    assert len(calls) == 2 and done.caught_up == 0
    assert live.counts(["a.com"]) == [2]


def test_progress_is_reported_through_every_phase(store, live):
    store.write(records(("u1", "a.com")))
    phases = []
    backfill(store, live, on_progress=lambda p: phases.append(p.phase)).run()
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        "read", "swap", "settle", "catch-up", "done"]


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=20))
def test_the_fast_reading_of_an_object_agrees_with_json(pairs):
    body = archive.encode(records(*pairs))
    assert archive.pairs(body) == [(u.encode(), k.encode()) for u, k in pairs]
    as_json = [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]
    assert [(r["update_id"], r["url"]) for r in as_json] == pairs


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), min_size=1,
                max_size=20))
def test_the_hashes_read_from_an_object_are_the_live_paths(pairs):
    marks, digests = backfill_module._hashes(archive.encode(records(*pairs)))
    assert marks == b"".join(pair_mark(u, k) for u, k in pairs)
    assert digests == b"".join(hashlib.blake2b(k.encode(), digest_size=10).digest()
                               for _, k in pairs)


def test_objects_laid_out_otherwise_are_read_as_json():
    lines = [{"url": "a.com", "update_id": "u1"}, {"service": "x", "update_id": "u2",
                                                   "url": "b.com"}]
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode())
    assert archive.pairs(body) == [(b"u1", b"a.com"), (b"u2", b"b.com")]


def test_an_object_the_pattern_cannot_vouch_for_is_read_as_json():
    lines = ['{"update_id":"u1","url":"a.com","meta":{"update_id":"x","url":"y"}}',
             '{"url":"b.com","update_id":"u2"}']  # one match too many, one too few
    body = gzip.compress("".join(line + "\n" for line in lines).encode())
    assert archive.pairs(body) == [(b"u1", b"a.com"), (b"u2", b"b.com")]


def test_archived_lines_carry_the_live_paths_hashes(live):
    [line] = gzip.decompress(archive.encode(records(("u1", "a.com/é")))).splitlines()
    written = json.loads(line)
    digest = bytes.fromhex(written["url_digest"])
    assert bytes.fromhex(written["pair_mark"]) == pair_mark("u1", "a.com/é")
    assert (int.from_bytes(digest[:4], "big") % BUCKETS, digest[4:]) == live.bucket("a.com/é")
    assert line.startswith(b'{"pair_mark":"') and written["update_id"] == "u1"


def write_unhashed(store, lines):
    """An object as written before lines carried their hashes, or edited by hand."""
    body = gzip.compress("".join(json.dumps(r, separators=(",", ":")) + "\n"
                                 for r in lines).encode())
    now = time.gmtime()
    key = (f"{store.prefix}dt={time.strftime('%Y-%m-%d', now)}/{time.strftime('%H%M%S', now)}"
           f"-1-{lines[0]['update_id']}.jsonl.gz")
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=body)


def test_objects_without_hashes_or_with_spoiled_ones_are_hashed_as_read(store, live):
    write_unhashed(store, records(("u1", "a.com"), ("u2", "a.com")))
    spoiled = archive._hashed(records(("u3", "a.com"))[0])
    spoiled["pair_mark"] = "not hex at all!!"
    write_unhashed(store, [spoiled])
    store.write(records(("u2", "a.com"), ("u4", "b.com")))
    done = backfill(store, live).run()
    assert live.counts(["a.com", "b.com"]) == [3, 1]
    assert (done.records, done.pairs) == (5, 4)
    assert live.record("u1", ["a.com"]) == [False]


def test_the_cli_needs_an_archive(env):
    done = workers_cmd("links", "backfill", env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: WORKERS_ARCHIVE_BUCKET is not set: there is no archive to read")


@ON_SINGLE_AND_CLUSTER
def test_live_counts_wiped_then_backfilled_equal_the_live_ones_exactly(
        settings, env, sqs, queues, prefix, s3, redis_client, daemons):
    # Given a daemon that counted and archived a few thousand events, some sent twice
    bucket = prefix + "archive"
    s3.create_bucket(Bucket=bucket)
    env = {**env, "WORKERS_ARCHIVE_BUCKET": bucket, "WORKERS_LINK_BUCKETS": str(BUCKETS)}
    source = queues[prefix + "post-sent"]
    rng = random.Random(7)
    pool = [f"site{i}.example.com/post/{i}" for i in range(400)]
    events = [{"update_id": f"u{n}", "profile_id": "p1", "created_at": "1480431305",
               "service": "twitter", "urls": [f"https://{k}" for k in rng.sample(pool, 3)]}
              for n in range(2000)]
    events += rng.sample(events, 100)
    bodies = [json.dumps(e) for e in events]
    daemon = daemons("post-sent", environment=env)
    feed(sqs, source, bodies).join()
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=180, interval=1)
    counter = LinkCounter(redis_client, buckets=BUCKETS)
    live_counts = dict(zip(pool, counter.counts(pool), strict=True))
    assert sum(live_counts.values()) == 2000 * 3
    # When the counts are lost and rebuilt from the archive while the daemon keeps running
    for key in redis_client.scan_iter("l*"):
        redis_client.delete(key)
    assert sum(counter.counts(pool)) == 0
    done = workers_cmd("links", "backfill", "--settle", "0", env=env, timeout=120)
    # Then every count equals the live one, and a redelivered event still counts once
    assert done.returncode == 0, done.stderr
    assert dict(zip(pool, counter.counts(pool), strict=True)) == live_counts
    assert "read:" in done.stderr and "6000 distinct (update_id, url) pairs" in done.stdout
    sqs.send_message(QueueUrl=source, MessageBody=bodies[0])
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=60, interval=0.5)
    assert dict(zip(pool, counter.counts(pool), strict=True)) == live_counts
    assert daemon.poll() is None

