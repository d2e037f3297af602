import redis

from workers.links import LinkCounter


def test_an_update_counts_each_url_once(redis_client):
    counter = LinkCounter(redis_client)
    assert counter.record("u1", ["a.com", "b.com"]) == [True, True]
    assert counter.record("u1", ["a.com", "b.com"]) == [False, False]
    assert counter.counts(["a.com", "b.com", "never.com"]) == [1, 1, 0]


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


def test_idempotency_keys_expire_and_share_the_counters_slot(redis_client):
    counter = LinkCounter(redis_client, ttl=3600)
    counter.record("u1", ["a.com"])
    [seen] = redis_client.keys("li:*")
    assert 0 < redis_client.ttl(seen) <= 3600
    hash_key, _ = counter.slot("a.com")
    tag = hash_key[hash_key.index("{"):hash_key.index("}") + 1]
    assert tag.encode() in seen


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
