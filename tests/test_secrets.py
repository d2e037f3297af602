"""An access token reaches no log line and no DLQ reason, whatever shape it was stored in and
however an error escapes it: a token with whitespace is refused when read, and a request that
carries one anyway fails permanently, its reason masked in every escaping."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from devstack.networks import Account, Networks
from helpers import drain
from workers.adapters import networks as social
from workers.adapters.networks.posting import Draft
from workers.adapters.notify import Notifier
from workers.adapters.producer import Producer
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.core.errors import PermanentError
from workers.core.settings import Settings
from workers.core.text import redact
from workers.domain.publishing.credentials import RedisCredentials
from workers.domain.publishing.publications import Publications
from workers.domain.publishing.ratelimits import RateLimits
from workers.queues.publish import PublishUpdate
from workers.runtime import logs
from workers.runtime.consumer import Consumer, Handlers

SECRET = "tw-token-SECRET-9f8e"
# What would betray a token: any run of it long enough to mean something.
TELLS = ("SECRET", "tw-token", "9f8e")
SPOILED = [SECRET + "\n", SECRET + "\r\n", " " + SECRET, "tw-token SECRET-9f8e",
           SECRET + "\t", SECRET + "\x00"]


@pytest.fixture
def json_logs():
    """Configures the daemon's JSON lines (on capsys's stdout when called); the defaults again
    afterwards."""
    yield lambda: logs.configure("info")
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logs._StdlibHandler)]:
        root.removeHandler(handler)


def tells(text: str) -> list[str]:
    return [tell for tell in TELLS if tell in text]


@pytest.fixture
def networks():
    with Networks(accounts=[Account("twitter", SECRET, user_id="1", username="u")]) as standin:
        yield standin


def poster(networks: Networks, service: str = "twitter") -> social.Poster:
    return social.apis(Settings().model_copy(update={
        "network_options": {f"{name}_api_url": networks.url
                            for name in ("twitter", "facebook", "linkedin")}}),
        timeout=2.0)[service]


@pytest.mark.parametrize("token", SPOILED, ids=repr)
def test_a_stored_token_with_whitespace_is_refused_naming_the_profile_not_the_token(
        redis_client, token):
    # Given a profile whose stored token has whitespace or a control character in it
    redis_client.hset("creds:p1", "twitter", token)
    # When the credential lookup reads it
    with pytest.raises(PermanentError) as refused:
        RedisCredentials(redis_client).token("p1", "twitter")
    # Then it is refused for good, saying whose token and why, and nothing of the token
    reason = refused.value.reason
    assert "profile p1" in reason and "twitter" in reason and "malformed" in reason
    assert tells(reason) == [] and tells(repr(refused.value)) == []


@pytest.mark.parametrize("service", ["twitter", "facebook", "linkedin"])
def test_a_request_carrying_a_newline_token_fails_for_good_without_the_token(networks,
                                                                             service):
    # Given a token with a trailing newline, past the lookup (another store, or an old row)
    draft = Draft("hello", target={"facebook": "104", "linkedin": "urn:li:person:a"}.get(service))
    # When a post is attempted with it, through requests for real against the stand-in
    with pytest.raises(PermanentError) as failed:
        poster(networks, service).create(SECRET + "\n", draft)
    # Then nothing was sent (not an "outcome unknown" to resolve), and the reason, which
    # requests's error showed the header's repr in, holds no part of the token
    assert "not called" in failed.value.reason
    assert tells(failed.value.reason) == [], failed.value.reason
    assert networks.created(service) == 0


@pytest.mark.parametrize("text", [
    f"Invalid header value b'Bearer {SECRET}\\n'", f"{json.dumps(SECRET + chr(10))}",
    f"token={SECRET}%0A", f"Bearer {SECRET!r}", f"{SECRET}"], ids=repr)
def test_a_secret_is_masked_in_every_escaping(text):
    assert tells(redact(text, SECRET + "\n")) == []


def test_redaction_leaves_other_text_alone():
    assert redact("twitter api 401 for post 42: Unauthorized", SECRET) == (
        "twitter api 401 for post 42: Unauthorized")


def test_a_publish_event_with_a_spoiled_token_is_dead_lettered_at_once_naming_the_profile(
        settings, networks, redis_client, sqs, queues, prefix, json_logs, capsys):
    # Given a profile whose stored token ends in a newline, and a daemon's log on stdout
    redis_client.hset("creds:p1", "twitter", SECRET + "\n")
    json_logs()
    settings = settings.model_copy(
        update={"network_options": {"twitter_api_url": networks.url}})
    publish = PublishUpdate(
        Publications(redis_client, settings.publish_lease), RateLimits(redis_client),
        RedisCredentials(redis_client), social.apis(settings, timeout=2.0), Producer(settings),
        Notifier.from_settings(settings), analytics_delay=settings.analytics_delay)
    consumer = Consumer("publish", settings, concurrency=1,
                        handlers=Handlers(publish.handle, before_ack=(publish.chain_batch,)))
    sqs.send_message(QueueUrl=queues[prefix + "publish"], MessageBody=json.dumps(
        {"update_id": "u1", "profile_id": "p1", "service": "twitter", "text": "hello"}))
    # When its publish event is handled
    result = consumer.process_batch(wait_seconds=1)
    # Then it goes to the DLQ on its first receive, the reason naming the profile, and no
    # log line nor the reason holds any of the token
    assert result.dead_lettered == 1
    [dead] = drain(sqs, queues[prefix + "publish-dlq"])
    reason = dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert "profile p1" in reason and tells(reason) == []
    out = capsys.readouterr().out
    assert "message.dead_lettered" in out and tells(out) == []
    assert networks.created("twitter") == 0
