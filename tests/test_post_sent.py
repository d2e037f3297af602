"""post-sent through the consumer, against moto's server and a real redis-server: what an
event's URLs count, whatever the event's entries are."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from helpers import drain, process_all, queue_depth
from workers.domain.links.counter import LinkCounter
from workers.queues import consumer_of


def invalid_urls_counted() -> float:
    return REGISTRY.get_sample_value("workers_invalid_urls_total", {"queue": "post-sent"}) or 0.0


def test_entries_of_urls_that_are_no_strings_are_skipped_and_the_valid_url_counts(
        settings, sqs, queues, prefix, redis_client):
    # Given an event whose urls hold one valid URL and three entries that are no strings
    source, dlq = queues[prefix + "post-sent"], queues[prefix + "post-sent-dlq"]
    sqs.send_message(QueueUrl=source, MessageBody=json.dumps({
        "update_id": "u1", "profile_id": "p1", "created_at": 1480431305,
        "urls": ["https://a.com", None, 5, {"x": 1}]}))
    invalid_before = invalid_urls_counted()
    # When the consumer handles it
    result = process_all(consumer_of("post-sent", settings))
    # Then a.com counts once, the three bad entries count as invalid URLs, nothing is dead
    assert (result.succeeded, result.dead_lettered) == (1, 0)
    assert LinkCounter(redis_client, settings.link_buckets).counts(["a.com"]) == [1]
    assert invalid_urls_counted() - invalid_before == 3
    assert queue_depth(sqs, source) == 0 and drain(sqs, dlq) == []


def test_a_url_field_that_is_no_string_is_skipped_like_an_entry_of_urls(
        settings, sqs, queues, prefix, redis_client):
    source = queues[prefix + "post-sent"]
    sqs.send_message(QueueUrl=source, MessageBody=json.dumps({
        "update_id": "u2", "profile_id": "p1", "url": 7, "urls": ["https://b.com"]}))
    invalid_before = invalid_urls_counted()
    assert process_all(consumer_of("post-sent", settings)).succeeded == 1
    assert LinkCounter(redis_client, settings.link_buckets).counts(["b.com"]) == [1]
    assert invalid_urls_counted() - invalid_before == 1


def test_post_sent_is_a_plain_function_outside_a_consumer():
    """No consumer around it: it counts, and leaves the archive to its before-ack step."""
    from types import SimpleNamespace

    from workers.core.events import PostSent
    from workers.queues.post_sent import CountLinks, archive_records

    recorded = []
    count = CountLinks(
        SimpleNamespace(record=lambda uid, keys: recorded.append((uid, keys)) or [True]),
        SimpleNamespace(update_sent=lambda *a: None), archive=object())
    event = PostSent(update_id="u1", profile_id="p1", url="https://www.a.com/#x")
    assert count.handle(event)["urls"] == 1
    assert recorded == [("u1", ["a.com"])]
    assert [r["url"] for r in archive_records(event)] == ["a.com"]
