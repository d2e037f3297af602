"""email: templates and settings on their own, then the handler through the consumer against
moto's SES and a real SMTP server (aiosmtpd on a free loopback port), and a real
`workers run email` daemon."""

from __future__ import annotations

import asyncio
import email
import threading
from email import policy
from typing import Iterator

import boto3
import pytest
from aiosmtpd.controller import Controller

import devstack
from helpers import drain, log_events, process_all, queue_depth, send, start_daemon, wait_until
from moto_api import sent_emails
from workers.adapters.mail import SMTPMailer, build_message
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.core.backoff import ExponentialBackoff
from workers.core.errors import PermanentError
from workers.core.settings import Settings, SettingsError
from workers.domain.sending import rendering
from workers.domain.sending.sent import SentMarks
from workers.queues import consumer_of, handlers
from workers.queues.email import SendEmail, mailer
from workers.runtime.consumer import Consumer, Handlers

SENDER = "Scheduler <no-reply@workers.example.com>"
SCRIPT = "<script>alert(1)</script>"
WELCOME = {"name": SCRIPT, "dashboard_url": "https://app.example.com/?a=1&b=2"}


def part(message, subtype: str) -> str | None:
    body = message.get_body((subtype,))
    return None if body is None else body.get_content()


# -- templates and settings, no server ------------------------------------------------------

def test_html_is_autoescaped_and_text_is_not():
    rendered = rendering.render("welcome", WELCOME)
    assert rendered.subject == f"Welcome aboard, {SCRIPT}!"
    assert "Hi <script>alert(1)</script>," in rendered.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html and SCRIPT not in rendered.html
    assert 'href="https://app.example.com/?a=1&amp;b=2"' in rendered.html


def test_every_shipped_template_renders_with_its_params():
    params = {"welcome": WELCOME,
              "post-failed": {"name": "Ada", "service": "twitter", "error": "token expired",
                              "post_url": "https://app.example.com/posts/1"}}
    assert rendering.names() == sorted(params)
    for name, given in params.items():
        rendered = rendering.render(name, given)
        assert rendered.subject and rendered.text and "<html" in rendered.html


def test_a_missing_param_is_a_permanent_error_naming_it():
    with pytest.raises(rendering.RenderError, match="'dashboard_url' is undefined"):
        rendering.render("welcome", {"name": "Ada"})


@pytest.mark.parametrize("name", ["nope", "../welcome", "base.html", "welcome/body.txt", ""])
def test_an_unknown_template_is_a_permanent_error(name):
    with pytest.raises(rendering.UnknownTemplate, match="unknown email template"):
        rendering.render(name, {})


def test_email_settings_come_from_the_environment_and_the_password_stays_hidden():
    settings = Settings.from_env({
        "WORKERS_EMAIL_BACKEND": "SMTP", "WORKERS_EMAIL_FROM": SENDER,
        "WORKERS_SMTP_HOST": "mail.example.com", "WORKERS_SMTP_PORT": "2525",
        "WORKERS_SMTP_USER": "bot", "WORKERS_SMTP_PASSWORD": "hunter2",
        "WORKERS_SMTP_STARTTLS": "false"})
    assert (settings.email_backend, settings.smtp_port, settings.smtp_starttls) == ("smtp", 2525,
                                                                                 False)
    assert settings.smtp_password == "hunter2"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(SMTPMailer.from_settings(settings))
    defaults = Settings.from_env({})
    assert (defaults.email_backend, defaults.smtp_port, defaults.smtp_starttls) == ("ses", 587,
                                                                                 True)
    with pytest.raises(SettingsError, match="WORKERS_EMAIL_BACKEND"):
        Settings.from_env({"WORKERS_EMAIL_BACKEND": "pigeon"})


def test_a_recipient_that_is_not_one_plain_address_is_refused():
    with pytest.raises(PermanentError, match="invalid recipient"):
        build_message(SENDER, "a,b@example.com", "Hi", "text", None)


# -- fixtures of the integration tests ------------------------------------------------------

@pytest.fixture
def ses(settings):
    client = boto3.client("ses", region_name=settings.region, endpoint_url=settings.endpoint_url)
    client.verify_email_identity(EmailAddress="no-reply@workers.example.com")  # as SES requires
    return client


@pytest.fixture
def ses_settings(settings, ses) -> Settings:
    return settings.model_copy(update={"email_from": SENDER})


@pytest.fixture
def to(prefix) -> str:
    return f"{prefix}ada@example.com"


