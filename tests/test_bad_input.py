"""Bad input: whatever SQS accepts as a body is decoded into a valid event or refused as
permanent with a reason, never an exception of another kind; and a live daemon fed thousands
of such bodies stays up, dead-letters each with its reason, and counts the valid ones once."""

from __future__ import annotations

import json
import os
import random
import string
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DeadLetters, queue_depth, wait_until
from workers import QUEUES
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.core import events
from workers.core.errors import PermanentError
from workers.core.message import Message
from workers.domain.links.counter import LinkCounter

# `make fuzz` sends thousands; `make test` a short run of the same.
FUZZ_BODIES = int(os.environ.get("WORKERS_FUZZ_BODIES", "500"))
# What SQS accepts in a body (its documented character set); anything else it refuses itself.
SQS_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(
    lambda c: c in "\t\n\r" or 0x20 <= ord(c) <= 0xD7FF or 0xE000 <= ord(c) <= 0xFFFD
    or ord(c) >= 0x10000)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(SQS_TEXT, max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["update_id", "profile_id", "created_at", "service", "url", "urls",
                         "service_update_id", "to", "template", "params", "target_arn",
                         "title", "body"]) | st.text(SQS_TEXT, max_size=10),
        inner, max_size=8),
    max_leaves=20)


def decoded(queue: str, body: str) -> events.Event | None:
    """The event, or None when refused as permanent with a reason; anything else raised fails
    the test."""
    message = Message(id="m", receipt_handle="r", body=body, receive_count=1)
    try:
        return events.decode(queue, message)
    except PermanentError as exc:
        assert exc.reason.strip(), "a refusal without a reason"
        return None


def outcome(queue: str, body: str) -> str:
    return "valid" if decoded(queue, body) is not None else "refused"


@settings(max_examples=300)
@given(st.sampled_from(QUEUES), st.text(SQS_TEXT, max_size=300))
def test_any_text_body_is_an_event_or_a_permanent_refusal(queue, body):
    outcome(queue, body)


@settings(max_examples=300)
@given(st.sampled_from(QUEUES), JSON)
def test_any_json_body_is_an_event_or_a_permanent_refusal(queue, value):
    outcome(queue, json.dumps(value, allow_nan=True))


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,                      # deeper than Python's recursion limit
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    '{"update_id": "' + "x" * 250_000 + '"}',           # near SQS's 256 KiB
    "\ufeff{}", "\u0000", "NaN", "1e999999", '"\\ud800"',
])
def test_pathological_bodies_are_refused_with_a_reason(body):
    for queue in QUEUES:
        assert outcome(queue, body) != "valid"


# Each kind of fuzz body, and whether it is a valid post-sent event: said here by hand, from
# how the body is made, not by the code under test.
INVALID, VALID = False, True


def fuzz_bodies(rng: random.Random, count: int) -> list[tuple[str, bool]]:
    """Bodies of every bad kind SQS accepts: oversized, deeply nested, odd Unicode, wrong
    types, truncated, and near misses of a post-sent event; each with whether it is valid."""
    odd = "\u202e\u0301\U0001F600\u00a0\ufffd\u4e2d\U00010348"
    makers = [
        (INVALID, lambda: "x" * rng.randrange(200_000, 256_000)),           # not JSON
        (INVALID, lambda: "[" * (d := rng.randrange(1_000, 100_000)) + "]" * d),  # no object
        # at most 80 random characters: never the 30-odd an event needs in their places
        (INVALID, lambda: "".join(rng.choice(odd + string.printable)
                                  for _ in range(rng.randrange(1, 80)))),
        (INVALID, lambda: json.dumps({"update_id": rng.choice([1, None, [], {}, True]),
                                      "profile_id": "p", "created_at": "1480431305",
                                      "service": "twitter", "url": "https://a.com"})),
        (INVALID, lambda: json.dumps({"update_id": "u", "profile_id": "p", "created_at": [],
                                      "service": "twitter", "urls": "https://a.com"})),
        # valid, and not one of its URLs counts
        (VALID, lambda: json.dumps({"update_id": f"n{rng.random()}", "profile_id": "p",
                                    "created_at": 1480431305, "service": "twitter",
                                    "urls": ["ftp://nope", "javascript:alert(1)", " "]})),
        (INVALID, lambda: json.dumps(rng.choice([[], 0, "s", None, 1.5]))),
        (INVALID, lambda: '{"update_id": "u1", "profile_id": "p1", "created_at": 14804313'),
    ]
    bodies = []
    for _ in range(count):
        valid, make = rng.choice(makers)
        bodies.append((make(), valid))
    return bodies


