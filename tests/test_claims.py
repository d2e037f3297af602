"""The idempotency primitive on a real redis-server (and the Cluster): a claim with a lease and
a done mark, by Redis's clock, that sending and publishing rest on."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import textwrap

import pytest

from helpers import ON_SINGLE_AND_CLUSTER, wait_until
from workers.adapters.claims import Claims, Status

pytestmark = ON_SINGLE_AND_CLUSTER

TTL = 3600


def redis_now(client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def test_a_second_holder_meets_the_first_s_claim_and_waits_out_its_lease(redis_client):
    # Given a claim held by one daemon
    first = Claims(redis_client, lease_seconds=30, ttl_seconds=TTL).claim("c:two")
    # When another daemon claims the same key meanwhile
    second = Claims(redis_client, lease_seconds=30, ttl_seconds=TTL).claim("c:two")
    # Then the first holds it and the second is told how long the lease still runs
    assert first.status is Status.OURS
    assert second.status is Status.OTHER and not second.ours
    assert 25 < second.wait <= 30
    assert second.first_at == first.first_at


@pytest.mark.parametrize("offset", ["+5d", "-40d"])
def test_a_lease_runs_out_by_redis_s_clock_whatever_the_worker_s_clock_says(
        redis_client, redis_url, offset):
    # Given a claim with a 2 s lease, made by a worker whose clock is off by ``offset``
    key = f"c:skewed{offset}"
    before = redis_now(redis_client)
    made = claim_in_skewed_worker(redis_url, key, offset, lease_seconds=2)
    assert abs(made["worker_time"] - before) > 86400  # the faked clock was in force
    assert made["status"] == "ours"
    assert before - 1 <= made["first_at"] <= redis_now(redis_client) + 1  # Redis's time
    # Then a worker on time is held off until Redis's clock passes the lease, and no longer
    claims = Claims(redis_client, lease_seconds=2, ttl_seconds=TTL)
    assert claims.claim(key).status is Status.OTHER
    wait_until(lambda: redis_now(redis_client) > made["first_at"] + 2.2, timeout=10)
    assert claims.claim(key).ours


def claim_in_skewed_worker(redis_url: str, key: str, offset: str, lease_seconds: float) -> dict:
    """Claims ``key`` from a Python process under libfaketime, its clock off by ``offset``."""
    [library] = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")  # Debian's libfaketime
    code = textwrap.dedent(f"""
        import json, time
        from workers.adapters.claims import Claims
        from workers.adapters.redisconn import connect
        claim = Claims(connect({redis_url!r}), {lease_seconds}, {TTL}).claim({key!r})
        print(json.dumps({{"status": claim.status.value, "first_at": claim.first_at,
                           "worker_time": time.time()}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True,
                          env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": library,
                               "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"})
    return json.loads(done.stdout)


def test_a_holder_whose_lease_ran_out_cannot_renew_its_successor_s_claim(redis_client):
    # Given a holder whose lease ran out, and a successor that claimed the key since
    stale_side = Claims(redis_client, lease_seconds=0.3, ttl_seconds=TTL)
    stale = stale_side.claim("c:renew")
    successor_side = Claims(redis_client, lease_seconds=30, ttl_seconds=TTL)
    successor = wait_until(lambda: (c := successor_side.claim("c:renew")).ours and c, timeout=5)
    # When the stale holder renews
    renewed = stale_side.renew("c:renew", stale.owner)
    # Then it fails and the successor still holds the claim for its own lease
    assert renewed is False
    assert successor_side.renew("c:renew", successor.owner) is True
    assert stale_side.claim("c:renew").wait > 25


def test_a_renewal_runs_the_lease_from_now(redis_client):
    claims = Claims(redis_client, lease_seconds=2, ttl_seconds=2)
    held = claims.claim("c:renewed")
    claimed_at = redis_now(redis_client)
    wait_until(lambda: redis_now(redis_client) > claimed_at + 1.2, timeout=5)
    assert claims.renew("c:renewed", held.owner)
    wait_until(lambda: redis_now(redis_client) > claimed_at + 2.4, timeout=5)
    # past the first lease (and the key's own ttl): still held
    assert claims.claim("c:renewed").status is Status.OTHER


def test_a_claim_held_while_its_call_runs_outlasts_its_lease(redis_client):
    claims = Claims(redis_client, lease_seconds=0.5, ttl_seconds=TTL)
    held = claims.claim("c:held")
    claimed_at = redis_now(redis_client)
    with claims.holding("c:held", held.owner):  # the call in flight, slower than the lease
        wait_until(lambda: redis_now(redis_client) > claimed_at + 2, timeout=10)
        assert claims.claim("c:held").status is Status.OTHER
    # And once the call ended, the lease runs out as any other
    wait_until(lambda: claims.claim("c:held").ours, timeout=5)


def test_a_done_mark_survives_the_lease_and_blocks_every_later_claim(redis_client):
    # Given a side effect made and marked done with its result
    claims = Claims(redis_client, lease_seconds=0.2, ttl_seconds=TTL)
    held = claims.claim("c:done")
    claims.done("c:done", {"message_id": "m-1"}, ttl=600)
    claimed_at = redis_now(redis_client)
    wait_until(lambda: redis_now(redis_client) > claimed_at + 0.5, timeout=5)
    # When a later delivery claims it, after the lease, and the old holder lets go late
    again = claims.claim("c:done")
    released = claims.release("c:done", held.owner)
    # Then it is done, with the result, for the done mark's ttl
    assert again.status is Status.DONE and again.done
    assert again.fields == {"message_id": "m-1"}
    assert released is False
    assert claims.claim("c:done").done
    assert 590 < redis_client.ttl("c:done") <= 600
    assert claims.read("c:done")["state"] == "done"


def test_a_release_lets_go_only_of_a_claim_still_ours(redis_client):
    stale_side = Claims(redis_client, lease_seconds=0.3, ttl_seconds=TTL)
    stale = stale_side.claim("c:release")
    successor_side = Claims(redis_client, lease_seconds=30, ttl_seconds=TTL)
    successor = wait_until(lambda: (c := successor_side.claim("c:release")).ours and c,
                           timeout=5)
    assert stale_side.release("c:release", stale.owner) is False
    assert successor_side.claim("c:release").status is Status.OTHER  # still the successor's
    assert successor_side.release("c:release", successor.owner) is True
    assert successor_side.claim("c:release").ours  # let go: the next delivery may call


def test_tried_is_set_by_a_claim_and_cleared_only_by_a_release_that_knows(redis_client):
    claims = Claims(redis_client, lease_seconds=0.2, ttl_seconds=TTL)
    first = claims.claim("c:tried")
    assert not first.tried  # nobody before
    # A holder that died mid-call leaves it set: its successor must find out what happened
    died = wait_until(lambda: (c := claims.claim("c:tried")).ours and c, timeout=5)
    assert died.tried
    claims.release("c:tried", died.owner, tried=False)  # a refusal: nothing was made
    refused = claims.claim("c:tried")
    assert not refused.tried
    claims.release("c:tried", refused.owner)  # no word: it may have been made
    assert claims.claim("c:tried").tried
    assert died.first_at == first.first_at  # the first claim's time, kept


def test_the_first_write_wins_stamped_by_redis_s_clock(redis_client):
    claims = Claims(redis_client, lease_seconds=1, ttl_seconds=TTL)
    before = int(redis_client.time()[0])
    first = claims.write_once("c:record", {"id": "1"}, stamp="at")
    assert claims.write_once("c:record", {"id": "2"}, stamp="at") == first
    assert first["id"] == "1" and before <= int(first["at"]) <= int(redis_client.time()[0])


@pytest.mark.parametrize("old_mark, status", [("sent", Status.DONE), ("a1b2c3", Status.OTHER)])
def test_a_send_once_mark_the_code_before_claims_wrote_is_honoured(redis_client, old_mark,
                                                                    status):
    # Given a mark the send-once code before the claims left: ``sent``, or a sender's token
    redis_client.set("sent:q:b:1", old_mark, ex=120)
    # Then a claim reads it as done, or held for the rest of its lease
    found = Claims(redis_client, lease_seconds=30, ttl_seconds=TTL).claim("sent:q:b:1")
    assert found.status is status
    assert found.status is Status.DONE or 100 < found.wait <= 120
