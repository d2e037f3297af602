import json

import pytest

from helpers import drain
from workers.adapters.producer import Producer
from workers.adapters.sqs import batches, payload_bytes
from workers.core.events import InvalidEvent


def test_events_are_validated_then_sent_in_batches(settings, sqs, queues, prefix):
    events = [{"update_id": str(i), "profile_id": "p", "url": "https://a.com", "extra": i}
              for i in range(25)]
    assert Producer(settings, sqs).send_many("post-sent", events) == 25
    bodies = [json.loads(m["Body"]) for m in drain(sqs, queues[prefix + "post-sent"])]
    assert sorted(int(b["update_id"]) for b in bodies) == list(range(25))
    assert all("extra" in b for b in bodies)  # the caller's JSON, as given


def test_one_invalid_event_and_nothing_is_sent(settings, sqs, queues, prefix):
    events = [{"update_id": "1", "profile_id": "p"}, {"update_id": "2"}]
    with pytest.raises(InvalidEvent) as raised:
        Producer(settings, sqs).send_many("post-sent", events)
    assert "event 2" in raised.value.reason and "profile_id" in raised.value.reason
    assert drain(sqs, queues[prefix + "post-sent"]) == []


def test_batches_hold_ten_entries_and_fit_the_size_limit():
    assert [len(g) for g in batches([1] * 25)] == [10, 10, 5]
    assert [len(g) for g in batches([100_000] * 5)] == [2, 2, 1]
    assert list(batches([300_000, 10, 300_000])) == [[0], [1], [2]]  # too big: alone


def test_attributes_count_towards_a_batch_payload():
    attributes = {"workers.error": {"DataType": "String", "StringValue": "r" * 1000}}
    assert payload_bytes("body", attributes) == 4 + len("workers.error") + 6 + 1000


def test_large_events_are_sent_in_batches_sqs_accepts(settings, sqs, queues, prefix):
    # Given ten events of ~150 KB, together past the 256 KiB a batch request may carry
    events = [{"update_id": str(i), "profile_id": "p", "url": "https://a.com/" + "x" * 150_000}
              for i in range(10)]
    # When they are sent, then all of them arrive
    assert Producer(settings, sqs).send_many("post-sent", events) == 10
    assert len(drain(sqs, queues[prefix + "post-sent"])) == 10
