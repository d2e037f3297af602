import time

import redis

from helpers import ON_SINGLE_AND_CLUSTER
from workers.adapters.redisconn import connect
from workers.core.settings import IDEMPOTENCY_TTL_SECONDS
from workers.domain.links.counter import WINDOW_SECONDS, LinkCounter
from workers.domain.links.marks import pair_mark


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
    assert redis_client.get(marks) == pair_mark("u1", "a.com")
    assert 31 * 86400 < redis_client.ttl(marks) <= 40 * 86400
    hash_key, _ = counter.slot("a.com")
    tag = hash_key[hash_key.index("{"):hash_key.index("}") + 1]
    assert tag.encode() in marks


def test_a_mark_is_found_only_where_one_begins(redis_client):
    counter = LinkCounter(redis_client, buckets=1)
    counter.record("u1", ["a.com"])
    [marks] = redis_client.keys("li:*")
    # Given a window whose bytes hold u2's mark astride two marks
    u2 = pair_mark("u2", "a.com")
    redis_client.set(marks, pair_mark("u1", "a.com")[:4] + u2 + b"\0" * 4, keepttl=True)
    # Then u2 still counts, and once
    assert counter.record("u2", ["a.com"]) == [True]
    assert counter.record("u2", ["a.com"]) == [False]


def test_a_viral_links_window_becomes_a_hash_and_still_counts_once(redis_client):
    # Given one link shared by far more posts than a window usually holds
    counter = LinkCounter(redis_client, buckets=1)
    updates = [f"u{i}" for i in range(300)]
    for update_id in updates:
        assert counter.record(update_id, ["viral.com"]) == [True]
    # Then its marks moved to a hash (a lookup that does not grow with them) with their expiry
    [marks] = redis_client.keys("li:*")
    assert redis_client.type(marks) == b"hash"
    assert redis_client.hlen(marks) == 300
    assert 31 * 86400 < redis_client.ttl(marks) <= 40 * 86400
    # And every redelivery, of the first marks and of the last, is still refused
    for update_id in (updates[0], updates[200], updates[-1]):
        assert counter.record(update_id, ["viral.com"]) == [False]
    assert counter.record("u300", ["viral.com"]) == [True]
    assert counter.counts(["viral.com"]) == [301]


def test_a_mark_made_up_to_the_horizon_ago_still_refuses_a_redelivery(redis_client):
    counter = LinkCounter(redis_client, buckets=1)
    assert counter.record("u1", ["a.com"]) == [True]
    [marks] = redis_client.keys("li:*")
    window = counter.window()
    # Given the mark made as many windows ago as a redelivery 31 days later looks back
    oldest = counter.marks_key(0, window - counter.windows_back)
    redis_client.rename(marks, oldest)
    assert counter.windows_back * WINDOW_SECONDS >= IDEMPOTENCY_TTL_SECONDS
    # Then the redelivery still finds it
    assert counter.record("u1", ["a.com"]) == [False]
    # And one window older is past the horizon: the mark would have expired by then
    redis_client.rename(oldest, counter.marks_key(0, window - counter.windows_back - 1))
    assert counter.record("u1", ["a.com"]) == [True]


@ON_SINGLE_AND_CLUSTER
def test_windows_follow_redis_s_clock_not_the_workers(redis_client):
    now = time.time()
    # Given two workers whose clocks are off, 5 days fast and 40 days slow
    fast = LinkCounter(redis_client, clock=lambda: now + 5 * 86400)
    slow = LinkCounter(redis_client, clock=lambda: now - 40 * 86400)
    # When both count the same post's link, and a third worker on time sees it again
    assert fast.record("u1", ["a.com"]) == [True]
    assert slow.record("u1", ["a.com"]) == [False]
    assert LinkCounter(redis_client).record("u1", ["a.com"]) == [False]
    # Then it counted once, in the window Redis's clock names, expiring weeks from Redis's now
    assert fast.counts(["a.com"]) == [1]
    [marks] = redis_client.keys("li:*")
    redis_now = redis_client.time()[0]
    assert marks.decode().endswith(f"{redis_now // WINDOW_SECONDS:x}")
    assert 31 * 86400 < redis_client.ttl(marks) <= 40 * 86400


def test_a_window_ending_between_two_calls_is_asked_again(redis_client):
    counter = LinkCounter(redis_client)
    assert counter.record("u1", ["a.com"]) == [True]
    # Given a counter that believes Redis's clock is a window ahead of what it is
    counter._offset += WINDOW_SECONDS
    # Then its count is made in Redis's window, where the redelivery is found
    assert counter.record("u1", ["a.com"]) == [False]
    assert counter.record("u2", ["a.com"]) == [True]
    assert len(redis_client.keys("li:*")) == 1


def test_counting_a_batch_is_one_call_on_one_redis(redis_client):
    counter = LinkCounter(redis_client)
    counter.record("u0", ["a.com"])  # loads the script
    redis_client.config_resetstat()
    assert counter.record_all([("u1", ["a.com", "b.com"]), ("u2", ["a.com"]),
                               ("u1", ["a.com"])]) == [[True, True], [True], [False]]
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
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