def test_a_live_daemon_survives_a_fuzz_run_and_counts_the_valid_events_once(
        daemons, sqs, queues, prefix, redis_client, capsys, env, requeue):
    # Given thousands of random bad bodies with valid events (some sent twice) among them
    rng = random.Random(20261123)
    valid = [json.dumps({"update_id": f"v{i}", "profile_id": "p1", "created_at": 1480431305,
                         "service": "twitter",
                         "urls": [f"https://www.site{i % 13}.com/x?utm_source=f", "ftp://bad"]})
             for i in range(150)]
    fuzz = fuzz_bodies(rng, FUZZ_BODIES)
    bodies = [body for body, _ in fuzz] + valid + valid[:30]
    rng.shuffle(bodies)
    expected_dead = sum(1 for _, is_valid in fuzz if not is_valid)
    good = len(bodies) - expected_dead
    # Each valid event v{i} names site{i % 13}.com/x once (www., the utm_ parameter and the
    # ftp URL dropped); its copy sent twice counts once: by hand, not by normalize_url.
    sites = [f"site{i}.com/x" for i in range(13)]
    expected_counts = [len(range(s, 150, 13)) for s in range(13)]
    assert sum(expected_counts) == 150
    # When a real daemon consumes them
    source, dlq = queues[prefix + "post-sent"], queues[prefix + "post-sent-dlq"]
    # A production-like window, not the suite's 2 s: under two busy pytest workers a bad body
    # copied to the DLQ 1.5 s after its receive came back before its delete and was copied
    # twice (SQS's at least once, not what this test is about; the heartbeat has its own).
    requeue(visibility_timeout=15)
    proc = daemons("post-sent", environment={**env, "WORKERS_VISIBILITY_TIMEOUT": "15"})
    collector = DeadLetters(sqs, dlq)
    for start in range(0, len(bodies), 10):  # batches within SQS's 256 KiB per request
        while queue_depth(sqs, source) > 150:  # moto slows with depth
            time.sleep(0.05)
        batch = bodies[start:start + 10]
        if sum(len(b.encode()) for b in batch) < 250_000:
            sqs.send_message_batch(QueueUrl=source, Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)])
        else:
            for body in batch:
                sqs.send_message(QueueUrl=source, MessageBody=body)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=60 + FUZZ_BODIES / 5, interval=1)
    # Then it is alive, every bad body is in the DLQ with a reason, the valid ones counted once
    dead = collector.stop()
    reasons = [m["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"] for m in dead]
    counts = LinkCounter(redis_client).counts(sites)
    with capsys.disabled():
        print(f"\nfuzz: {len(bodies)} bodies sent, {good} valid, "
              f"{len(dead)} dead-lettered (expected {expected_dead}), all with a reason: "
              f"{all(reasons)}; {sum(counts)} links counted (expected {sum(expected_counts)}); "
              f"daemon alive: {proc.poll() is None}")
    assert proc.poll() is None
    # Every bad body is in the DLQ with its reason, none lost and no valid one among them. A
    # bad body may be there twice: SQS (and moto, under receives in flight) delivers at least
    # once, and two deliveries of one message each copy it. Those copies are printed.
    wanted = Counter(b for b, ok in fuzz if not ok)
    found = Counter(m["Body"] for m in dead)
    twice = [(m["Body"][:120], m["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"][:200])
             for m in dead if found[m["Body"]] > wanted[m["Body"]]]
    with capsys.disabled():
        print(f"fuzz: dead letters copied more than once: {twice}")
    assert not wanted - found, wanted - found  # none lost
    assert set(found) <= set(wanted), set(found) - set(wanted)  # no valid one dead-lettered
    assert all(r.strip() for r in reasons)
    assert counts == expected_counts
