"""Send once: the sent marks in a real redis-server."""

from __future__ import annotations

import pytest

from helpers import wait_until
from workers.core.errors import PermanentError, TransientError
from workers.domain.sending.sent import SentMarks


def test_a_message_sent_once_is_not_sent_again(redis_client):
    marks, sends = SentMarks(redis_client), []
    assert marks.once("sent:t:1", lambda: sends.append(1) or "id-1") == "id-1"
    assert marks.once("sent:t:1", lambda: sends.append(2) or "id-2") is None
    assert sends == [1]
    assert 0 < redis_client.ttl("sent:t:1") <= marks.ttl


def test_a_failed_send_leaves_no_mark_so_a_retry_sends(redis_client):
    marks = SentMarks(redis_client)
    with pytest.raises(PermanentError):
        marks.once("sent:t:2", lambda: (_ for _ in ()).throw(PermanentError("refused")))
    assert marks.once("sent:t:2", lambda: "id") == "id"


def test_a_second_delivery_waits_while_the_first_is_being_sent(redis_client):
    marks = SentMarks(redis_client)

    def send_while_another_delivery_arrives() -> str:
        with pytest.raises(TransientError, match="being sent now"):
            marks.once("sent:t:3", lambda: "twice")
        return "once"

    assert marks.once("sent:t:3", send_while_another_delivery_arrives) == "once"
    assert marks.once("sent:t:3", lambda: "again") is None


def test_redis_failing_after_the_send_does_not_fail_the_sent_message(redis_client):
    marks = SentMarks(redis_client)

    def send_then_lose_redis() -> str:
        marks.redis = type(redis_client).from_url("redis://127.0.0.1:1/0",
                                                  socket_connect_timeout=1)
        return "id"

    assert marks.once("sent:t:4", send_then_lose_redis) == "id"


def test_a_send_slower_than_its_lease_still_holds_off_a_second_delivery(redis_client):
    marks = SentMarks(redis_client, lease=1)
    sends = []

    def slow_send() -> str:  # an SMTP conversation slower than the lease, each step in time
        started = redis_client.time()[0]
        wait_until(lambda: redis_client.time()[0] >= started + 3, timeout=10)
        with pytest.raises(TransientError, match="being sent now"):
            marks.once("sent:t:5", lambda: sends.append("twice"))
        return "once"

    assert marks.once("sent:t:5", slow_send) == "once"
    assert sends == []
    assert marks.once("sent:t:5", lambda: "again") is None


def test_a_mark_the_send_once_code_before_claims_wrote_is_honoured(redis_client):
    # Given marks a daemon of the version before left: a send done, and one in flight
    redis_client.set("sent:t:6", "sent", ex=60)
    redis_client.set("sent:t:7", "5f0c9a", ex=120)
    marks, sends = SentMarks(redis_client), []
    # Then an upgraded daemon sends neither again
    assert marks.once("sent:t:6", lambda: sends.append(6)) is None
    with pytest.raises(TransientError, match="being sent now"):
        marks.once("sent:t:7", lambda: sends.append(7))
    assert sends == []
