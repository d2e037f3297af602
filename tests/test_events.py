import json

import pytest

from workers.core.events import InvalidEvent, PostSent, decode, validate
from workers.core.message import Message, MessageDecodeError


def message(body: str) -> Message:
    return Message(id="m1", receipt_handle="r1", body=body, receive_count=1)


def test_post_sent_from_the_spec_decodes():
    event = decode("post-sent", message(json.dumps({
        "update_id": "123456", "profile_id": "654321", "created_at": "1480431305",
        "url": "https://buffer.com", "unknown": {"ignored": True}})))
    assert isinstance(event, PostSent)
    assert event.created_at == 1480431305.0
    assert event.all_urls == ["https://buffer.com"]


def test_url_and_urls_together_keep_their_order():
    event = validate("post-sent", {"update_id": "1", "profile_id": "2", "url": "a",
                                   "urls": ["b", "c"]})
    assert event.all_urls == ["a", "b", "c"]


@pytest.mark.parametrize("data, says", [
    ({"profile_id": "2"}, "update_id"),
    ({"update_id": "", "profile_id": "2"}, "update_id"),
    ({"update_id": "  ", "profile_id": "2"}, "update_id"),
    ({"update_id": 1, "profile_id": "2"}, "update_id"),
    ({"update_id": "1", "profile_id": "2", "urls": "https://a.com"}, "urls"),
    ({"update_id": "1", "profile_id": "2", "created_at": "yesterday"}, "created_at"),
    ({"update_id": "1", "profile_id": "2", "created_at": True}, "created_at"),
])
def test_invalid_post_sent_says_which_field(data, says):
    with pytest.raises(InvalidEvent) as raised:
        validate("post-sent", data)
    assert says in raised.value.reason


@pytest.mark.parametrize("body, says", [
    ("not json", "not JSON"),
    ("[1, 2]", "not an object"),
    ('"text"', "not an object"),
    ("[" * 100_000, "not JSON"),
])
def test_a_body_that_is_no_json_object_is_permanent(body, says):
    with pytest.raises(MessageDecodeError) as raised:
        message(body).json()
    assert says in raised.value.reason


def test_analytics_with_an_unknown_service_is_invalid():
    with pytest.raises(InvalidEvent):
        validate("analytics", {"update_id": "1", "profile_id": "2", "service": "myspace",
                               "service_update_id": "9"})
