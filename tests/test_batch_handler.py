"""A queue's batch handler: one call per batch (post-sent: one Redis round trip for every
event), each message still failing or succeeding on its own; against moto and redis-server."""

import dataclasses
import json
from urllib.parse import urlsplit

import pytest

from helpers import drain, queue_depth
from roundtrips import RoundTrips
from workers import queues
from workers.core.errors import PermanentError
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter
from workers.queues.post_sent import post_sent_batch
from workers.runtime.consumer import BatchResult, Consumer
from workers.runtime.deps import Deps


def post(update_id: str, *urls: str) -> str:
    return json.dumps({"update_id": update_id, "profile_id": "p1", "urls": list(urls)})


def drain_consumer(consumer: Consumer, n: int) -> list[BatchResult]:
    results = []
    while sum(r.received for r in results) < n:
        result = consumer.process_batch(wait_seconds=1)
        if result.received:
            results.append(result)
    return results


@pytest.fixture
def round_trips(redis_url):
    """A proxy before the test's redis-server counting the round trips made through it."""
    proxy = RoundTrips(int(urlsplit(redis_url).port or 6379))
    yield proxy
    proxy.stop()


def test_post_sent_counts_a_whole_batch_in_one_round_trip(settings, sqs, source, redis_client,
                                                          round_trips):
    # Given a consumer whose Redis is reached through a proxy that counts round trips, once
    # it has connected, read Redis's clock and loaded its script (once a process, not a batch)
    proxied = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{round_trips.port}/0")
    consumer = Consumer("post-sent", proxied)
    assert consumer.batch_handler is post_sent_batch
    sqs.send_message(QueueUrl=source, MessageBody=post("warm-up", "https://c.com"))
    drain_consumer(consumer, 1)
    round_trips.reset()
    # ... and five events naming a.com and b.com, one of them twice over (enqueued twice)
    bodies = [post(f"u{i}", "https://a.com", "https://b.com") for i in range(4)]
    for body in [*bodies, bodies[0]]:
        sqs.send_message(QueueUrl=source, MessageBody=body)
    # When the consumer drains them
    results = drain_consumer(consumer, 5)
    # Then each batch cost Redis one round trip, and every pair counted once
    assert round_trips.count == len(results)
    assert sum(r.succeeded for r in results) == 5
    assert LinkCounter(redis_client, settings.link_buckets).counts(["a.com", "b.com"]) == [4, 4]
    assert queue_depth(sqs, source) == 0


def test_a_bad_body_in_a_batch_is_dead_lettered_alone(settings, sqs, source, dlq, redis_client):
    for body in (post("u1", "https://a.com"), "not json", json.dumps({"profile_id": "p1"}),
                 post("u2", "https://a.com")):
        sqs.send_message(QueueUrl=source, MessageBody=body)
    results = drain_consumer(Consumer("post-sent", settings), 4)
    assert sum(r.succeeded for r in results) == 2
    assert sum(r.dead_lettered for r in results) == 2
    assert LinkCounter(redis_client, settings.link_buckets).counts(["a.com"]) == [2]
    assert sorted(m["Body"] for m in drain(sqs, dlq)) == sorted(
        ["not json", json.dumps({"profile_id": "p1"})])


def test_redis_away_retries_the_whole_batch_but_not_a_bad_body(settings, sqs, source, dlq):
    away = Deps(Settings(**{**vars(settings), "redis_url": "redis://127.0.0.1:1/0"}))
    for body in (post("u1", "https://a.com"), post("u2", "https://b.com"), "not json"):
        sqs.send_message(QueueUrl=source, MessageBody=body)
    results = drain_consumer(Consumer("post-sent", settings, deps=away), 3)
    assert sum(r.retried for r in results) == 2
    assert sum(r.dead_lettered for r in results) == 1
    assert queue_depth(sqs, source) == 2 and len(drain(sqs, dlq)) == 1


def test_a_batch_handler_fails_one_event_alone_by_its_result(settings, sqs, source, dlq):
    def second_is_bad(events, deps):
        return [PermanentError("bad") if e.update_id == "u2" else {"seen": e.update_id}
                for e in events]

    for i in (1, 2, 3):
        sqs.send_message(QueueUrl=source, MessageBody=post(f"u{i}", "https://a.com"))
    consumer = Consumer("post-sent", settings)
    consumer.batch_handler = second_is_bad
    results = drain_consumer(consumer, 3)
    assert (sum(r.succeeded for r in results), sum(r.dead_lettered for r in results)) == (2, 1)
    assert [json.loads(m["Body"])["update_id"] for m in drain(sqs, dlq)] == ["u2"]


def test_a_batch_handler_returning_the_wrong_number_of_results_retries_the_batch(
        settings, sqs, source):
    sqs.send_message(QueueUrl=source, MessageBody=post("u1", "https://a.com"))
    consumer = Consumer("post-sent", settings)
    consumer.batch_handler = lambda events, deps: []
    assert drain_consumer(consumer, 1)[0].retried == 1


def test_a_handler_given_or_registered_later_is_what_runs(settings):
    assert Consumer("post-sent", settings, handler=lambda e, d: None).batch_handler is None

    def plain(event, deps):
        return None

    queues.batch_handler("test-batch")(lambda events, deps: [])
    assert queues.get_batch("test-batch") is not None
    queues.handler("test-batch")(plain)  # a test's rig, registered after the queue's own
    try:
        assert queues.get_batch("test-batch") is None
        assert queues.get("test-batch") is plain
    finally:
        queues._REGISTRY.pop("test-batch")


@pytest.mark.parametrize(("urls", "expected"), [
    (["https://a.com", None, "https://www.a.com/"], {"urls": 1, "counted": 1, "invalid_urls": 1}),
    ([], {"urls": 0, "counted": 0, "invalid_urls": 0})])
def test_post_sent_batch_says_what_each_event_counted(urls, expected):
    from types import SimpleNamespace

    from workers.core.events import PostSent

    deps = SimpleNamespace(
        links=SimpleNamespace(record_all=lambda updates: [[True] * len(k) for _, k in updates]),
        notifier=SimpleNamespace(update_sent_all=lambda sent: None))
    events = [PostSent(update_id="u1", profile_id="p1", urls=urls),
              PostSent(update_id="u2", profile_id="p1", url="https://b.com")]
    assert post_sent_batch(events, deps) == [
        expected, {"urls": 1, "counted": 1, "invalid_urls": 0}]
