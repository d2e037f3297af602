"""The publish state machine and the fleet's rate limits, on a real redis-server (and the
Cluster): the steps every crash point of docs/publishing.rst rests on."""

from __future__ import annotations

import time

import pytest

from helpers import ON_SINGLE_AND_CLUSTER, wait_until
from workers.core.errors import TransientError
from workers.domain.publishing.publications import Publications
from workers.domain.publishing.ratelimits import RateLimits

pytestmark = ON_SINGLE_AND_CLUSTER


def test_a_first_claim_is_a_first_attempt_and_holds_off_a_second(redis_client):
    pubs = Publications(redis_client)
    first = pubs.claim("u1")
    assert (first.done, first.tried, first.wait) == (False, False, 0.0)
    second = pubs.claim("u1")  # a redelivery while the first holder works
    assert 0 < second.wait <= 60


def test_an_attempt_that_may_have_posted_makes_the_next_holder_resolve_it(redis_client):
    pubs = Publications(redis_client)
    first = pubs.claim("u2")
    pubs.release("u2", first, tried=True)  # a timeout: the post may exist
    assert pubs.claim("u2").tried


def test_a_known_refusal_leaves_the_update_as_never_tried(redis_client):
    pubs = Publications(redis_client)
    first = pubs.claim("u3")
    pubs.release("u3", first, tried=first.tried)  # a 429 or a 401: nothing was created
    assert not pubs.claim("u3").tried


def test_a_holder_whose_lease_ran_out_cannot_release_its_successors_claim(redis_client):
    pubs = Publications(redis_client, lease_seconds=0.2)
    stale = pubs.claim("u4")
    current = wait_until(lambda: (c := pubs.claim("u4")).wait == 0 and c, timeout=5)
    assert current.tried  # the stale holder may have posted: its successor must look first
    pubs.release("u4", stale, tried=False)
    assert pubs.claim("u4").wait > 0  # still held by the successor


def test_the_first_record_wins_and_the_update_is_then_done(redis_client):
    pubs = Publications(redis_client)
    pubs.claim("u5")
    before = int(redis_client.time()[0])
    first = pubs.record("u5", "twitter", "111")
    assert pubs.record("u5", "twitter", "222") == first  # a second holder found another id
    assert first.service_update_id == "111"
    assert before <= first.published_at <= int(redis_client.time()[0])
    assert redis_client.hgetall("published:u5") == {
        b"service": b"twitter", b"service_update_id": b"111",
        b"published_at": str(first.published_at).encode()}
    assert pubs.claim("u5").done
    assert pubs.get("u5") == first


def test_a_batch_learns_in_one_go_which_of_its_updates_still_need_chaining(redis_client):
    pubs = Publications(redis_client)
    first, second = pubs.record("u6", "facebook", "1_2"), pubs.record("u7", "twitter", "9")
    assert pubs.unchained(["u6", "u7", "u8"]) == {"u6": first, "u7": second}  # u8: not posted
    pubs.mark_chained(["u6"])
    assert pubs.unchained(["u6", "u7"]) == {"u7": second}
    assert pubs.get("u8") is None


def test_a_spent_window_stops_every_daemon_until_its_reset(redis_client):
    daemon_a, daemon_b = RateLimits(redis_client), RateLimits(redis_client)
    daemon_b.check("twitter", "p1")  # nothing spent yet
    reset = int(redis_client.time()[0]) + 120  # X's x-rate-limit-reset: absolute seconds
    daemon_a.block("twitter", "p1", until=reset)
    with pytest.raises(TransientError) as refused:
        daemon_b.check("twitter", "p1")
    assert 115 <= refused.value.retry_after <= 121
    assert refused.value.deferred  # waiting its turn: the daemon does not pause for it
    daemon_b.check("twitter", "p2")  # another profile
    daemon_b.check("facebook", "p1")  # another network


def test_a_shorter_block_never_shortens_a_longer_one(redis_client):
    limits = RateLimits(redis_client)
    limits.block("linkedin", "p3", seconds=300)
    limits.block("linkedin", "p3", seconds=5)
    limits.block("linkedin", "p3", until=time.time() - 10)  # a reset already past
    with pytest.raises(TransientError) as refused:
        limits.check("linkedin", "p3")
    assert refused.value.retry_after > 290


def test_the_first_attempt_s_start_by_redis_s_clock_is_kept_for_every_later_attempt(
        redis_client):
    pubs = Publications(redis_client)
    before = float(redis_client.time()[0])
    first = pubs.claim("u9")
    pubs.release("u9", first, tried=True)
    again = Publications(redis_client).claim("u9")  # another daemon, a later delivery
    assert again.tried and again.first_attempt_at == first.first_attempt_at
    assert before <= first.first_attempt_at <= float(redis_client.time()[0]) + 1


def test_a_claim_held_while_its_call_runs_outlasts_its_lease(redis_client):
    pubs = Publications(redis_client, lease_seconds=0.5)
    holder = pubs.claim("u10")
    claimed_at = redis_now(redis_client)
    with pubs.holding("u10", holder):  # the call to the network, slower than the lease
        wait_until(lambda: redis_now(redis_client) > claimed_at + 2, timeout=10)
        assert Publications(redis_client).claim("u10").wait > 0  # another delivery waits
    pubs.release("u10", holder, tried=True)
    assert Publications(redis_client).claim("u10").tried  # let go once the call ended


def redis_now(client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6
