"""Secrets and personal data stay out of DLQ reasons, logs, reprs and the operator's terminal:
recipient addresses in SMTP and SES refusals, the Redis password in Settings' repr, an access
token a network echoes in a 200, escape sequences in dead letters shown by `dlq peek`."""

from __future__ import annotations

import json

import boto3
import pytest
from aiosmtpd.controller import Controller
from botocore.stub import Stubber

import devstack
from devstack.httpfake import Request
from devstack.networks import Networks
from helpers import drain, send, workers_cmd
from workers.adapters import networks as social
from workers.adapters.mail import SESMailer, build_message
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.core.errors import PermanentError
from workers.core.settings import Settings
from workers.queues import consumer_of

SENDER = "no-reply@workers.example.com"


# -- recipient addresses --------------------------------------------------------------------

class QuotingRelay:
    """An aiosmtpd handler refusing every recipient with a reply that quotes the address, as
    Postfix does ("<ada@example.com>: Recipient address rejected")."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


@pytest.fixture
def quoting_relay():
    controller = Controller(QuotingRelay(), hostname="127.0.0.1", port=devstack.free_port())
    controller.start()
    yield controller.port
    controller.stop()


def test_an_smtp_refusal_quoting_the_recipient_leaves_the_address_out(
        settings, queues, prefix, sqs, quoting_relay, capsys):
    # Given a relay whose refusal names the recipient
    to = f"ada.{prefix}@example.com"
    smtp = settings.model_copy(update={
        "email_from": SENDER, "email_backend": "smtp", "smtp_host": "127.0.0.1",
        "smtp_port": quoting_relay, "smtp_starttls": False})
    send(sqs, queues[prefix + "email"], {"to": to, "subject": "Hi", "text": "hello"})
    # When the email is handled and dead-lettered
    assert consumer_of("email", smtp).process_batch(wait_seconds=1).dead_lettered == 1
    # Then neither the DLQ reason nor the log has the address; the reason keeps its domain
    [dead] = drain(sqs, queues[prefix + "email-dlq"])
    reason = dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert reason == "smtp 550: 5.1.1 <***@example.com>: Recipient address rejected: User unknown"
    assert to not in capsys.readouterr().out


def test_an_ses_refusal_naming_the_recipient_leaves_the_address_out():
    ses = boto3.client("ses", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    stub = Stubber(ses)
    stub.add_client_error("send_raw_email", "MessageRejected",
                          "Email address is not verified: grace.hopper@navy.example.mil, "
                          f"{SENDER}")
    message = build_message(SENDER, "grace.hopper@navy.example.mil", "Hi", "x", None)
    with stub, pytest.raises(PermanentError) as raised:
        SESMailer(ses).send(message)
    assert raised.value.reason == ("ses MessageRejected: Email address is not verified: "
                                   "***@navy.example.mil, ***@workers.example.com")
    assert "grace.hopper" not in str(raised.value)


# -- the Redis password ---------------------------------------------------------------------

@pytest.mark.parametrize("url", ["redis://:s3cr3t-pw@redis.internal:6379/0",
                                 "rediss://default:s3cr3t-pw@redis.internal:6380/0",
                                 "redis://redis.internal:6379/0?password=s3cr3t-pw"])
def test_the_redis_password_is_masked_in_the_settings_repr(url):
    settings = Settings.from_env({"REDIS_URL": url})
    assert settings.redis_url == url  # still there to connect with
    assert "s3cr3t-pw" not in repr(settings)
    assert "redis.internal" in repr(settings) and "***" in repr(settings)


# -- an access token echoed by a network ----------------------------------------------------

class EchoingTwitter(Networks):
    """X answering 200 with only "errors", whose detail repeats the token it was given."""

    def answer(self, request: Request):
        given = (request.header("Authorization") or "").removeprefix("Bearer ")
        return 200, {}, {"errors": [{"title": "Forbidden",
                                     "detail": f"token {given} may not read this tweet"}]}


def test_a_twitter_error_in_a_200_never_carries_the_token():
    fake = EchoingTwitter().start()
    try:
        api = social.apis(Settings().model_copy(
            update={"network_options": {"twitter_api_url": fake.url}}))["twitter"]
        with pytest.raises(PermanentError) as raised:
            api.engagement("1460323737035677698", "tw-token-SECRET-9z")
    finally:
        fake.stop()
    assert "tw-token-SECRET-9z" not in str(raised.value)
    assert raised.value.reason == ("twitter api for post 1460323737035677698: "
                                   "token *** may not read this tweet")


# -- a dead letter's text on the operator's terminal ----------------------------------------

HOSTILE = "ok \x1b]0;pwned\x07\x1b[2J\x9b31m \u202eevil\r\nnext"


def test_dlq_peek_escapes_control_characters_of_bodies_and_reasons(env, sqs, queues, prefix):
    # Given a dead letter whose body and reason hold terminal escape sequences
    sqs.send_message(QueueUrl=queues[prefix + "post-sent-dlq"], MessageBody=HOSTILE,
                     MessageAttributes={
                         ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": HOSTILE},
                         "origin": {"DataType": "String", "StringValue": HOSTILE}})
    # When an operator peeks at it, as text and as JSON
    text = workers_cmd("dlq", "peek", "post-sent", env=env)
    as_json = workers_cmd("dlq", "peek", "post-sent", "--json", env=env)
    # Then no control or format character reaches the terminal, each is shown escaped
    assert text.returncode == as_json.returncode == 0, text.stderr + as_json.stderr
    for out in (text.stdout, as_json.stdout):
        assert not any(c in out for c in "\x1b\x07\x9b\u202e\r"), repr(out)
    assert "  body: ok \\x1b]0;pwned\\x07\\x1b[2J\\x9b31m \\u202eevil\\r\\nnext" in text.stdout
    assert "  error: ok \\x1b]0;pwned" in text.stdout
    [shown] = json.loads(as_json.stdout)
    assert shown["body"] == shown["error"] == shown["attributes"]["origin"] == HOSTILE
