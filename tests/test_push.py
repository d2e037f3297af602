"""push: payloads per platform, then the handler against moto's SNS through the consumer and a
real `workers run push` daemon."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

import devstack
from fakes import FakeServer, Request
from helpers import drain, log_events, process_all, queue_depth, send, start_daemon, wait_until
from moto_api import published
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.core.errors import PermanentError
from workers.core.events import Push
from workers.core.settings import Settings, SettingsError
from workers.queues import consumer_of, handlers
from workers.queues.push import check_target, describe_target, sns_message
from workers.runtime.consumer import Consumer


def push_event(target_arn: str, **extra) -> dict:
    return {"user_id": "u1", "target_arn": target_arn, "title": "Post sent",
            "body": "Your post went out", **extra}


# -- payloads, no server --------------------------------------------------------------------

def test_every_platform_gets_its_own_payload_format():
    event = Push(**push_event("arn:aws:sns:us-east-1:1:endpoint/GCM/app/x",
                              data={"update_id": "42", "count": 3, "aps": "ignored"}))
    message = {k: json.loads(v) if k != "default" else v
               for k, v in json.loads(sns_message(event)).items()}
    assert message["default"] == "Post sent: Your post went out"
    alert = {"title": "Post sent", "body": "Your post went out"}
    for apns in ("APNS", "APNS_SANDBOX"):
        assert message[apns] == {"aps": {"alert": alert, "sound": "default"},
                                 "update_id": "42", "count": 3}
    assert message["GCM"] == {"fcmV1Message": {"message": {
        "notification": alert, "data": {"update_id": "42", "count": "3", "aps": "ignored"}}}}


def test_a_push_without_data_or_title_sends_only_the_body():
    event = Push(**{**push_event("arn:aws:sns:us-east-1:1:endpoint/APNS/app/x"), "title": ""})
    message = json.loads(sns_message(event))
    assert message["default"] == "Your post went out"
    assert json.loads(message["APNS"]) == {"aps": {"alert": {"body": "Your post went out"},
                                                   "sound": "default"}}
    assert json.loads(message["GCM"]) == {"fcmV1Message": {"message": {
        "notification": {"body": "Your post went out"}}}}


def test_the_target_is_described_without_its_arn():
    arn = "arn:aws:sns:us-east-1:1:endpoint/APNS_SANDBOX/ios-app/0b6c-4e1a"
    fields = describe_target(arn)
    assert fields["platform"] == "APNS_SANDBOX" and fields["app"] == "ios-app"
    assert "0b6c" not in json.dumps(fields)
    assert describe_target("arn:aws:sns:us-east-1:1:user-42")["target_kind"] == "topic"


# -- against moto's SNS ---------------------------------------------------------------------

@pytest.fixture
def sns(settings):
    return boto3.client("sns", region_name=settings.region, endpoint_url=settings.endpoint_url)


@pytest.fixture
def endpoint(sns, prefix):
    """Makes a platform endpoint of a fresh application; ``enabled=False`` disables it, as SNS
    does when the platform reports the device token invalid."""
    def make(platform: str = "GCM", enabled: bool = True) -> str:
        app = sns.create_platform_application(
            Name=f"{prefix}{platform.lower()}", Platform=platform,
            Attributes={"PlatformCredential": "test-credential"})["PlatformApplicationArn"]
        arn = sns.create_platform_endpoint(PlatformApplicationArn=app,
                                           Token=uuid.uuid4().hex)["EndpointArn"]
        if not enabled:
            sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})
        return arn
    return make


@pytest.fixture
def source(queues, prefix):
    return queues[prefix + "push"]


@pytest.fixture
def dlq(queues, prefix):
    return queues[prefix + "push-dlq"]


def test_a_push_to_an_enabled_endpoint_is_published_and_deleted(settings, sqs, source, endpoint):
    gcm, apns = endpoint("GCM"), endpoint("APNS")
    send(sqs, source, push_event(gcm, data={"update_id": "42"}), push_event(apns))
    result = process_all(consumer_of("push", settings))
    assert result.succeeded == 2
    [to_android] = published(settings.endpoint_url, gcm)
    assert to_android["GCM"]["fcmV1Message"]["message"] == {
        "notification": {"title": "Post sent", "body": "Your post went out"},
        "data": {"update_id": "42"}}
    [to_iphone] = published(settings.endpoint_url, apns)
    assert to_iphone["APNS"]["aps"]["alert"] == {"title": "Post sent",
                                                 "body": "Your post went out"}
    assert to_iphone["default"] == "Post sent: Your post went out"
    assert queue_depth(sqs, source) == 0


@pytest.mark.parametrize("target, reason", [
    ("disabled", "sns EndpointDisabled: Endpoint is disabled"),
    ("missing", "sns NotFound: Endpoint does not exist"),
])
def test_a_push_sns_refuses_goes_to_the_dlq_with_the_reason(settings, sqs, source, dlq, endpoint,
                                                            target, reason):
    arn = endpoint(enabled=False) if target == "disabled" else endpoint() + "-gone"
    send(sqs, source, push_event(arn))
    result = consumer_of("push", settings).process_batch(wait_seconds=1)
    assert result.dead_lettered == 1
    [dead] = drain(sqs, dlq)
    assert dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"] == reason
    assert json.loads(dead["Body"])["target_arn"] == arn  # kept whole, for a replay
    assert queue_depth(sqs, source) == 0


def test_sns_unreachable_is_retried_not_deleted(settings, sqs, source, dlq, endpoint):
    away = handlers("push", settings.model_copy(update={"endpoint_url": f"http://127.0.0.1:{devstack.free_port()}"}))
    send(sqs, source, push_event(endpoint()))
    result = Consumer("push", settings, handlers=away).process_batch(wait_seconds=1)
    assert (result.retried, result.dead_lettered) == (1, 0)
    assert queue_depth(sqs, source) == 1
    assert queue_depth(sqs, dlq) == 0


def test_the_push_daemon_publishes_and_dead_letters(env, sqs, source, dlq, endpoint, settings,
                                                    tmp_path):
    enabled, disabled = endpoint("GCM"), endpoint("APNS", enabled=False)
    log = tmp_path / "push.log"
    proc = start_daemon("push", env, log)
    try:
        send(sqs, source, push_event(enabled), push_event(disabled))
        wait_until(lambda: published(settings.endpoint_url, enabled), timeout=20)
        wait_until(lambda: queue_depth(sqs, dlq) == 1, timeout=20)
        wait_until(lambda: queue_depth(sqs, source) == 0, timeout=10)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    handled = {e["outcome"]: e for e in log_events(log) if e["event"] == "message.handled"}
    assert handled["succeeded"]["platform"] == "GCM"
    assert "EndpointDisabled" in handled["dead_lettered"]["reason"]
    text = log.read_text()
    assert enabled not in text and disabled not in text  # device identifiers stay out of logs


# -- which targets are accepted -------------------------------------------------------------

@pytest.fixture
def topic(sns, sqs, prefix, queues):
    """An SNS topic with an SQS queue subscribed to it, standing for every device of an app;
    returns the topic's ARN and the subscribed queue's URL."""
    arn = sns.create_topic(Name=f"{prefix}all-devices")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{prefix}topic-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=inbox_arn)
    return arn, inbox


def test_a_push_to_a_topic_goes_to_the_dlq_and_reaches_no_subscriber(settings, sqs, source,
                                                                     dlq, topic):
    # Given a push event whose target is a topic, not one device
    arn, inbox = topic
    send(sqs, source, push_event(arn))
    # When the consumer handles it
    result = consumer_of("push", settings).process_batch(wait_seconds=1)
    # Then it is a dead letter saying why, and nothing was broadcast
    assert result.dead_lettered == 1
    [dead] = drain(sqs, dlq)
    reason = dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert reason.startswith("target_arn is an SNS topic") and arn not in reason
    assert "WORKERS_PUSH_ALLOW_TOPICS" in reason
    assert drain(sqs, inbox) == []


def test_a_push_to_a_topic_is_published_where_topics_are_allowed(settings, sqs, source, topic):
    arn, inbox = topic
    send(sqs, source, push_event(arn))
    allowed = settings.model_copy(update={"push_allow_topics": True})
    assert consumer_of("push", allowed).process_batch(wait_seconds=1).succeeded == 1
    assert wait_until(lambda: drain(sqs, inbox), timeout=10)


@pytest.mark.parametrize("arn", [
    "arn:aws:sqs:us-east-1:123456789012:some-queue",
    "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app",         # no endpoint id
    "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/x\n",
    "arn:aws:sns:us-east-1:123456789012:topic/../endpoint/GCM/app/x",
])
def test_a_target_that_is_no_platform_endpoint_is_refused(arn):
    with pytest.raises(PermanentError, match="not an SNS platform endpoint ARN"):
        check_target(arn, allow_topics=True)


def test_the_topic_setting_comes_from_the_environment():
    assert Settings.from_env({}).push_allow_topics is False
    assert Settings.from_env({"WORKERS_PUSH_ALLOW_TOPICS": "true"}).push_allow_topics is True
    with pytest.raises(SettingsError, match="WORKERS_PUSH_ALLOW_TOPICS"):
        Settings.from_env({"WORKERS_PUSH_ALLOW_TOPICS": "maybe"})


# -- sent once ------------------------------------------------------------------------------

def handle_until_empty(consumer: Consumer, sqs, source: str) -> None:
    """Batches until the queue is empty: a retried message comes back after its backoff."""
    def empty() -> bool:
        consumer.process_batch(wait_seconds=1)
        return queue_depth(sqs, source) == 0
    wait_until(empty, timeout=30)


class AcceptsThenFails(FakeServer):
    """An AWS endpoint that takes every request (as if the service acted on it) and answers
    500, as a service that accepted a send and then failed to say so."""

    def answer(self, request: Request) -> tuple[int, dict, bytes]:
        return 500, {"Content-Type": "text/xml"}, b"<ErrorResponse><Error><Code>InternalError" \
            b"</Code><Message>accepted, then failed</Message></Error></ErrorResponse>"


@pytest.fixture
def accepts_then_fails():
    server = AcceptsThenFails().start()
    yield server
    server.stop()


def test_a_redelivered_push_is_published_once(settings, sqs, source, endpoint):
    # Given one push event delivered twice (the API enqueued it twice, or a replay brought it
    # back after it was sent): the same body, two SQS messages
    arn = endpoint()
    send(sqs, source, push_event(arn, data={"update_id": "7"}),
         push_event(arn, data={"update_id": "7"}))
    # When both are handled (side by side, one waits for the other's send to finish)
    handle_until_empty(consumer_of("push", settings), sqs, source)
    # Then both are acknowledged, and the device got one notification
    assert len(published(settings.endpoint_url, arn)) == 1


def test_pushes_with_their_own_idempotency_keys_are_each_published(settings, sqs, source,
                                                                   endpoint):
    arn = endpoint()
    send(sqs, source, push_event(arn, idempotency_key="a"), push_event(arn, idempotency_key="b"))
    assert process_all(consumer_of("push", settings)).succeeded == 2
    assert len(published(settings.endpoint_url, arn)) == 2


def test_a_publish_that_fails_after_sns_took_it_is_not_retried_by_boto3(settings, sqs, source,
                                                                        endpoint,
                                                                        accepts_then_fails):
    # Given an SNS that takes the publish and then answers 500
    other = handlers("push", settings.model_copy(update={"endpoint_url": accepts_then_fails.url}))
    send(sqs, source, push_event(endpoint()))
    # When the consumer handles the push
    result = Consumer("push", settings, handlers=other).process_batch(wait_seconds=1)
    # Then SNS saw one request, not boto3's retries of it; the message waits for SQS's retry
    assert len(accepts_then_fails.requests) == 1
    assert result.retried == 1 and queue_depth(sqs, source) == 1


def test_redis_away_before_a_publish_is_transient_and_publishes_nothing(settings, sqs, source,
                                                                        endpoint):
    arn = endpoint()
    away = handlers("push", settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{devstack.free_port()}/0"}))
    send(sqs, source, push_event(arn))
    result = Consumer("push", settings, handlers=away).process_batch(wait_seconds=1)
    assert (result.retried, result.succeeded) == (1, 0)
    assert published(settings.endpoint_url, arn) == []
