import json

import pytest

from helpers import drain
from workers.events import InvalidEvent
from workers.producer import Producer, batches


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
    assert [len(g) for g in batches(["x"] * 25)] == [10, 10, 5]
    big = "x" * 100_000
    assert [len(g) for g in batches([big] * 5)] == [2, 2, 1]
