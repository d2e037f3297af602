"""email: one message through Amazon SES (or SMTP), from its own content or a shipped template.

``{"to", "subject", "text"?, "html"?}`` is sent as given; ``{"to", "template", "params"}`` is
rendered from ``workers/domain/sending/templates/`` (workers.domain.sending.rendering), a
``subject`` given beside it winning over the template's. Logs carry the recipient's domain,
not the address.
"""

from __future__ import annotations

from typing import Any

from workers.adapters import aws
from workers.adapters.mail import Mailer, SESMailer, SMTPMailer, build_message
from workers.adapters.redisconn import Client
from workers.core.errors import TransientError
from workers.core.events import Email
from workers.core.settings import Settings
from workers.domain.sending import rendering
from workers.domain.sending.sent import SentMarks, mark_key
from workers.runtime.consumer import Handlers


class SendEmail:
    def __init__(self, mailer: Mailer, sent_marks: SentMarks, *, sender: str | None,
                 backend: str, queue_name: str):
        self.mailer = mailer
        self.sent_marks = sent_marks
        self.sender = sender
        self.backend = backend
        self.queue_name = queue_name  # the SQS name: a mark's key reads it

    def handle(self, event: Email) -> dict[str, Any]:
        if not self.sender:  # the operator's to fix; the message waits for it, then the DLQ
            raise TransientError("WORKERS_EMAIL_FROM is not set")
        content = compose(event)
        message = build_message(self.sender, event.to, content.subject, content.text,
                                content.html)
        key = mark_key(self.queue_name, event)
        sent_id = self.sent_marks.once(key, lambda: self.mailer.send(message))
        fields = {"backend": self.backend, "template": event.template,
                  "to_domain": event.to.rpartition("@")[2]}
        if sent_id is None:  # a redelivery or a replay of an email sent before
            return {**fields, "already_sent": True}
        return {**fields, "email_id": sent_id}


def compose(event: Email) -> rendering.Rendered:
    if event.template is None:
        return rendering.Rendered(rendering.one_line(event.subject or ""), event.text, event.html)
    rendered = rendering.render(event.template, event.params)
    if event.subject is not None:
        return rendering.Rendered(rendering.one_line(event.subject), rendered.text, rendered.html)
    return rendered


def mailer(settings: Settings) -> Mailer:
    """SES, or SMTP when WORKERS_EMAIL_BACKEND=smtp. SES without botocore's retries: a retry
    after a timeout SES had already accepted would send twice; a failed send is transient
    for us instead, retried through SQS with the sent mark checked first."""
    if settings.email_backend == "smtp":
        return SMTPMailer.from_settings(settings)
    return SESMailer(aws.client(settings, "ses", attempts=1))


def build(settings: Settings, redis: Client) -> Handlers:
    send = SendEmail(mailer(settings), SentMarks(redis), sender=settings.email_from,
                     backend=settings.email_backend, queue_name=settings.queue_name("email"))
    return Handlers(send.handle)
