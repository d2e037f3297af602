import time

import redis

from helpers import ON_SINGLE_AND_CLUSTER
from workers.links import LinkCounter, pair_field
from workers.redisconn import connect


@ON_SINGLE_AND_CLUSTER
def test_an_update_counts_each_url_once(redis_client):
    counter = LinkCounter(redis_client)
    assert counter.record("u1", ["a.com", "b.com"]) == [True, True]
    assert counter.record("u1", ["a.com", "b.com"]) == [False, False]
    assert counter.counts(["a.com", "b.com", "never.com"]) == [1, 1, 0]


@ON_SINGLE_AND_CLUSTER
def test_count_is_the_number_of_distinct_updates(redis_client):
    counter = LinkCounter(redis_client)
    for update in ["u1", "u2", "u3", "u2"]:
        counter.record(update, ["a.com"])
    assert counter.counts(["a.com"]) == [3]


def test_counters_share_compact_hashes(redis_client):
    counter = LinkCounter(redis_client, buckets=16)
    counter.record("u1", [f"site{i}.com" for i in range(200)])
    hashes = list(redis_client.scan_iter("lc:*"))
    assert len(hashes) <= 16
    assert {redis_client.object("encoding", h) for h in hashes} == {b"listpack"}


def test_idempotency_marks_expire_and_share_the_counters_slot(redis_client):
    counter = LinkCounter(redis_client, ttl=31 * 86400)
    counter.record("u1", ["a.com"])
    [marks] = redis_client.keys("li:*")
    assert redis_client.get(marks) == pair_field("u1", "a.com")
    assert 31 * 86400 < redis_client.ttl(marks) <= 40 * 86400
    hash_key, _ = counter.slot("a.com")
    tag = hash_key[hash_key.index("{"):hash_key.index("}") + 1]
    assert tag.encode() in marks


def test_a_mark_is_found_only_where_one_begins(redis_client):
    counter = LinkCounter(redis_client, buckets=1)
    counter.record("u1", ["a.com"])
    [marks] = redis_client.keys("li:*")
    # Given a window whose bytes hold u2's mark astride two marks
    u2 = pair_field("u2", "a.com")
    redis_client.set(marks, pair_field("u1", "a.com")[:4] + u2 + b"\0" * 4, keepttl=True)
    # Then u2 still counts, and once
    assert counter.record("u2", ["a.com"]) == [True]
    assert counter.record("u2", ["a.com"]) == [False]


def test_a_window_an_earlier_version_kept_as_a_hash_still_counts_once(redis_client):
    counter = LinkCounter(redis_client, buckets=1)
    window_key = counter.marks_key(0, counter.window())
    redis_client.hset(window_key, pair_field("u1", "a.com"), "")
    assert counter.record("u1", ["a.com"]) == [False]
    assert counter.record("u2", ["a.com"]) == [True]
    assert redis_client.hexists(window_key, pair_field("u2", "a.com"))
    assert counter.record("u2", ["a.com"]) == [False]
    assert counter.counts(["a.com"]) == [1]


def test_a_redelivery_30_days_later_still_counts_once(redis_client):
    start = time.time()  # window hashes expire at real times: start from now
    now = [start]
    counter = LinkCounter(redis_client, clock=lambda: now[0])
    assert counter.record("u1", ["a.com"]) == [True]
    for days in (1, 4, 13, 29, 30):
        now[0] = start + days * 86400
        assert counter.record("u1", ["a.com"]) == [False], days
    assert counter.record("u2", ["a.com"]) == [True]
    assert counter.counts(["a.com"]) == [2]


def test_counting_is_one_round_trip(redis_client):
    counter = LinkCounter(redis_client)
    counter.record("u0", ["a.com"])  # loads the script
    redis_client.config_resetstat()
    counter.record("u1", ["a.com", "b.com"])
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 2
    assert not any("script" in name for name in stats)


def test_a_lost_script_cache_is_reloaded(redis_client):
    counter = LinkCounter(redis_client)
    redis_client.script_flush()
    assert counter.record("u1", ["a.com"]) == [True]


def test_redis_away_raises_a_redis_error():
    counter = LinkCounter(redis.Redis(port=1, socket_connect_timeout=0.5))
    try:
        counter.record("u1", ["a.com"])
    except redis.RedisError:
        return
    raise AssertionError("no error from a Redis that is not there")


def test_counting_on_a_cluster_spreads_over_every_master_without_cross_slot_errors(
        redis_cluster):
    client = connect(redis_cluster.url)
    client.flushall()
    counter = LinkCounter(client)
    keys = [f"site{i}.example.com/post" for i in range(300)]
    assert counter.record("u1", keys) == [True] * 300  # one pipeline, every slot
    assert counter.record("u1", keys) == [False] * 300
    assert counter.counts(keys) == [1] * 300
    sizes = [redis.Redis(port=node.port).dbsize() for node in redis_cluster.nodes]
    assert len(sizes) == 3 and all(size > 50 for size in sizes), sizes

