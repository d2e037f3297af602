"""A queue's batch handler: one call per batch (post-sent: one Redis round trip for every
event), each message still failing or succeeding on its own; against moto and redis-server."""

import json
from urllib.parse import urlsplit

import pytest

from helpers import drain, queue_depth
from roundtrips import RoundTrips
from workers.core.errors import PermanentError
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter
from workers.queues import consumer_of, handlers
from workers.queues.post_sent import CountLinks
from workers.runtime.consumer import BatchResult, Consumer, Handlers


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
    proxied = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{round_trips.port}/0"})
    consumer = consumer_of("post-sent", proxied)
    assert consumer._built().batch.__func__ is CountLinks.handle_batch
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
    results = drain_consumer(consumer_of("post-sent", settings), 4)
    assert sum(r.succeeded for r in results) == 2
    assert sum(r.dead_lettered for r in results) == 2
    assert LinkCounter(redis_client, settings.link_buckets).counts(["a.com"]) == [2]
    assert sorted(m["Body"] for m in drain(sqs, dlq)) == sorted(
        ["not json", json.dumps({"profile_id": "p1"})])


def test_redis_away_retries_the_whole_batch_but_not_a_bad_body(settings, sqs, source, dlq):
    away = handlers("post-sent", Settings(**{**vars(settings),
                                             "redis_url": "redis://127.0.0.1:1/0"}))
    for body in (post("u1", "https://a.com"), post("u2", "https://b.com"), "not json"):
        sqs.send_message(QueueUrl=source, MessageBody=body)
    results = drain_consumer(Consumer("post-sent", settings, handlers=away), 3)
    assert sum(r.retried for r in results) == 2
    assert sum(r.dead_lettered for r in results) == 1
    assert queue_depth(sqs, source) == 2 and len(drain(sqs, dlq)) == 1


def test_a_batch_handler_fails_one_event_alone_by_its_result(settings, sqs, source, dlq):
    def second_is_bad(events):
        return [PermanentError("bad") if e.update_id == "u2" else {"seen": e.update_id}
                for e in events]

    for i in (1, 2, 3):
        sqs.send_message(QueueUrl=source, MessageBody=post(f"u{i}", "https://a.com"))
    consumer = Consumer("post-sent", settings, handlers=Handlers(lambda e: None,
                                                                 batch=second_is_bad))
    results = drain_consumer(consumer, 3)
    assert (sum(r.succeeded for r in results), sum(r.dead_lettered for r in results)) == (2, 1)
    assert [json.loads(m["Body"])["update_id"] for m in drain(sqs, dlq)] == ["u2"]


def test_a_batch_handler_returning_the_wrong_number_of_results_retries_the_batch(
        settings, sqs, source):
    sqs.send_message(QueueUrl=source, MessageBody=post("u1", "https://a.com"))
    consumer = Consumer("post-sent", settings, handlers=Handlers(lambda e: None,
                                                                 batch=lambda events: []))
    assert drain_consumer(consumer, 1)[0].retried == 1


def test_a_queue_with_only_a_plain_handler_runs_it_one_event_at_a_time(settings):
    def plain(event):
        return None

    consumer = Consumer("post-sent", settings, handlers=Handlers(plain))
    assert consumer._built().batch is None and consumer._built().handle is plain


@pytest.mark.parametrize(("urls", "expected"), [
    (["https://a.com", None, "https://www.a.com/"], {"urls": 1, "counted": 1, "invalid_urls": 1}),
    ([], {"urls": 0, "counted": 0, "invalid_urls": 0})])
def test_post_sent_batch_says_what_each_event_counted(urls, expected):
    from types import SimpleNamespace

    from workers.core.events import PostSent

    count = CountLinks(
        SimpleNamespace(record_all=lambda updates: [[True] * len(k) for _, k in updates]),
        SimpleNamespace(update_sent_all=lambda sent: None), archive=None)
    events = [PostSent(update_id="u1", profile_id="p1", urls=urls),
              PostSent(update_id="u2", profile_id="p1", url="https://b.com")]
    assert count.handle_batch(events) == [
        expected, {"urls": 1, "counted": 1, "invalid_urls": 0}]