@pytest.fixture
def source(queues, prefix):
    return queues[prefix + "email"]


@pytest.fixture
def dlq(queues, prefix):
    return queues[prefix + "email-dlq"]


class Mailbox:
    """An aiosmtpd handler: keeps what it accepts; refuses recipients named bounce-* (550) and
    busy-* (450)."""

    def __init__(self):
        self.received: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce-"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy-"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def serving(mailbox: Mailbox) -> Iterator[Mailbox]:
    """``mailbox`` as a local SMTP server on a free port, until the test ends."""
    controller = Controller(mailbox, hostname="127.0.0.1", port=devstack.free_port())
    controller.start()
    mailbox.port = controller.port
    yield mailbox
    controller.stop()


@pytest.fixture
def smtp_server():
    yield from serving(Mailbox())


@pytest.fixture
def smtp_settings(settings, smtp_server) -> Settings:
    return settings.model_copy(update={
        "email_from": SENDER, "email_backend": "smtp", "smtp_host": "127.0.0.1",
        "smtp_port": smtp_server.port, "smtp_starttls": False})


def reason_of(sqs, dlq: str) -> str:
    [dead] = drain(sqs, dlq)
    return dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]


# -- through SES ----------------------------------------------------------------------------

def test_an_email_with_its_own_content_is_sent_through_ses(ses_settings, sqs, source, to):
    send(sqs, source, {"to": to, "subject": "Weekly\nreport", "text": "plain <b>",
                       "html": "<p>rich</p>"})
    assert process_all(consumer_of("email", ses_settings)).succeeded == 1
    [sent] = sent_emails(ses_settings.endpoint_url, to)
    assert (sent["From"], sent["To"], sent["Subject"]) == (SENDER, to, "Weekly report")
    assert part(sent, "plain").strip() == "plain <b>"
    assert part(sent, "html").strip() == "<p>rich</p>"
    assert queue_depth(sqs, source) == 0


def test_a_template_email_is_rendered_and_its_html_escaped(ses_settings, sqs, source, to):
    send(sqs, source, {"to": to, "template": "welcome", "params": WELCOME})
    assert process_all(consumer_of("email", ses_settings)).succeeded == 1
    [sent] = sent_emails(ses_settings.endpoint_url, to)
    assert sent["Subject"] == f"Welcome aboard, {SCRIPT}!"
    assert f"Hi {SCRIPT}," in part(sent, "plain")
    html = part(sent, "html")
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in html and SCRIPT not in html


@pytest.mark.parametrize("event, reason", [
    ({"template": "nope", "params": {}}, "unknown email template 'nope'"),
    ({"template": "welcome", "params": {"name": "Ada"}}, "'dashboard_url' is undefined"),
])
def test_a_template_that_cannot_render_goes_to_the_dlq(ses_settings, sqs, source, dlq, to,
                                                       event, reason):
    send(sqs, source, {"to": to, **event})
    assert consumer_of("email", ses_settings).process_batch(wait_seconds=1).dead_lettered == 1
    assert reason in reason_of(sqs, dlq)
    assert sent_emails(ses_settings.endpoint_url, to) == []
    assert queue_depth(sqs, source) == 0


def test_ses_rejecting_the_message_is_permanent(ses_settings, sqs, source, dlq, to):
    unverified = ses_settings.model_copy(update={"email_from": "someone@unverified.example.org"})
    send(sqs, source, {"to": to, "subject": "Hi", "text": "hello"})
    assert consumer_of("email", unverified).process_batch(wait_seconds=1).dead_lettered == 1
    assert reason_of(sqs, dlq).startswith("ses MessageRejected:")


def test_no_configured_sender_is_retried(settings, sqs, source, dlq, to):
    send(sqs, source, {"to": to, "subject": "Hi", "text": "hello"})
    result = consumer_of("email", settings).process_batch(wait_seconds=1)
    assert result.retried == 1
    assert (queue_depth(sqs, source), queue_depth(sqs, dlq)) == (1, 0)


# -- through SMTP ---------------------------------------------------------------------------

def test_an_email_is_delivered_to_the_smtp_server(smtp_settings, smtp_server, sqs, source, to):
    send(sqs, source, {"to": to, "template": "welcome", "params": WELCOME})
    assert process_all(consumer_of("email", smtp_settings)).succeeded == 1
    [(mail_from, rcpt_tos, message)] = smtp_server.received
    assert (mail_from, rcpt_tos) == ("no-reply@workers.example.com", [to])
    assert message["Subject"] == f"Welcome aboard, {SCRIPT}!"
    assert f"Hi {SCRIPT}," in part(message, "plain")
    assert "&lt;script&gt;" in part(message, "html")
    assert queue_depth(sqs, source) == 0


@pytest.mark.parametrize("mailbox, outcome", [("bounce", "dead_lettered"), ("busy", "retried")])
def test_smtp_5xx_is_permanent_and_4xx_transient(smtp_settings, sqs, source, dlq, prefix,
                                                 mailbox, outcome):
    send(sqs, source, {"to": f"{mailbox}-{prefix}@example.com", "subject": "Hi", "text": "x"})
    result = consumer_of("email", smtp_settings).process_batch(wait_seconds=1)
    assert getattr(result, outcome) == 1
    if outcome == "dead_lettered":
        assert reason_of(sqs, dlq) == "smtp 550: 5.1.1 no such mailbox"
    else:
        assert (queue_depth(sqs, source), queue_depth(sqs, dlq)) == (1, 0)


@pytest.mark.parametrize("change", [
    {"smtp_port": None},                 # nothing listens: connection refused
    {"smtp_starttls": True},             # the server offers no STARTTLS: never send in clear
])
def test_smtp_server_unusable_is_retried_not_deleted(smtp_settings, sqs, source, dlq, to, change):
    if "smtp_port" in change:
        change = {"smtp_port": devstack.free_port()}
    settings = smtp_settings.model_copy(update=change)
    send(sqs, source, {"to": to, "subject": "Hi", "text": "hello"})
    result = consumer_of("email", settings).process_batch(wait_seconds=1)
    assert (result.retried, result.succeeded) == (1, 0)
    assert (queue_depth(sqs, source), queue_depth(sqs, dlq)) == (1, 0)


# -- a real daemon --------------------------------------------------------------------------

def test_the_email_daemon_sends_through_ses(env, ses, sqs, source, dlq, to, settings, tmp_path):
    log = tmp_path / "email.log"
    proc = start_daemon("email", {**env, "WORKERS_EMAIL_FROM": SENDER}, log)
    try:
        send(sqs, source, {"to": to, "template": "welcome", "params": WELCOME},
             {"to": to, "template": "nope", "params": {}})
        wait_until(lambda: sent_emails(settings.endpoint_url, to), timeout=20)
        wait_until(lambda: queue_depth(sqs, dlq) == 1, timeout=20)
        wait_until(lambda: queue_depth(sqs, source) == 0, timeout=10)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    [sent] = sent_emails(settings.endpoint_url, to)
    assert "&lt;script&gt;" in part(sent, "html")
    handled = {e["outcome"]: e for e in log_events(log) if e["event"] == "message.handled"}
    assert handled["succeeded"]["backend"] == "ses"
    assert handled["succeeded"]["to_domain"] == "example.com"
    assert "unknown email template" in handled["dead_lettered"]["reason"]
    assert to not in log.read_text()  # the address stays out of the logs


# -- sent once ------------------------------------------------------------------------------

class QuitsBadly(Mailbox):
    """Accepts the mail, then answers QUIT with 421, as a relay shutting down does."""

    async def handle_QUIT(self, server, session, envelope):
        return "421 4.3.2 service shutting down"


@pytest.fixture
def quits_badly():
    yield from serving(QuitsBadly())


def test_a_mail_accepted_then_a_421_to_quit_counts_as_sent(smtp_settings, quits_badly, sqs,
                                                           source, to):
    # Given an SMTP server that accepts the data (250) and answers QUIT with 421
    settings = smtp_settings.model_copy(update={"smtp_port": quits_badly.port})
    send(sqs, source, {"to": to, "subject": "Hi", "text": "hello"})
    # When the consumer sends the email
    result = consumer_of("email", settings).process_batch(wait_seconds=1)
    # Then it is sent and acknowledged, not retried: one mail delivered
    assert (result.succeeded, result.retried) == (1, 0)
    assert queue_depth(sqs, source) == 0
    assert len(quits_badly.received) == 1


def test_a_redelivered_email_is_sent_once(smtp_settings, smtp_server, sqs, source, to):
    # Given the same email twice in the queue (enqueued twice, or replayed after it was sent)
    event = {"to": to, "template": "welcome", "params": WELCOME}
    send(sqs, source, event, event)
    consumer = consumer_of("email", smtp_settings)
    # When both are handled (side by side, one waits for the other's send to finish)
    def empty() -> bool:
        consumer.process_batch(wait_seconds=1)
        return queue_depth(sqs, source) == 0
    wait_until(empty, timeout=30)
    # Then one mail was delivered
    assert len(smtp_server.received) == 1


def test_an_email_sent_before_is_not_sent_again_by_a_replay(ses_settings, sqs, source, to):
    body = {"to": to, "subject": "Receipt", "text": "paid"}
    send(sqs, source, body)
    assert process_all(consumer_of("email", ses_settings)).succeeded == 1
    send(sqs, source, body)  # later: the same body, a new SQS message id (as a replay has)
    result = process_all(consumer_of("email", ses_settings))
    assert result.succeeded == 1
    assert len(sent_emails(ses_settings.endpoint_url, to)) == 1


def test_an_email_that_fails_after_ses_took_it_is_not_retried_by_boto3(ses_settings, sqs,
                                                                       source, to):
    from fakes import FakeServer

    class AcceptsThenFails(FakeServer):
        def answer(self, request):
            return 500, {"Content-Type": "text/xml"}, b"<ErrorResponse><Error><Code>" \
                b"InternalFailure</Code></Error></ErrorResponse>"

    ses_fake = AcceptsThenFails().start()
    try:
        other = handlers("email", ses_settings.model_copy(update={"endpoint_url": ses_fake.url}))
        send(sqs, source, {"to": to, "subject": "Hi", "text": "hello"})
        result = Consumer("email", ses_settings, handlers=other).process_batch(wait_seconds=1)
    finally:
        ses_fake.stop()
    assert len(ses_fake.requests) == 1  # SES saw one request, not boto3's retries of it
    assert result.retried == 1 and queue_depth(sqs, source) == 1


def test_redis_away_before_an_email_is_transient_and_sends_nothing(smtp_settings, smtp_server,
                                                                   sqs, source, to):
    away = handlers("email", smtp_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{devstack.free_port()}/0"}))
    send(sqs, source, {"to": to, "subject": "Hi", "text": "hello"})
    result = Consumer("email", smtp_settings, handlers=away).process_batch(wait_seconds=1)
    assert (result.retried, result.succeeded) == (1, 0)
    assert smtp_server.received == []


class SlowMailbox(Mailbox):
    """Holds its answer to DATA until ``release``: a relay slower than any lease."""

    def __init__(self):
        super().__init__()
        self.arrived = 0  # DATA commands begun: each a send that reached the relay
        self.released = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.arrived += 1
        while not self.released.is_set():
            await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_server():
    mailbox = SlowMailbox()
    yield from serving(mailbox)
    mailbox.released.set()


def test_an_smtp_send_slower_than_its_claim_s_lease_is_not_sent_again_beside_it(
        smtp_settings, slow_server, sqs, source, to, redis_client):
    # Given two daemons' consumers with a one-second send lease, and a relay that holds DATA
    settings = smtp_settings.model_copy(update={"smtp_port": slow_server.port})
    consumers = []
    for _ in range(2):
        send_email = SendEmail(mailer(settings), SentMarks(redis_client, lease=1),
                               sender=settings.email_from, backend=settings.email_backend,
                               queue_name=settings.queue_name("email"))
        consumers.append(Consumer("email", settings, handlers=Handlers(send_email.handle),
                                  concurrency=1))
    first, second = consumers
    second.backoff = ExponentialBackoff(0)  # its copy comes back at once
    event = {"to": to, "subject": "Hi", "text": "hello"}
    send(sqs, source, event, event)
    # When the first is mid-send, and the second's copy comes back long past the lease
    holder = threading.Thread(target=first.process_batch, kwargs={"wait_seconds": 1})
    holder.start()
    wait_until(lambda: slow_server.arrived, timeout=30)
    lapsed_at = redis_client.time()[0] + 3
    refused = []

    def waited_past_the_lease() -> bool:
        refused.append(second.process_batch(wait_seconds=1).retried)
        return slow_server.arrived > 1 or (redis_client.time()[0] > lapsed_at and sum(refused) > 2)
    wait_until(waited_past_the_lease, timeout=30, interval=0)
    slow_server.released.set()
    holder.join(30)
    wait_until(lambda: (second.process_batch(wait_seconds=1), queue_depth(sqs, source))[1] == 0,
               timeout=30, interval=0)
    # Then the relay saw one send, and one mail was delivered
    assert slow_server.arrived == 1
    assert len(slow_server.received) == 1
